"""The app shows stored labels as editable layers and the counts follow every edit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from app.layers import BOXES, POINTS, annotation_from_layers, annotation_layers
from app.viewer import SAMPLES, CountsWidget, open_image_with_labels
from cellcounter.formats import labels_for_image
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


def test_sample_opens_with_its_boxes_and_counts_follow_edits(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    counts = CountsWidget(viewer)
    ann = open_image_with_labels(viewer, SAMPLES["blood"])
    counts.attach(ann)
    stored = labels_for_image(SAMPLES["blood"])
    assert len(viewer.layers[BOXES].data) == len(stored.boxes) == 20
    assert counts.counts() == {"RBC": 19, "WBC": 1, "Platelets": 0}

    shapes = viewer.layers[BOXES]
    shapes.selected_data = {0}
    shapes.remove_selected()
    assert sum(counts.counts().values()) == 19
    assert counts.table.item(3, 1).text() == "19"  # the "total" row updated with the edit

    points = viewer.layers[POINTS]
    points.feature_defaults["class"] = "Platelets"
    points.add([[100.0, 200.0]])
    assert counts.counts()["Platelets"] == 1


def test_selftest_prints_a_json_summary_and_writes_a_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    out = subprocess.run([sys.executable, "-m", "app.main", "--selftest", "--screenshot", str(shot)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["task"] == "blood" and summary["counts"]["RBC"] == 19
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 300 and img.std() > 10  # a real window, not a blank frame
