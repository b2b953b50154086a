"""One colour per class, whatever order an image's objects come in (#19, point 2)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.layers import BOXES, POINTS, class_colours
from app.session import Session
from app.window import CellCounterWindow
from napari.utils.colormaps.standardize_color import transform_color

OBJ = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>10</ymin><xmax>{}</xmax><ymax>40</ymax></bndbox></object>"


def _voc(root, name, classes):
    objs = "".join(OBJ.format(c, 10 + 40 * i, 40 + 40 * i) for i, c in enumerate(classes))
    (root / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename><size><width>200</width><height>60</height><depth>3</depth>"
        f"</size>{objs}</annotation>")
    Image.fromarray(np.full((60, 200, 3), 200, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")


def test_rbc_has_the_same_colour_on_images_whose_first_objects_differ(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    _voc(root, "a_wbc_first", ["WBC", "RBC", "RBC"])
    _voc(root, "b_rbc_first", ["RBC", "Platelets"])
    _voc(root, "c_platelets_only", ["Platelets"])
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(root, "blood", user="tester")
    win = CellCounterWindow(viewer, session, "blood")
    want = {n: transform_color(c)[0] for n, c in class_colours(("RBC", "WBC", "Platelets")).items()}
    for rec in session.project.images():
        win.show_image(rec.id)
        shapes = viewer.layers[BOXES]
        classes = list(shapes.features["class"].astype(str))
        assert classes
        for i, name in enumerate(classes):
            assert np.allclose(shapes.edge_color[i], want[name]), (rec.path, name)
    # a box added by hand as a class no box of this image has yet gets that class's colour too
    shapes = viewer.layers[BOXES]
    shapes.feature_defaults["class"] = "WBC"
    shapes.add_rectangles([np.array([[5.0, 150], [50, 190]])])
    assert np.allclose(shapes.edge_color[-1], want["WBC"])
    points = viewer.layers[POINTS]
    points.feature_defaults["class"] = "Platelets"
    points.add([[30.0, 100.0]])
    assert np.allclose(points.face_color[-1], want["Platelets"])
