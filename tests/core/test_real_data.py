"""Every file of ../shared/data reads without error, with the counts the data set documents."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cellcounter.annotations import grade_counts, total_counts
from cellcounter.cli import main
from cellcounter.formats import detect_format, read_labels, write_labels
from cellcounter.imageio import read_image

pytestmark = pytest.mark.realdata


def test_bccd_all_boxes_read_and_the_two_degenerate_ones_are_reported(bccd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anns = read_labels(bccd)
    assert detect_format(bccd) == "voc"
    assert len(anns) == 292
    counts = total_counts(anns)
    dropped = [w for w in caught if "degenerate" in str(w.message)]
    assert len(dropped) == 2 and all("BloodImage_00" in str(w.message) for w in dropped)
    assert sum(counts.values()) + len(dropped) == 3943
    assert counts == {"RBC": 3348, "WBC": 301, "Platelets": 292}
    assert all(a.task == "blood" and a.width == 640 and a.height == 480 for a in anns)
    # the <path> element points at the annotator's disk; images are found beside Annotations/
    assert all((bccd / "JPEGImages" / a.name).samefile(a.image_path) for a in anns)


def test_bccd_every_image_decodes(bccd):
    for f in sorted((bccd / "JPEGImages").glob("*.jpg")):
        assert read_image(f).shape == (480, 640, 3), f


def test_bccd_voc_and_coco_round_trips_are_lossless(bccd, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anns = read_labels(bccd)
    for fmt in ("voc", "coco"):
        write_labels(anns, tmp_path / fmt, fmt)
        back = read_labels(tmp_path / fmt)
        assert len(back) == len(anns)
        assert all(a.equals(b) for a, b in zip(anns, back)), fmt


def test_dsb_instances_per_image(dsb):
    anns = read_labels(dsb)
    assert detect_format(dsb) == "dsb" and len(anns) == 87
    per_image = [len(a.masks) for a in anns]
    assert 40 <= np.mean(per_image) <= 44  # "about 42 nuclei per image"
    sample = next((dsb / "stage1_train").iterdir())
    assert len(read_labels(sample, "dsb")[0].masks) == len(list((sample / "masks").glob("*.png")))
    assert read_image(anns[0].image_path).shape[2] == 3  # RGBA delivered as RGB


def test_monuseg_polygons_become_instance_masks(monuseg):
    anns = read_labels(monuseg)
    assert detect_format(monuseg) == "aperio" and len(anns) == 6
    for a in anns:
        assert (a.width, a.height) == (1000, 1000)
        xml = (monuseg / "annotations" / a.name).with_suffix(".xml").read_text()
        assert len(a.masks) == xml.count("<Region ") and 240 <= len(a.masks) <= 575, a.name
        assert a.pixel_size_um == pytest.approx(0.2527, abs=0.01)
        assert np.median(a.masks.areas()) > 50  # nuclei, not slivers


def test_idrid_grades_keyed_by_split(idrid):
    with pytest.warns(UserWarning, match="not found"):
        anns = read_labels(idrid)
    assert len(anns) == 88
    assert sum(grade_counts(anns).values()) == 88
    splits = [a.attributes["split"] for a in anns]
    assert splits.count("train") == 20 and splits.count("test") == 68
    assert all(a.grade.value == 1 for a in anns if a.attributes["split"] == "train")
    # the same id in both splits is two different images
    paths = {a.image_path for a in anns}
    assert len(paths) == 88


@pytest.mark.parametrize("name,expected", [
    ("bccd", {"images": 292, "instances": {"RBC": 3348, "WBC": 301, "Platelets": 292}}),
    ("dsb2018-stained", {"images": 87}),
    ("monuseg", {"images": 6}),
    ("idrid", {"images": 88, "instances": {}}),
])
def test_info_json_on_each_data_set(name, expected, capsys):
    from tests.conftest import data_dir

    path = data_dir(name)
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k, v in expected.items():
        assert summary[k] == v
    if name == "idrid":
        assert sum(summary["grades"].values()) == 88


def test_convert_monuseg_to_label_tiff_and_coco_keeps_every_nucleus(monuseg, tmp_path):
    assert main(["convert", "--to", "coco", str(monuseg), str(tmp_path / "m.json")]) == 0
    assert main(["convert", "--to", "label-tiff", str(monuseg / "annotations" / "TCGA-2Z-A9J9-01A-01-TS1.xml"),
                 str(tmp_path / "lt")]) == 0
    coco = read_labels(tmp_path / "m.json")
    direct = read_labels(monuseg)
    assert [len(a.masks) for a in coco] == [len(a.masks) for a in direct]
    lt = read_labels(tmp_path / "lt")[0]
    assert lt.masks.equals(direct[0].masks)


def test_every_image_file_of_the_real_data_decodes(dsb, monuseg, idrid):
    files = sorted((dsb / "stage1_train").glob("*/images/*.png"))
    files += sorted((monuseg / "tissue_image").glob("*.tif"))
    files += sorted(idrid.glob("1. Original Images/*/*.jpg"))
    assert len(files) == 87 + 6 + 88
    for f in files:
        img = read_image(f)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, f
