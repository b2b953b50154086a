"""Writing then reading gives the same annotations, for every format that can hold them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks, Origin
from cellcounter.errors import FormatError
from cellcounter.formats import detect_format, read_labels, write_labels
from cellcounter.formats.cvppp import colour_mask_to_labels
from tests.conftest import sample_annotation


def _two(tmp_path):
    return [sample_annotation(tmp_path, "one", 0), sample_annotation(tmp_path, "two", 1)]


def test_coco_round_trip_keeps_boxes_masks_points_grades_scores_origins(tmp_path):
    anns = _two(tmp_path)
    anns[1].review = "reviewed"
    anns[1].pixel_size_um = 0.25
    files = write_labels(anns, tmp_path / "out" / "labels.json", "coco")
    assert detect_format(files[0]) == "coco"
    back = read_labels(files[0])
    assert len(back) == 2
    for a, b in zip(anns, back):
        assert a.equals(b), a.name
        assert b.image_path == a.image_path  # file_name is relative to the images' folder and resolved back
    assert back[1].review.value == "reviewed" and back[1].pixel_size_um == 0.25


def test_coco_file_names_are_relative_to_an_image_root_as_coco_tools_take_them(tmp_path):
    """#32 point 6: file_name climbed out of the JSON's folder with ``../../..``; COCO tools join it to an image
    root they are told (pycocotools, detectron2's ``image_root``). Default: the folder the images share."""
    import json

    from cellcounter.cli import main

    anns = _two(tmp_path)
    (tmp_path / "out").mkdir()
    written = write_labels(anns, tmp_path / "out" / "deep" / "labels.json", "coco")[0]
    doc = json.loads(written.read_text())
    shared = Path(anns[0].image_path).parent
    assert [im["file_name"] for im in doc["images"]] == [Path(a.image_path).name for a in anns]
    assert doc["info"]["image_root"] == shared.as_posix()
    assert [b.image_path for b in read_labels(written)] == [a.image_path for a in anns]
    moved = tmp_path / "moved.json"  # away from the images: still found under the recorded root
    moved.write_text(written.read_text())
    assert [Path(b.image_path).is_file() for b in read_labels(moved)] == [True, True]
    # a root named by the user, from the CLI: file names below it
    assert main(["convert", str(written), str(tmp_path / "rooted.json"), "--to", "coco", "--image-root",
                 str(shared.parent)]) == 0
    rooted = json.loads((tmp_path / "rooted.json").read_text())
    assert [im["file_name"] for im in rooted["images"]] == [f"{shared.name}/{Path(a.image_path).name}" for a in anns]
    assert main(["convert", str(written), str(tmp_path / "v"), "--to", "voc", "--image-root", str(shared)]) == 2


def test_voc_round_trip_is_exact_including_fractions_scores_and_origins(tmp_path):
    anns = [sample_annotation(tmp_path, "one", 0, with_masks=False)]
    anns[0].points = type(anns[0].points)()
    anns[0].grade = None
    written = write_labels(anns, tmp_path / "voc", "voc")
    assert written == [tmp_path / "voc" / "Annotations" / "one.xml"]
    back = read_labels(tmp_path / "voc")
    assert back[0].boxes.equals(anns[0].boxes)
    assert back[0].width == 64 and back[0].height == 48


def test_voc_boxes_are_whole_pixels_for_labelimg_and_cvat_and_a_box_moved_there_wins(tmp_path):
    """#32 point 6: VOC tools expect integer pixels (``212.88`` was written); the exact corners ride along in
    an element they ignore, and lose to the whole-pixel box once another tool moved it."""
    import xml.etree.ElementTree as ET

    from cellcounter.annotations import Boxes

    ann = ImageAnnotation(str(tmp_path / "a.png"), 300, 200, ("RBC",),
                          boxes=Boxes(np.array([[212.88, 10.2, 250.5, 40.0], [3, 4, 30, 40]], float), [0, 0]))
    (path,) = write_labels([ann], tmp_path / "voc", "voc")
    root = ET.parse(path).getroot()
    boxes = [[int(b.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] for b in root.iter("bndbox")]
    assert boxes == [[212, 10, 251, 40], [3, 4, 30, 40]]  # int() of every field works: LabelImg's reader
    assert len(root.findall("object/bndbox_exact")) == 1  # only the fractional box carries its exact corners
    assert read_labels(path)[0].boxes.xyxy.tolist() == ann.boxes.xyxy.tolist()
    root.find("object/bndbox/xmax").text = "260"  # moved in LabelImg by a hand that kept the extra element
    ET.ElementTree(root).write(path)
    assert read_labels(path)[0].boxes.xyxy.tolist()[0] == [212, 10, 260, 40]


def test_voc_from_masks_writes_their_bounding_boxes(tmp_path):
    lab = np.zeros((20, 20), np.int32)
    lab[2:6, 3:9] = 1
    ann = ImageAnnotation(str(tmp_path / "m.png"), 20, 20, ("nucleus",), masks=InstanceMasks(lab))
    with pytest.warns(UserWarning, match="bounding boxes"):
        write_labels([ann], tmp_path / "v", "voc")
    back = read_labels(tmp_path / "v", "voc")
    assert back[0].boxes.xyxy.tolist() == [[3, 2, 9, 6]]


def test_label_tiff_round_trip_with_classes_and_plain_tiffs_from_elsewhere(tmp_path):
    anns = _two(tmp_path)
    written = write_labels(anns, tmp_path / "lt", "label-tiff")
    assert [p.name for p in written] == ["one_labels.tif", "two_labels.tif"]
    back = read_labels(tmp_path / "lt")
    for a, b in zip(anns, back):
        assert a.masks.equals(b.masks)
        assert b.class_names == a.class_names
    # a cellpose-style label image without our metadata reads as class 0 instances
    lab = np.zeros((48, 64), np.uint16)
    lab[1:5, 1:5] = 1
    lab[10:20, 10:20] = 2
    tifffile.imwrite(tmp_path / "cp_masks.tif", lab)
    plain = read_labels(tmp_path / "cp_masks.tif", "label-tiff")[0]
    assert len(plain.masks) == 2 and plain.masks.classes.tolist() == [0, 0]


def test_label_tiff_size_must_match_its_image(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "img.png")
    tifffile.imwrite(tmp_path / "img_labels.tif", np.zeros((31, 40), np.uint16))
    with pytest.raises(FormatError, match=r"img_labels\.tif.*40x31.*40x30"):
        read_labels(tmp_path / "img_labels.tif")


def test_grade_csv_round_trip(tmp_path):
    anns = _two(tmp_path)
    anns[0].grade = Grade(4, None, Origin.HUMAN)
    anns[0].attributes["macular_edema_risk"] = "2"
    write_labels(anns, tmp_path / "g.csv", "grade-csv")
    back = read_labels(tmp_path / "g.csv", class_names=("a", "b", "c", "d", "e"))
    assert [b.grade.value for b in back] == [4, 2]
    assert back[0].grade.equals(anns[0].grade) and back[1].grade.equals(anns[1].grade)
    assert back[0].attributes["macular_edema_risk"] == "2"


def test_idrid_quirks_bom_trailing_spaces_empty_columns_missing_images(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "IDRiD_001.jpg")
    text = "Image name,Retinopathy grade,Risk of macular edema ,,,\r\nIDRiD_001,3,2,,,\r\nIDRiD_404,1,0,,,\r\n"
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    with pytest.warns(UserWarning, match=r"1 listed image\(s\) not found.*IDRiD_404"):
        anns = read_labels(tmp_path / "labels.csv")
    assert len(anns) == 1 and anns[0].grade.value == 3 and anns[0].task == "retinopathy"


def test_cvppp_and_colour_mask_round_trip(tmp_path):
    lab = np.zeros((30, 40), np.int32)
    for k in range(1, 8):
        lab[k * 3:k * 3 + 3, k * 4:k * 4 + 5] = k
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "plant001_rgb.png")
    ann = ImageAnnotation(str(tmp_path / "plant001_rgb.png"), 40, 30, ("leaf",), task="leaves",
                          masks=InstanceMasks(lab))
    for fmt, name in (("cvppp", "plant001_rgb_label.png"), ("colour-mask", "plant001_rgb_mask.png")):
        out = write_labels([ann], tmp_path / fmt, fmt)
        assert out[0].name == name
        back = read_labels(out[0], fmt)[0]
        assert back.masks.equals(ann.masks), fmt


def test_colour_mask_numbers_each_colour_once():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 0] = rgb[3, 5] = (255, 0, 0)  # one leaf may be in two pieces
    rgb[1, 1] = (0, 255, 0)
    lab = colour_mask_to_labels(rgb)
    assert lab[0, 0] == lab[3, 5] == 1 and lab[1, 1] == 2 and lab[2, 2] == 0


def test_counts_csv_has_a_row_per_image_a_column_per_class_and_totals(tmp_path):
    anns = _two(tmp_path)
    for a in anns:
        a.masks, a.points, a.grade = None, type(a.points)(), None
    anns[1].boxes = Boxes(np.array([[0, 0, 1, 1]] * 3), [1, 1, 2])
    write_labels(anns, tmp_path / "counts.csv", "counts-csv")
    rows = list(csv.reader(open(tmp_path / "counts.csv")))
    assert rows[0] == ["image", "RBC", "WBC", "Platelets", "total"]
    assert rows[1] == ["one.png", "1", "1", "1", "3"]
    assert rows[2] == ["two.png", "0", "2", "1", "3"]
    assert rows[3] == ["TOTAL", "1", "3", "2", "6"]


def test_targets_that_cannot_hold_the_data_are_refused_before_writing(tmp_path):
    ann = ImageAnnotation(str(tmp_path / "f.jpg"), 10, 10, ("No DR",), grade=Grade(1))
    with pytest.raises(FormatError, match="cannot hold grade"):
        write_labels([ann], tmp_path / "o", "label-tiff")
    assert not (tmp_path / "o").exists()
    with pytest.raises(FormatError, match="import-only"):
        write_labels([ann], tmp_path / "o", "dsb")


def test_two_images_with_the_same_name_are_not_silently_overwritten(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    anns = [sample_annotation(tmp_path / "a", "x", 0), sample_annotation(tmp_path / "b", "x", 1)]
    with pytest.raises(FormatError, match="share the name"):
        write_labels(anns, tmp_path / "out", "voc")
    assert not (tmp_path / "out").exists()


def test_coco_written_json_is_plain_json(tmp_path):
    write_labels(_two(tmp_path), tmp_path / "c.json", "coco")
    doc = json.loads((tmp_path / "c.json").read_text())
    assert {c["name"] for c in doc["categories"]} == {"RBC", "WBC", "Platelets"}
    assert all(isinstance(a["segmentation"]["counts"], str) for a in doc["annotations"] if "segmentation" in a)


def test_counts_csv_adds_densities_when_the_pixel_size_is_known(tmp_path):
    anns = _two(tmp_path)
    for a in anns:
        a.masks, a.points, a.grade = None, type(a.points)(), None
        a.pixel_size_um = 250.0  # 64 x 48 px of 0.25 mm: 16 x 12 mm = 192 mm^2
    assert anns[0].densities_per_mm2()["RBC"] == pytest.approx(1 / 192)
    write_labels(anns, tmp_path / "counts.csv", "counts-csv")
    rows = list(csv.reader(open(tmp_path / "counts.csv")))
    assert rows[0][-3:] == ["RBC_per_mm2", "WBC_per_mm2", "Platelets_per_mm2"]
    assert float(rows[1][-3]) == pytest.approx(1 / 192)
    assert float(rows[3][-2]) == pytest.approx(2 / 384)  # 2 WBC over both images


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    written = write_labels(_two(tmp_path), tmp_path / "o.json", "coco")
    mode = stat.S_IMODE(os.stat(written[0]).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # readable by the lab, not private to the writer
