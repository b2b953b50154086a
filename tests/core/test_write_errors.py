"""A destination that cannot be written is a clear error naming it and the reason, exit status 2, and
nothing half written, whatever the operating system says (#18, case 6)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

from cellcounter.cli import main

VOC = """<annotation><filename>a.jpg</filename><size><width>20</width><height>10</height><depth>3</depth></size>
<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


@pytest.fixture
def voc(tmp_path):
    (tmp_path / "a.xml").write_text(VOC)
    return tmp_path / "a.xml"


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("to, dst, says", [
    ("coco", "afile/out.json", "a part of its path is a file"),
    ("voc", "afile/deeper/out", "a part of its path is a file"),
    ("coco", "folder.json", "it is a folder"),
    ("counts-csv", "afile/counts.csv", "a part of its path is a file"),
])
def test_a_destination_in_the_way_names_the_file_and_why(tmp_path, voc, capsys, to, dst, says):
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "folder.json").mkdir()
    before = _files(tmp_path)
    assert main(["convert", "--to", to, str(voc), str(tmp_path / dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and says in err and "Traceback" not in err
    assert _files(tmp_path) == before and (tmp_path / "afile").read_text() == "keep me"


def test_a_device_is_never_replaced_by_a_file(tmp_path, voc, capsys):
    assert main(["convert", "--to", "coco", str(voc), "/dev/null"]) == 2
    assert "/dev/null" in capsys.readouterr().err
    assert not os.path.isfile("/dev/null")


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                        (errno.EACCES, "permission denied")])
def test_a_full_or_read_only_disk_leaves_nothing_half_written(tmp_path, voc, capsys, monkeypatch, code, says):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "annotations.json").write_text("the old export")

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)  # the write itself fails, as on a full disk
    assert main(["convert", "--to", "coco", str(voc), str(dst / "annotations.json")]) == 2
    err = capsys.readouterr().err
    assert "annotations.json" in err and says in err
    assert _files(dst) == [dst.relative_to(dst) / "annotations.json"]
    assert (dst / "annotations.json").read_text() == "the old export"


def test_predict_into_a_file_path_is_a_clear_error(tmp_path, capsys, tiny_models):
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "afile").write_text("")
    assert main(["predict", str(tmp_path / "a.png"), "--task", "blood", "--model", str(tiny_models["detector"]),
                 "--out", str(tmp_path / "afile" / "o")]) == 2
    err = capsys.readouterr().err
    assert "afile" in err and "a part of its path is a file" in err
