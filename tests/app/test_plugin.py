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


def test_widgets_load_into_an_already_open_napari_without_crashing():
    """A stock napari opening our widgets imports torch after OpenGL is up (Mesa here): it must not crash."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import napari; v = napari.Viewer(show=True); import app.window, torchvision.ops, torch; "
            "print(int(torchvision.ops.nms(torch.rand(4, 4) * 9, torch.rand(4), 0.5).numel() > 0))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("1"), r.stderr[-2000:]
