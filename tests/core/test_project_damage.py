"""A damaged project is a clear error naming the image and the newest backup; a full disk loses nothing that
was saved before; rolling backups are made on open (#18, cases 8 and 11)."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from cellcounter.annotations import Boxes, InstanceMasks, Origin
from cellcounter.cli import main
from cellcounter.errors import ProjectError
from cellcounter.project import Project
from cellcounter.project.backups import KEEP, backups, latest_backup
from tests.conftest import sample_annotation


@pytest.fixture
def made(tmp_path):
    ann = sample_annotation(tmp_path, "img", 0)
    path = tmp_path / "p.ccproj"
    with Project.create(path, user="alice") as proj:
        image_id = proj.add_image(ann.image_path, "blood")
        proj.save(image_id, ann)
    return path, image_id, ann


def _damage_blob(path, column="boxes"):
    conn = sqlite3.connect(path)
    blob = conn.execute(f"SELECT {column} FROM annotations").fetchone()[0]
    garbled = bytes(b ^ 0x5A for b in blob[:40]) + blob[40:]
    conn.execute(f"UPDATE annotations SET {column} = ?", (garbled,))
    conn.commit()
    conn.close()


def test_opening_a_changed_project_backs_it_up_and_keeps_the_newest_few(made):
    path, image_id, ann = made
    with Project.open(path):
        pass
    assert len(backups(path)) == 1
    with Project.open(path):  # nothing changed since: no new backup
        pass
    assert len(backups(path)) == 1
    for k in range(KEEP + 2):
        with Project.open(path) as proj:
            ann.boxes = Boxes(np.array([[1.0, 1, 5 + k, 5]]), [0], [np.nan], [Origin.HUMAN])
            proj.save(image_id, ann)
    found = backups(path)
    assert len(found) == KEEP
    with Project.open(latest_backup(path), readonly=True) as old:  # a backup is a project that opens
        assert old.load(image_id).boxes.xyxy[0, 2] == 5 + KEEP  # the state before the last session's edit


def test_garbled_labels_name_the_image_and_the_backup_in_status_and_check(made, capsys):
    path, _, _ = made
    with Project.open(path):
        pass  # a backup of the sound project
    _damage_blob(path)
    assert main(["project", "status", str(path)]) == 2
    err = capsys.readouterr().err
    assert "img.png" in err and "damaged" in err and str(latest_backup(path)) in err and "Traceback" not in err
    assert main(["project", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "img.png are damaged" in out and "to restore" in out


def test_check_reports_a_damaged_database_instead_of_a_traceback(made, capsys):
    path, _, _ = made
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # random bytes over every page after the first
        rng = np.random.default_rng(1)
        fh.seek(4096)
        fh.write(rng.integers(0, 256, size - 4096, dtype=np.uint8).tobytes())
    rc = main(["project", "check", str(path)])
    captured = capsys.readouterr()
    assert rc in (1, 2) and "Traceback" not in captured.err
    assert "damaged" in (captured.out + captured.err) or "malformed" in (captured.out + captured.err)


def test_a_full_disk_during_a_save_is_a_clear_error_and_the_previous_labels_stay(made):
    path, image_id, ann = made
    with Project.open(path) as proj:
        pages = proj._conn.execute("PRAGMA page_count").fetchone()[0]
        proj._conn.execute(f"PRAGMA max_page_count = {pages}")  # the file can grow no more: SQLITE_FULL
        big = ann.boxes.xyxy.repeat(20_000, axis=0) + np.random.default_rng(0).random((60_000, 1))
        n = len(big)
        ann2 = sample_annotation(path.parent, "img", 0)
        ann2.boxes = Boxes(big, np.zeros(n, int), np.full(n, np.nan), np.full(n, Origin.HUMAN))
        with pytest.raises(ProjectError, match="could not be saved .the disk is full.*nothing of it was stored"):
            proj.save(image_id, ann2)
        assert proj.load(image_id).equals(ann)  # the connection still works and holds the old state
    with Project.open(path, readonly=True) as proj:
        assert proj.load(image_id).equals(ann)
    assert not any(p.name.endswith(".partial") for p in os.scandir(path.parent))


def test_a_stored_blob_claiming_gigabytes_is_refused_before_it_is_decompressed(tmp_path):
    """#36: a 2 MB npz blob declaring an 8 GB array reached 2.1 GB of memory before its error."""
    import io
    import sqlite3
    import tracemalloc
    import zipfile

    from cellcounter.errors import ProjectError
    from cellcounter.project import Project
    from tests.conftest import make_image

    make_image(tmp_path / "a.png")
    path = tmp_path / "p.ccproj"
    with Project.create(path) as p:
        image_id = p.add_image(tmp_path / "a.png", "nuclei")
        ann = p.load(image_id)
        lab = np.zeros((ann.height, ann.width), np.int32)
        lab[2:6, 2:6] = 1
        ann.masks = InstanceMasks(lab)
        p.save(image_id, ann)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i4", "fortran_order": False,
                                                   "shape": (46341, 46341)})  # 8.6 GB of int32
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("label_image.npy", header.getvalue() + b"\0" * 2_000_000)
    conn = sqlite3.connect(path)
    assert conn.execute("UPDATE annotations SET masks = ? WHERE image_id = ?", (blob.getvalue(), image_id)).rowcount
    conn.commit()
    conn.close()
    tracemalloc.start()
    with Project.open(path, readonly=True) as p, pytest.raises(ProjectError, match="claims"):
        p.load(image_id)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000, peak
