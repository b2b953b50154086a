"""Layers round-trip to the annotation model; the self-test runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from app.layers import BOXES, POINTS, annotation_from_layers, annotation_layers
from cellcounter.annotations import Origin
from tests.conftest import REPO, sample_annotation


def test_layers_round_trip_to_the_annotation_model(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    ann = sample_annotation(tmp_path)
    for data, kwargs, kind in annotation_layers(ann):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    back = annotation_from_layers(ann, viewer.layers[BOXES], viewer.layers["masks"], viewer.layers[POINTS])
    assert back.equals(ann)
    # the first box's top-left corner is at (row=y1, col=x1) on the canvas
    assert np.allclose(viewer.layers[BOXES].data[0].min(axis=0), [ann.boxes.xyxy[0, 1], ann.boxes.xyxy[0, 0]])


def test_moving_a_model_box_marks_it_corrected_and_new_ones_human(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    ann = sample_annotation(tmp_path)
    for data, kwargs, kind in annotation_layers(ann):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    shapes = viewer.layers[BOXES]
    assert ann.boxes.origins[0] == Origin.MODEL
    moved = shapes.data[0] + 3
    shapes.data = [moved] + list(shapes.data[1:])
    shapes.add_rectangles(np.array([[1.0, 1.0], [5.0, 5.0]]))
    back = annotation_from_layers(ann, shapes)
    assert back.boxes.origins.tolist() == [Origin.CORRECTED, Origin.HUMAN, Origin.CORRECTED, Origin.HUMAN]


def test_selftest_prints_a_json_summary_and_writes_a_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    out = subprocess.run([sys.executable, "-m", "app.main", "--selftest", "--screenshot", str(shot)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["task"] == "blood" and set(summary["counts"]) == {"RBC", "WBC", "Platelets"}
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 300 and img.std() > 10  # a real window, not a blank frame


def test_a_refill_updates_the_shown_layers_in_place_with_class_colours(make_napari_viewer, tmp_path, monkeypatch):
    """Predictions arriving and undo refill the same layers (no rebuild stalling the GUI), coloured per class."""
    from app.controller import LayerController
    from app.layers import MASKS, class_colours
    from app.session import Session
    from cellcounter.annotations import Boxes

    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    ann = sample_annotation(tmp_path)
    viewer = make_napari_viewer()
    session, first = Session.open_path(ann.image_path, "nuclei")
    ctl = LayerController(viewer, session)
    ctl.show(first)
    ann.class_names = ctl.model.annotation.class_names
    ann.boxes.classes[:] = 0
    ann.points.classes[:] = 0
    ann.masks.classes[:] = 0
    ctl.apply(ann)  # masks appear: the layers are built
    layers_before = [viewer.layers[n] for n in (BOXES, MASKS, POINTS)]
    ann.boxes = Boxes(np.array([[1, 2, 10, 12], [20, 20, 40, 30.0]]), [0, 0], [0.9, 0.8],
                      [Origin.MODEL, Origin.MODEL])
    ctl.apply(ann)
    assert [viewer.layers[n] for n in (BOXES, MASKS, POINTS)] == layers_before  # the very same layers
    shapes = viewer.layers[BOXES]
    assert len(shapes.data) == 2 and list(shapes.features["origin"]) == ["model", "model"]
    colour = class_colours(ann.class_names)[ann.class_names[0]]
    from napari.utils.colormaps.standardize_color import transform_color

    assert np.allclose(shapes.edge_color, transform_color(colour)[0])
    assert np.array_equal(viewer.layers[MASKS].data, ann.masks.label_image)
    # what the user adds afterwards is still theirs
    shapes.add_rectangles(np.array([[1.0, 1.0], [5.0, 5.0]]))
    viewer.layers[POINTS].add([[7.0, 7.0]])
    back = ctl.current()
    assert back.boxes.origins.tolist()[-1] == Origin.HUMAN and back.points.origins.tolist()[-1] == Origin.HUMAN
    session.close()
