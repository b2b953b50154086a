"""The YOLO layout (images/ + labels/ + data.yaml): read with its quirks, written, round trips, clear errors (#30)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cellcounter.annotations import Boxes, ImageAnnotation
from cellcounter.cli import main
from cellcounter.errors import CellCounterWarning, FormatError
from cellcounter.evaluate import select_ids, split_ids
from cellcounter.formats import detect_format, read_labels, write_labels
from tests.conftest import data_dir, make_image


def _dataset(root, names_file="yaml"):
    """Two splits as TXL-PBC has them: class ids 0 WBC, 1 RBC, 2 Platelets; CRLF; an empty file; no file."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    make_image(root / "images" / "train" / "a.png", 100, 50, seed=1)
    make_image(root / "images" / "train" / "b.png", 100, 50, seed=2)
    make_image(root / "images" / "val" / "c.png", 200, 100, seed=3)
    make_image(root / "images" / "val" / "d.png", 200, 100, seed=4)
    # a WBC in the middle, an RBC touching the right edge (rounding past 1), a Platelet
    (root / "labels" / "train" / "a.txt").write_bytes(
        b"0 0.5 0.5 0.2 0.4\r\n1 0.9 0.5 0.2000004 0.2\r\n2 0.1 0.1 0.04 0.08\r\n")
    (root / "labels" / "train" / "b.txt").write_text("")  # empty: an image with no cells
    (root / "labels" / "val" / "c.txt").write_text("1 0.25 0.25 0.1 0.2\n\n1 0.75 0.75 0.1 0.2\n")
    # d.png has no label file at all
    if names_file == "yaml":
        (root / "data.yaml").write_text("train: ./images/train/\nval: ./images/val/\nnc: 3\n"
                                        "names: ['WBC', 'RBC', 'Platelets']\n")
    else:
        (root / "classes.txt").write_bytes(b"0 White Blood Cell (WBC)\r\n1 Red Blood Cell (RBC)\r\n2 Platelet")
    return root


def _by_name(anns):
    return {a.name: a for a in anns}


@pytest.mark.parametrize("names_file", ["yaml", "classes.txt"])
def test_a_yolo_folder_reads_onto_the_tasks_classes_with_its_quirks(tmp_path, names_file):
    root = _dataset(tmp_path / "ds", names_file)
    assert detect_format(root) == "yolo"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anns = _by_name(read_labels(root))
    assert set(anns) == {"a.png", "b.png", "c.png", "d.png"}
    a = anns["a.png"]
    assert a.class_names == ("RBC", "WBC", "Platelets") and a.task == "blood"  # mapped by name, not by number
    assert [a.class_names[c] for c in a.boxes.classes] == ["WBC", "RBC", "Platelets"]
    np.testing.assert_allclose(a.boxes.xyxy[0], [40, 15, 60, 35], atol=1e-6)
    np.testing.assert_allclose(a.boxes.xyxy[1], [80, 20, 100, 30], atol=1e-3)  # touches the edge, clipped to it
    assert not any("clipped" in str(w.message) for w in caught if issubclass(w.category, CellCounterWarning))
    assert len(anns["b.png"].boxes) == 0 and len(anns["d.png"].boxes) == 0
    assert anns["c.png"].counts()["RBC"] == 2 and anns["c.png"].attributes["split"] == "val"


def test_splits_are_the_split_folders(tmp_path):
    root = _dataset(tmp_path / "ds")
    anns = read_labels(root)
    assert sorted(a.name for a in select_ids(anns, split_ids(root, "val"))) == ["c.png", "d.png"]
    assert sorted(a.name for a in select_ids(anns, split_ids(root, "train"))) == ["a.png", "b.png"]
    with pytest.raises(FormatError, match="test"):
        split_ids(root, "test")


def test_write_then_read_gives_the_same_boxes_and_a_data_set_yolo_tools_open(tmp_path):
    img = make_image(tmp_path / "smear.png", 640, 480)
    ann = ImageAnnotation(str(img), 640, 480, ("RBC", "WBC", "Platelets"), task="blood",
                          boxes=Boxes(np.array([[0, 0, 100.5, 80], [300, 200, 400, 330], [600, 440, 640, 480]]),
                                      [0, 1, 2]))
    written = write_labels([ann], tmp_path / "out", "yolo")
    out = tmp_path / "out"
    assert out / "data.yaml" in written and (out / "images" / "smear.png").is_file()
    lines = (out / "labels" / "smear.txt").read_text().splitlines()
    assert lines[0].split()[0] == "0" and len(lines[0].split()) == 5  # five columns, numbered as data.yaml names
    import yaml

    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == ["RBC", "WBC", "Platelets"]
    (back,) = read_labels(out)
    np.testing.assert_allclose(back.boxes.xyxy, ann.boxes.xyxy, atol=1e-3)
    assert list(back.boxes.classes) == [0, 1, 2] and back.class_names == ann.class_names


def test_convert_info_and_project_export_speak_yolo(tmp_path, capsys):
    root = _dataset(tmp_path / "ds")
    assert main(["info", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"images": 4, "instances": {"RBC": 3, "WBC": 1, "Platelets": 1}}
    assert main(["convert", "--to", "voc", "--copy-images", str(root), str(tmp_path / "voc")]) == 0
    assert main(["convert", "--to", "yolo", str(tmp_path / "voc"), str(tmp_path / "again")]) == 0
    assert main(["info", str(tmp_path / "again"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    proj = tmp_path / "p.ccproj"
    assert main(["project", "create", str(proj), str(root)]) == 0
    assert main(["project", "export", str(proj), "--images", "all", "--to", "yolo", str(tmp_path / "exp")]) == 0
    assert main(["info", str(tmp_path / "exp"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary


@pytest.mark.parametrize("line,match", [
    ("3 0.5 0.5 0.1 0.1", "class 3 is not one of the 3"),
    ("1 0.5 0.5 0.1", "expected 'class cx cy w h'"),
    ("x 0.5 0.5 0.1 0.1", "expected numbers"),
    ("1 0.5 nan 0.1 0.1", "finite"),
    ("1 320 240 20 20", "fractions of the image"),
])
def test_bad_label_lines_name_the_file_and_line(tmp_path, line, match, capsys):
    root = _dataset(tmp_path / "ds")
    (root / "labels" / "val" / "c.txt").write_text("1 0.25 0.25 0.1 0.2\n" + line + "\n")
    with pytest.raises(FormatError, match=match) as err:
        read_labels(root)
    assert "c.txt" in str(err.value) and "line 2" in str(err.value)
    assert main(["info", str(root)]) == 2
    assert "c.txt" in capsys.readouterr().err


def test_a_folder_without_class_names_is_refused_clearly(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "data.yaml").unlink()
    with pytest.raises(FormatError, match="data.yaml"):
        read_labels(root, "yolo")


def test_txl_pbc_reads_with_every_lab(tmp_path):
    root = data_dir("txl-pbc")
    anns = read_labels(root)
    assert len(anns) >= 1000 and anns[0].class_names == ("RBC", "WBC", "Platelets")
    per_class = {n: sum(a.counts()[n] for a in anns) for n in anns[0].class_names}
    assert per_class["RBC"] > 10 * per_class["WBC"] > 0 and per_class["Platelets"] > 0
