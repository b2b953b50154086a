"""QuPath GeoJSON (#21, part 2): what QuPath exports reads, what cellcounter writes QuPath reads, round trips
keep every object, and malformed files are clear errors naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks, Origin, Points
from cellcounter.cli import main
from cellcounter.errors import FormatError
from cellcounter.formats import detect_format, read_labels, write_labels


def _image(folder, name="tile", w=120, h=90):
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(folder / f"{name}.png")
    return folder / f"{name}.png"


def _masks(h=90, w=120) -> InstanceMasks:
    lab = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[:h, :w]
    lab[(yy - 30) ** 2 + (xx - 30) ** 2 < 15 ** 2] = 4               # a disc
    lab[(yy - 30) ** 2 + (xx - 30) ** 2 < 5 ** 2] = 0                # with a hole
    lab[60:80, 10:20] = 9                                            # an instance in two pieces
    lab[60:80, 30:40] = 9
    lab[50:85, 70:110] = 12                                          # a square touching nothing
    lab[0:6, 114:120] = 13                                           # at the image corner
    return InstanceMasks(lab, [4, 9, 12, 13], [0, 0, 0, 0], [0.9, np.nan, 0.4, 0.7],
                         [Origin.MODEL, Origin.HUMAN, Origin.CORRECTED, Origin.MODEL])


def test_boxes_outlines_with_holes_and_marks_round_trip_exactly(tmp_path):
    image = _image(tmp_path)
    names = ("RBC", "WBC", "Platelets")
    ann = ImageAnnotation(str(image), 120, 90, names,
                          boxes=Boxes(np.array([[2.0, 3, 20, 30], [50.5, 10, 60, 12.25]]), [0, 2], [0.8, np.nan],
                                      [Origin.MODEL, Origin.HUMAN]),
                          points=Points(np.array([[10.0, 20], [40, 50]]), [1, 0], [Origin.HUMAN, Origin.HUMAN]))
    (f,) = write_labels([ann], tmp_path, "qupath-geojson")
    assert f.name == "tile.geojson" and detect_format(f) == "qupath-geojson"
    (back,) = read_labels(f, class_names=names)
    assert back.boxes.equals(ann.boxes) and back.points.equals(ann.points)
    masks = ImageAnnotation(str(image), 120, 90, ("nucleus",), masks=_masks())
    write_labels([masks], tmp_path / "m.geojson", "qupath-geojson")
    doc = json.loads((tmp_path / "m.geojson").read_text())
    kinds = [feat["geometry"]["type"] for feat in doc["features"]]
    assert kinds == ["Polygon", "MultiPolygon", "Polygon", "Polygon"]
    assert len(doc["features"][0]["geometry"]["coordinates"]) == 2  # outline and hole
    (tmp_path / "m.png").write_bytes(image.read_bytes())
    (mback,) = read_labels(tmp_path / "m.geojson", class_names=("nucleus",))
    assert mback.masks.equals(masks.masks)  # pixel for pixel, scores and origins too


QUPATH_EXPORT = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "id": "a1", "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [30, 10], [30, 25],
                                                                                      [12, 28], [10, 10]]]},
     "properties": {"objectType": "detection", "isLocked": False,
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                    "measurements": {"Detection probability": 0.93, "Nucleus: Area": 310.5}}},
    {"type": "Feature", "id": "a2", "geometry": {"type": "Polygon", "coordinates": [[[40, 40], [60, 40], [60, 70],
                                                                                      [40, 70], [40, 40]]]},
     "properties": {"objectType": "cell", "classification": {"name": "Stroma", "color": [0, 150, 0]},
                    "measurements": [{"name": "Detection probability", "value": 0.5}]}},
    {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[5, 6], [7.5, 8]]},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
]}


@pytest.mark.parametrize("wrap", ["collection", "list"])
def test_what_qupath_exports_reads_with_or_without_the_collection(tmp_path, wrap):
    _image(tmp_path, "slide")
    doc = QUPATH_EXPORT if wrap == "collection" else QUPATH_EXPORT["features"]
    (tmp_path / "slide.geojson").write_text(json.dumps(doc))
    (ann,) = read_labels(tmp_path / "slide.geojson")
    assert ann.class_names == ("Tumor", "Stroma")
    assert len(ann.masks) == 2 and ann.masks.scores.tolist() == [0.93, 0.5]  # a cell is an outline, even square
    assert len(ann.points) == 2 and ann.points.rc[1].tolist() == [7.5, 7.0]  # QuPath's (7.5, 8): pixel edges
    assert ann.counts() == {"Tumor": 3, "Stroma": 1}


@pytest.mark.parametrize("doc, says", [
    ({"type": "Topology"}, "not GeoJSON"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates":
                                                 [float("1e12"), 3]}, "properties": {}}]}, "outside any image"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates":
                                                 ["a", 3]}, "properties": {}}]}, "must be \\[x, y\\] numbers"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates":
                                                 [1, 3]}, "properties": {"objectType": "blob"}}]},
     "unknown objectType"),
    ({"type": "FeatureCollection", "features": 3}, "must be a list"),
])
def test_malformed_geojson_is_a_clear_error_naming_the_file(tmp_path, doc, says):
    _image(tmp_path, "x")
    (tmp_path / "x.geojson").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=says) as info:
        read_labels(tmp_path / "x.geojson", "qupath-geojson")
    assert "x.geojson" in str(info.value)


def test_a_geojson_without_its_image_says_so(tmp_path):
    (tmp_path / "lonely.geojson").write_text(json.dumps(QUPATH_EXPORT))
    with pytest.raises(FormatError, match="no image named lonely"):
        read_labels(tmp_path / "lonely.geojson")


def test_convert_voc_to_qupath_and_back_through_the_cli(tmp_path):
    src = tmp_path / "voc"
    (src / "Annotations").mkdir(parents=True)
    (src / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((50, 80, 3), np.uint8)).save(src / "JPEGImages" / "a.jpg")
    (src / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>80</width><height>50</height><depth>3</depth></size>"
        "<object><name>WBC</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object></annotation>")
    assert main(["convert", "--to", "qupath-geojson", "--copy-images", str(src), str(tmp_path / "qp")]) == 0
    assert sorted(str(p.relative_to(tmp_path / "qp")) for p in (tmp_path / "qp").rglob("*") if p.is_file()) == [
        "a.geojson", "images/a.jpg"]
    assert main(["convert", "--task", "blood", "--to", "voc", str(tmp_path / "qp"), str(tmp_path / "back")]) == 0
    (ann,) = read_labels(tmp_path / "back" / "Annotations" / "a.xml")
    assert ann.boxes.xyxy.tolist() == [[5, 6, 30, 40]] and ann.class_names[ann.boxes.classes[0]] == "WBC"


def test_a_mark_is_written_at_the_same_place_for_qupath_and_imagej(tmp_path):
    """#32 point 6: the same marks went to QuPath at [290.0, 188.5] and to ImageJ at (290.5, 189.0)."""
    import roifile

    from cellcounter.formats import read_labels, write_labels

    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "a.png")
    ann = ImageAnnotation(str(tmp_path / "a.png"), 400, 300, ("RBC", "WBC", "Platelets"), task="blood",
                          points=Points(np.array([[188.0, 290.0]]), [0], [Origin.HUMAN]))
    (geo,) = write_labels([ann], tmp_path / "q", "qupath-geojson")
    (roi_zip,) = write_labels([ann], tmp_path / "r", "imagej-roi")
    doc = json.loads(geo.read_text())
    (point,) = [f["geometry"]["coordinates"] for f in doc["features"] if f["geometry"]["type"] == "Point"]
    (roi,) = roifile.roiread(roi_zip)
    assert point == roi.coordinates()[0].tolist() == [290.5, 188.5]  # the pixel's centre, in both
    for fmt, where in (("qupath-geojson", geo), ("imagej-roi", roi_zip)):
        if not (where.parent / "a.png").exists():  # each format finds its image beside its file
            shutil.copy(tmp_path / "a.png", where.parent / "a.png")
        (back,) = read_labels(where, fmt)
        assert back.points.rc.tolist() == [[188.0, 290.0]], fmt
