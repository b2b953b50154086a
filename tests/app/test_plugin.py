"""A stock napari finds the plugin: its manifest, readers and widget."""

from __future__ import annotations

import npe2

from app.plugin import get_reader
from tests.conftest import data_dir


def test_manifest_is_discovered():
    pm = npe2.PluginManager.instance()
    pm.discover()
    m = pm.get_manifest("cellcounter")
    assert m.contributions.readers and m.contributions.widgets


def test_reader_opens_voc_and_aperio_files_as_layers(make_napari_viewer):
    bccd = data_dir("bccd")
    reader = get_reader(str(bccd / "Annotations" / "BloodImage_00000.xml"))
    layers = reader(str(bccd / "Annotations" / "BloodImage_00000.xml"))
    kinds = [k for _, _, k in layers]
    assert kinds[0] == "image" and "shapes" in kinds
    viewer = make_napari_viewer()
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    assert len(viewer.layers["boxes"].data) == 20
    mon = data_dir("monuseg")
    layers = get_reader(str(mon / "annotations" / "TCGA-2Z-A9J9-01A-01-TS1.xml"))(
        str(mon / "annotations" / "TCGA-2Z-A9J9-01A-01-TS1.xml"))
    labels = [d for d, _, k in layers if k == "labels"][0]
    assert labels.max() == 575
    assert get_reader("/etc/hostname") is None
