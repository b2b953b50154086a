"""Inputs that misled or hurt before: each is a clear error naming the file, and nothing is half written
(#18, cases 9, 13, 14 and 15)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcounter.cli import main
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.formats import read_labels

VOC = """<annotation><filename>{name}</filename><size><width>{w}</width><height>10</height><depth>3</depth></size>
<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


def voc_folder(root, n=2):
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i in range(n):
        Image.fromarray(np.full((10, 20, 3), 100 + i, np.uint8)).save(root / "JPEGImages" / f"im{i}.jpg")
        (root / "Annotations" / f"im{i}.xml").write_text(VOC.format(name=f"im{i}.jpg", w=20))
    return root


def test_random_bytes_named_png_are_named_not_a_memory_buffer(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(np.random.default_rng(0).bytes(3000))
    assert main(["info", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.png: not a readable image" in err and "BytesIO" not in err


def test_a_symlink_loop_and_a_dangling_link_are_said_as_such(tmp_path, capsys):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    assert main(["info", str(tmp_path / "a")]) == 2
    assert "symbolic link loop" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "dangling.png")]) == 2
    assert "a symbolic link to" in capsys.readouterr().err


def test_a_grade_csv_with_bare_cr_line_endings_reads(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "grades.csv").write_bytes(b"image,grade\ra,1\rb,3\r")
    anns = read_labels(tmp_path / "grades.csv", "grade-csv")
    assert sorted(a.grade.value for a in anns) == [1, 3]


@pytest.mark.parametrize("lab", [np.ones((1, 1), np.uint16), np.array([[0, 1, 1, 2]], np.uint16),
                                 np.array([[0], [3], [3]], np.uint16)])
def test_one_pixel_and_single_row_label_tiffs_read(tmp_path, lab):
    tifffile.imwrite(tmp_path / "x_labels.tif", lab)
    (ann,) = read_labels(tmp_path / "x_labels.tif", "label-tiff")
    assert (ann.height, ann.width) == lab.shape and len(ann.masks) == len(np.unique(lab[lab > 0]))


def test_a_jpeg_named_like_a_label_png_is_refused_not_read_as_thousands_of_instances(tmp_path):
    noisy = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "x_label.png", format="JPEG")
    Image.fromarray(noisy).save(tmp_path / "y_mask.png", format="JPEG")
    with pytest.raises(FormatError, match="x_label.png: is a JPEG file whatever its name"):
        read_labels(tmp_path / "x_label.png", "cvppp")
    with pytest.raises(FormatError, match="y_mask.png: is a JPEG file whatever its name"):
        read_labels(tmp_path / "y_mask.png", "colour-mask")


def test_an_all_nan_image_is_refused_instead_of_graded_or_counted(tiny_models):
    from cellcounter.inference import Predictor, predict_image

    nan = np.full((64, 64, 3), np.nan, np.float32)
    for kind in ("grader", "detector"):  # whole-image and tiled paths
        with pytest.raises(CellCounterError, match="no finite pixel values"):
            predict_image(Predictor.load(tiny_models[kind]), nan, "nan.tif")
    some = np.where(np.eye(64, dtype=bool)[..., None], 7.0, np.nan).astype(np.float32)
    assert predict_image(Predictor.load(tiny_models["grader"]), some, "some.tif").grade is not None


def test_a_voc_size_beyond_any_image_is_refused(tmp_path):
    (tmp_path / "a.xml").write_text(VOC.format(name="a.jpg", w="100000000000"))
    with pytest.raises(FormatError, match="larger than any image"):
        read_labels(tmp_path / "a.xml", "voc")


def test_converting_onto_the_source_is_refused_and_the_source_is_untouched(tmp_path, capsys):
    src = voc_folder(tmp_path / "voc")
    before = {p: p.read_bytes() for p in src.rglob("*.xml")}
    assert main(["convert", "--to", "voc", str(src), str(src)]) == 2
    assert main(["convert", "--to", "coco", str(src), str(src / "all.json")]) == 2
    one = src / "Annotations" / "im0.xml"
    assert main(["convert", "--to", "voc", str(one), str(one)]) == 2
    assert "choose a destination outside it" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in src.rglob("*.xml")} == before and not (src / "all.json").exists()


def test_copy_images_refuses_a_file_name_outside_the_source(tmp_path, capsys):
    (tmp_path / "secret.txt").write_text("secret")
    sub = tmp_path / "c" / "sub"
    sub.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "outside.png")
    for name in ("../../outside.png", "../../secret.txt"):
        doc = {"images": [{"id": 1, "file_name": name, "width": 10, "height": 10}], "annotations": [],
               "categories": [{"id": 1, "name": "RBC"}]}
        (sub / "a.json").write_text(json.dumps(doc))
        rc = main(["convert", "--to", "voc", "--copy-images", str(sub / "a.json"), str(tmp_path / "out")])
        assert rc == 2 and not (tmp_path / "out").exists()
    assert "outside the source folder" in capsys.readouterr().err


@pytest.mark.parametrize("fail_on", ["copy", "labels"])
def test_a_disk_filling_during_convert_leaves_no_half_built_destination(tmp_path, monkeypatch, capsys, fail_on):
    src = voc_folder(tmp_path / "voc", n=3)
    dst = tmp_path / "out"
    calls = []

    def full(*a, **k):
        calls.append(1)
        if len(calls) >= 2:  # the second file: the first is already written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    if fail_on == "copy":
        real = shutil.copyfile
        monkeypatch.setattr(shutil, "copyfile", full)
    else:
        real = os.fsync
        monkeypatch.setattr(os, "fsync", full)
    assert main(["convert", "--to", "voc", "--copy-images", str(src), str(dst)]) == 2
    assert "the disk is full" in capsys.readouterr().err
    assert not dst.exists()


def test_an_idrid_download_with_only_its_test_images_reads_them_and_warns_about_the_other_csv(tmp_path):
    gt, orig = tmp_path / "2. Groundtruths", tmp_path / "1. Original Images" / "b. Testing Set"
    gt.mkdir()
    orig.mkdir(parents=True)
    for name in ("IDRiD_001", "IDRiD_002"):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(orig / f"{name}.jpg")
    (gt / "a. IDRiD_Disease Grading_Training Labels.csv").write_text("Image name,Retinopathy grade\nIDRiD_101,2\n")
    (gt / "b. IDRiD_Disease Grading_Testing Labels.csv").write_text(
        "Image name,Retinopathy grade\nIDRiD_001,4\nIDRiD_002,0\n")
    with pytest.warns(UserWarning, match="Training Labels.csv: no image folder for this CSV"):
        anns = read_labels(tmp_path, "grade-csv")
    assert sorted((a.name, a.grade.value) for a in anns) == [("IDRiD_001.jpg", 4), ("IDRiD_002.jpg", 0)]


def test_damaged_label_tiff_metadata_costs_the_image_name_not_the_labels(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "x_labels.tif", np.array([[0, 1], [2, 2]], np.uint16))

    def damaged(self):
        raise KeyError("X")

    monkeypatch.setattr(tifffile.TiffFile, "shaped_metadata", property(damaged))
    with pytest.warns(UserWarning, match="x_labels.tif: its metadata is damaged and ignored .KeyError"):
        (ann,) = read_labels(tmp_path / "x_labels.tif", "label-tiff")
    assert len(ann.masks) == 2
