"""Mask tools for dense nuclei (#19, point 9): brush size and an outline-only view, and a MoNuSeg tile opened
alone comes with its Aperio outlines."""

from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image

from app.layers import MASKS
from cellcounter.annotations import Origin

APERIO = """<Annotations><Annotation Id="1"><Regions>
<Region Id="1"><Vertices><Vertex X="10" Y="10"/><Vertex X="30" Y="10"/><Vertex X="30" Y="30"/><Vertex X="10" Y="30"/>
</Vertices></Region>
<Region Id="2"><Vertices><Vertex X="50" Y="50"/><Vertex X="70" Y="50"/><Vertex X="70" Y="75"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


def test_a_monuseg_tile_opened_alone_brings_its_aperio_outlines_and_the_brush_and_outline_view_apply(
        open_window, tmp_path):
    (tmp_path / "tissue_image").mkdir()
    (tmp_path / "annotations").mkdir()
    tile = tmp_path / "tissue_image" / "TCGA-XX.tif"
    tifffile.imwrite(tile, np.full((100, 100, 3), 180, np.uint8))
    (tmp_path / "annotations" / "TCGA-XX.xml").write_text(APERIO)
    viewer, win, first = open_window(tile, None)
    saved = win.session.project.load(first)
    assert saved.task == "nuclei" and len(saved.masks) == 2 and (saved.masks.origins == Origin.REFERENCE).all()
    assert win.masks_dock.isVisible() and not win.grade_dock.isVisible()
    win.masks.brush.setValue(7)
    win.masks.outlines.setChecked(True)
    layer = viewer.layers[MASKS]
    assert layer.brush_size == 7 and layer.contour == 2
    win.masks.outlines.setChecked(False)
    assert layer.contour == 0


def test_the_masks_dock_is_hidden_for_blood_images(open_window, tmp_path):
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(tmp_path / "a.png")
    _, win, _ = open_window(tmp_path / "a.png")
    assert not win.masks_dock.isVisible()
