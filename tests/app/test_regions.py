"""Regions in the app (#21): draw one and the Counts panel counts inside it; it is saved, undone and imported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.layers import REGIONS


def test_a_drawn_region_is_counted_saved_reopened_and_undone(open_window, voc_folder, qtbot):
    _, win, first = open_window(voc_folder({"a": ["RBC", "WBC", "RBC", "RBC"], "b": ["WBC"]}))
    layer = win.viewer.layers[REGIONS]
    assert len(layer.data) == 0 and win.counts.regions_table.isHidden()
    layer.add_polygons([np.array([[0, 0], [0, 90], [60, 90], [60, 0]], float)])  # rows, cols: boxes 1 and 2
    win.controller.flush()
    qtbot.waitUntil(lambda: win.counts.regions_table.rowCount() == 1)
    assert win.counts.region_rows() == [("region 1", 2, "5400 px", "no pixel size")]
    assert not win.counts.regions_table.isHidden()
    stored = win.session.project.load(first).regions
    assert [r.name for r in stored] == ["region 1"] and stored[0].area_px == 90 * 60
    assert list(layer.features["name"]) == ["region 1"]  # the new region's name is shown on it
    layer.add_ellipses([np.array([[0, 100], [0, 200], [60, 200], [60, 100]], float)])  # round the right half
    layer.add_lines([np.array([[5, 5], [50, 50]], float)])  # a line encloses nothing: not a region
    win.controller.flush()
    assert [r[:2] for r in win.counts.region_rows()] == [("region 1", 2), ("region 2", 2)]
    ellipse = win.session.project.load(first).regions[1]
    assert ellipse.area_px == pytest.approx(np.pi * 50 * 30, rel=0.01)
    layer.selected_data = {1, 2}
    layer.remove_selected()
    win.controller.flush()
    win.review.go(1)
    win.review.go(-1)
    assert len(win.viewer.layers[REGIONS].data) == 1  # shown again when the image is opened again
    assert win.counts.region_rows()[0][:2] == ("region 1", 2)
    assert win.controller.undo()  # the removal undone: the ellipse is back, as the polygon it was stored as
    assert [r.name for r in win.session.project.load(first).regions] == ["region 1", "region 2"]
    assert len(win.viewer.layers[REGIONS].data) == 2
    assert win.controller.undo() and win.controller.undo()
    assert len(win.viewer.layers[REGIONS].data) == 0 and win.session.project.load(first).regions == []
    assert win.counts.regions_table.isHidden()


def test_regions_import_from_a_qupath_geojson(open_window, voc_folder, tmp_path, qtbot):
    _, win, first = open_window(voc_folder({"a": ["RBC", "WBC", "RBC", "RBC"]}))
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"objectType": "annotation", "name": "right half"},
         "geometry": {"type": "Polygon", "coordinates": [[[100, 0], [200, 0], [200, 60], [100, 60], [100, 0]]]}}]}
    (tmp_path / "r.geojson").write_text(json.dumps(doc))
    assert win.import_regions(tmp_path / "r.geojson") == 1
    assert win.counts.region_rows() == [("right half", 2, "6000 px", "no pixel size")]
    assert win.session.project.load(first).regions[0].name == "right half"
    assert win.import_regions(tmp_path / "missing.geojson") == 0  # an error shown, nothing added


def test_a_region_on_a_slide_shows_its_area_and_density_from_the_slides_pixel_size(open_window, tmp_path, qtbot):
    from tests.helpers import squares, write_svs

    img, centres = squares(1500, 2000)
    write_svs(tmp_path / "s.svs", img=img, mpp=0.25)
    _, win, first = open_window(tmp_path / "s.svs")
    assert win.session.project.load(first).pixel_size_um == 0.25
    win.viewer.layers[REGIONS].add_rectangles([np.array([[0, 0], [0, 400], [400, 400], [400, 0]], float)])
    win.controller.flush()
    # a 400 x 400 px square at 0.25 um/px is 0.01 mm2; no object was predicted yet
    assert win.counts.region_rows() == [("region 1", 0, "0.01 mm\u00b2", "0.0")]
