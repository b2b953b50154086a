"""Inputs a lab will meet, said plainly (#36, "Smaller"): labels off the image, a placeholder pixel size, a label
file naming a file that is no image, an unknown task; each path said once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcounter.cli import main
from cellcounter.errors import CellCounterWarning
from cellcounter.formats import read_labels
from cellcounter.imageio import open_image


def test_coco_boxes_wholly_outside_the_image_are_dropped_with_a_warning(tmp_path):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
        "categories": [{"id": 1, "name": "RBC"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [900, 5, 10, 10]},
                        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-30, -30, 10, 10]}]}))
    with pytest.warns(CellCounterWarning, match="lies outside the 50 x 40 image; dropped"):
        (ann,) = read_labels(tmp_path / "a.json", "coco")
    assert len(ann.boxes) == 1


def test_fiji_markers_outside_the_image_are_dropped_with_a_warning(tmp_path):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    markers = "".join(f"<Marker><MarkerX>{x}</MarkerX><MarkerY>{y}</MarkerY><MarkerZ>1</MarkerZ></Marker>"
                      for x, y in ((10, 10), (60, 10), (10, -2)))
    (tmp_path / "CellCounter_a.xml").write_text(
        "<CellCounter_Marker_File><Image_Properties><Image_Filename>a.png</Image_Filename></Image_Properties>"
        f"<Marker_Data><Current_Type>0</Current_Type><Marker_Type><Type>1</Type><Name>RBC</Name>{markers}"
        "</Marker_Type></Marker_Data></CellCounter_Marker_File>")
    with pytest.warns(CellCounterWarning, match="outside the 50 x 40 image; dropped"):
        (ann,) = read_labels(tmp_path, "fiji-cell-counter")
    assert len(ann.points) == 1


def test_a_placeholder_pixel_size_in_a_tiff_description_is_ignored_not_called_damage(tmp_path):
    for text in ("Aperio Image Library v12\nMPP = ...", "MPP = n/a"):
        tifffile.imwrite(tmp_path / "s.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb", metadata=None,
                         description=text)
        with open_image(tmp_path / "s.tif") as src:
            assert src.pixel_size_um is None and src.shape[:2] == (32, 32)
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb", metadata=None,
                     description="Aperio Image Library v12\nMPP = 0.2520")
    with open_image(tmp_path / "s.tif") as src:
        assert src.pixel_size_um == pytest.approx(0.252)


def test_a_label_file_naming_a_file_that_is_no_image_is_named_itself(tmp_path, capsys):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "labels.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": str(tmp_path / "notes.txt"), "width": 10, "height": 10},
                   {"id": 2, "file_name": "ok.png", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "RBC"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 3]}]}))
    assert main(["project", "create", str(tmp_path / "p.ccproj"), str(tmp_path / "labels.json")]) == 0
    said = capsys.readouterr().err
    assert f"{tmp_path / 'labels.json'}: the labels name {tmp_path / 'notes.txt'} as their image" in said, said
    assert main(["project", "status", str(tmp_path / "p.ccproj")]) == 0


def test_an_unreadable_image_in_a_predict_batch_is_named_once(tmp_path, capsys, tiny_models):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "ok.png")
    assert main(["predict", str(tmp_path / "broken.png"), str(tmp_path / "ok.png"), "--task", "blood",
                 "--model", str(tiny_models["detector"]), "--out", str(tmp_path / "out")]) == 1
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:"))
    assert line.count(str(tmp_path / "broken.png")) == 1, line


def test_training_an_unknown_task_says_so(tmp_path, capsys):
    from training.cli import main as train_main

    assert train_main(["--task", "bogus", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'bogus'" in err and "recipe" not in err


@pytest.mark.timeout(120)
def test_devices_and_pipes_are_refused_before_anything_reads_them(tmp_path, capsys, tiny_models):
    """#32 point 3: /dev/zero as an image or as weights, a FIFO as an image: read for ever, killed at 5 GB."""
    import os
    import shutil

    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.mkfifo(tmp_path / "pipe.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "ok.png")
    model = tmp_path / "model"
    shutil.copytree(tiny_models["detector"], model)
    (model / "model.pt").unlink()
    os.symlink("/dev/zero", model / "model.pt")
    for argv in (["info", str(tmp_path / "zero.png")], ["info", str(tmp_path / "pipe.png")],
                 ["predict", str(tmp_path / "pipe.png"), "--task", "blood", "--model", str(tiny_models["detector"]),
                  "--out", str(tmp_path / "o1")],
                 ["predict", str(tmp_path / "ok.png"), "--task", "blood", "--model", str(model),
                  "--out", str(tmp_path / "o2")],
                 ["project", "create", str(tmp_path / "p.ccproj")],
                 ["project", "add", str(tmp_path / "p.ccproj"), str(tmp_path / "zero.png")]):
        rc = main(argv)
        err = capsys.readouterr().err
        if argv[:2] == ["project", "create"]:
            assert rc == 0
            continue
        assert rc == 2 and ("is a device" in err or "is a pipe" in err), (argv, err)


def test_a_latin1_file_name_and_a_nul_in_a_coco_file_name_are_said_plainly(tmp_path, capsys):
    """#32 point 4: UnicodeEncodeError from the store and ValueError (embedded null byte) from COCO."""
    import os

    folder = tmp_path / "imgs"
    folder.mkdir()
    latin1 = os.fsdecode(b"h\xe9mato.png")  # a name made on a Latin-1 system: its bytes are not UTF-8
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / latin1)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "ok.png")
    assert main(["project", "create", str(tmp_path / "p.ccproj")]) == 0
    assert main(["project", "add", str(tmp_path / "p.ccproj"), str(folder / latin1)]) == 2
    err = capsys.readouterr().err
    assert "not valid text (UTF-8); rename" in err and "Traceback" not in err
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "ok\u0000.png", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "RBC"}], "annotations": []}))
    assert main(["info", str(tmp_path / "c.json")]) == 2
    assert "holds a NUL character" in capsys.readouterr().err
    for flags, says in ((["--backbone", "resnet999"], "backbone must be one of"),
                        (["--dropblock-level", "P99"], "dropblock_level must be one of")):
        from training.cli import main as train_main

        assert train_main(["--task", "blood", "--data", str(folder), "--out", str(tmp_path / "r"), *flags]) == 2
        assert says in capsys.readouterr().err
