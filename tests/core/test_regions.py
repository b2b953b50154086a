"""Regions (#21): predict and count inside a drawn or imported polygon, density per mm2, kept everywhere."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import tifffile

from cellcounter.annotations import Boxes, ImageAnnotation, Points
from cellcounter.cli import main
from cellcounter.errors import CellCounterError
from cellcounter.formats import read_labels, write_labels
from cellcounter.formats.grade_csv import write_counts_csv
from cellcounter.formats.qupath import read_regions
from cellcounter.imageio import open_image
from cellcounter.inference import predict_image
from cellcounter.inference.cli import parse_region
from cellcounter.project.store import Project
from cellcounter.project.undo import UndoHistory
from cellcounter.project.workflows import apply_prediction, prediction_jobs
from cellcounter.regions import Region, region_counts
from tests.helpers import blob_predictor, squares, write_svs

MPP = 0.25


def _write_svs(path, img):
    write_svs(path, img=img, mpp=MPP)


def _write_ome(path, img):
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", subifds=1,
                 metadata={"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP})
        tw.write(np.ascontiguousarray(img[::4, ::4]), tile=(256, 256), photometric="rgb", subfiletype=1)


@pytest.mark.parametrize("reader", ["openslide", "tifffile"])
def test_a_slide_region_is_predicted_alone_and_counted_with_its_density(tmp_path, reader):
    img, centres = squares()
    path = tmp_path / ("s.svs" if reader == "openslide" else "s.ome.tif")
    (_write_svs if reader == "openslide" else _write_ome)(path, img)
    region = Region("tumour", [[130, 130], [850, 170], [700, 800], [150, 700]])  # a skewed quadrilateral
    inside = region.contains(centres[:, 0], centres[:, 1])
    assert 20 < inside.sum() < len(centres) - 20
    pred = blob_predictor("detector")
    with open_image(path) as src:
        assert src.pixel_size_um == MPP
        everything = predict_image(pred, src)
        calls_all, pred.backend.calls = pred.backend.calls, 0
        ann = predict_image(pred, src, regions=[region])
    assert len(everything.boxes) == len(centres)
    assert pred.backend.calls < calls_all  # tiles outside the region were never predicted
    got = np.column_stack([(ann.boxes.xyxy[:, 0] + ann.boxes.xyxy[:, 2]) / 2,
                           (ann.boxes.xyxy[:, 1] + ann.boxes.xyxy[:, 3]) / 2])
    assert sorted(map(tuple, got)) == sorted(map(tuple, centres[inside]))
    [row] = region_counts(ann)
    assert row.region == "tumour" and row.total == int(inside.sum())
    area_mm2 = region.polygon.area * (MPP / 1000) ** 2
    assert row.area_mm2 == pytest.approx(area_mm2)
    assert row.densities_per_mm2["RBC"] == pytest.approx(inside.sum() / area_mm2)


def _ann(tmp_path, regions, pixel_size=MPP):
    boxes = Boxes(np.array([[10, 10, 20, 20], [110, 10, 120, 20], [10, 110, 20, 120], [150, 150, 160, 160.0]]),
                  [0, 1, 0, 0], [0.9, 0.9, 0.2, 0.9])
    return ImageAnnotation(str(tmp_path / "a.png"), 200, 200, ("RBC", "WBC"), task="blood", boxes=boxes,
                           points=Points(np.array([[50.0, 50.0]]), [1]), pixel_size_um=pixel_size,
                           regions=regions)


def test_counts_csv_has_a_row_per_region_with_its_area_and_density(tmp_path):
    left = Region.rectangle("left", 0, 0, 100, 200)
    top = Region("top", [[0, 0], [200, 0], [200, 100], [0, 100]])
    write_counts_csv([_ann(tmp_path, [left, top])], tmp_path / "c.csv", score_threshold=0.5)
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows[0] == ["image", "region", "RBC", "WBC", "total", "area_mm2", "RBC_per_mm2", "WBC_per_mm2"]
    assert rows[1][:5] == ["a.png", "", "2", "2", "4"]  # the low-score box is not counted
    assert rows[2][:5] == ["a.png", "left", "1", "1", "2"]  # a box and the click mark centred in it
    assert rows[3][:5] == ["a.png", "top", "1", "2", "3"]
    assert float(rows[2][5]) == pytest.approx(100 * 200 * (MPP / 1000) ** 2)
    assert float(rows[2][6]) == pytest.approx(1 / float(rows[2][5]), rel=1e-5)
    assert rows[-1][:5] == ["TOTAL", "", "2", "2", "4"]
    write_counts_csv([_ann(tmp_path, [left], pixel_size=None)], tmp_path / "d.csv")
    assert list(csv.reader(open(tmp_path / "d.csv")))[0] == ["image", "region", "RBC", "WBC", "total"]


def test_regions_are_kept_by_the_project_its_undo_and_a_new_prediction(tmp_path):
    from PIL import Image

    img, centres = squares(400, 500)
    Image.fromarray(img).save(tmp_path / "a.png")
    proj = Project.create(tmp_path / "p.ccproj")
    image_id = proj.add_image(tmp_path / "a.png", task="blood")
    before = proj.load(image_id)
    ann = dataclasses.replace(before, regions=[Region("r", [[0, 0], [250, 0], [250, 400]])])
    history = UndoHistory()
    changed, stored = proj.commit(image_id, ann)
    history.record(image_id, before, stored)
    assert changed == ["regions"] and stored.regions[0].equals(ann.regions[0])
    proj.close()
    with Project.open(tmp_path / "p.ccproj") as proj:
        assert proj.load(image_id).regions[0].name == "r" and proj.regions(image_id)[0].equals(ann.regions[0])
        [job] = prediction_jobs(proj, [image_id])
        pred = predict_image(blob_predictor("detector"), img, str(tmp_path / "a.png"), regions=list(job.regions))
        apply_prediction(proj, job, pred, "blobs@1")
        after = proj.load(image_id)
        assert after.regions[0].equals(ann.regions[0])  # a prediction never drops the regions
        inside = ann.regions[0].contains(centres[:, 0], centres[:, 1])
        assert len(after.boxes) == inside.sum() > 0
        assert [e["kind"] for e in proj.history.events(image_id)].count("regions") == 1
        back = history.undo(image_id, after)
        assert back.regions == []


def test_qupath_geojson_round_trips_regions_and_reads_drawn_annotations_as_regions(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "a.png")
    ann = _ann(tmp_path, [Region.rectangle("left", 0, 0, 100, 200), Region("tri", [[0, 0], [150, 0], [0, 150]])])
    write_labels([ann], tmp_path / "a.geojson", "qupath-geojson")
    [back] = read_labels(tmp_path / "a.geojson", "qupath-geojson", ["RBC", "WBC"])
    assert [r.name for r in back.regions] == ["left", "tri"]
    assert all(a.equals(b) for a, b in zip(back.regions, ann.regions))
    assert len(back.boxes) == 4 and len(back.points) == 1  # the objects are still objects
    # what QuPath writes for regions drawn by hand: unclassified or classified annotations
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [90, 0], [90, 90], [0, 0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [9, 5], [9, 9], [5, 5]]]},
         "properties": {"objectType": "detection"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [50, 0], [0, 50], [0, 0]]]},
         "properties": {"objectType": "annotation"}}]}
    (tmp_path / "drawn.geojson").write_text(json.dumps(doc))
    regions = read_regions(tmp_path / "drawn.geojson")
    assert [r.name for r in regions] == ["Tumor", "region 2"] and regions[0].area_px == pytest.approx(90 * 90 / 2)
    assert parse_region(str(tmp_path / "drawn.geojson"))[1].equals(regions[1])


def test_predict_region_on_the_command_line(tmp_path, capsys):
    from PIL import Image

    img, centres = squares(300, 400)
    Image.fromarray(img).save(tmp_path / "a.png")
    bad = [["--region", "10,10,5,50"], ["--region", str(tmp_path / "none.geojson")]]
    for extra in bad:
        assert main(["predict", str(tmp_path / "a.png"), "--task", "blood", "--model", "unused",
                     "--out", str(tmp_path / "o"), *extra]) == 2
        assert "--region" in capsys.readouterr().err
    with pytest.raises(CellCounterError, match="neither"):
        parse_region("1,2,3")
    assert parse_region("0,0,200,150")[0].area_px == 200 * 150
