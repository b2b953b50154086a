"""One colour per class, whatever order an image's objects come in (#19, point 2)."""

from __future__ import annotations

import numpy as np
from napari.utils.colormaps.standardize_color import transform_color

from app.layers import BOXES, POINTS, class_colours


def test_rbc_has_the_same_colour_on_images_whose_first_objects_differ(open_window, voc_folder):
    root = voc_folder({"a_wbc_first": ["WBC", "RBC", "RBC"], "b_rbc_first": ["RBC", "Platelets"],
                       "c_platelets_only": ["Platelets"]})
    viewer, win, _ = open_window(root)
    session = win.session
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
