"""Ways a project could be lost (#36): a command writing over it, a hard link hiding a crash's write-ahead log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cellcounter.cli import main
from cellcounter.errors import ProjectError
from cellcounter.project import Project, maintenance
from tests.conftest import REPO, make_image


@pytest.fixture
def reviewed(tmp_path):
    """A project with one image marked reviewed: what an overwrite would lose."""
    make_image(tmp_path / "a.png")
    path = tmp_path / "p.ccproj"
    with Project.create(path) as p:
        image_id = p.add_image(tmp_path / "a.png", "blood")
        p.set_review(image_id, "reviewed")
    return path


def _still_sound(path):
    with Project.open(path, readonly=True) as p:
        assert maintenance.check(p) == [] and p.images()[0].review.value == "reviewed"


@pytest.mark.parametrize("command", [
    ["audit"], ["backup"], ["export", "--to", "counts-csv"], ["export", "--to", "coco"]])
@pytest.mark.parametrize("target", ["itself", "symlink", "symlinked-dir", "wal", "lock", "dotdot", "backups"])
def test_no_command_writes_over_the_project_or_its_files(reviewed, tmp_path, command, target, capsys):
    path = reviewed
    if target == "itself":
        dst = path
    elif target == "symlink":
        dst = tmp_path / "alias.csv"
        os.symlink(path, dst)
    elif target == "symlinked-dir":
        os.symlink(tmp_path, tmp_path / "same-dir")
        dst = tmp_path / "same-dir" / path.name
    elif target == "wal":
        dst = tmp_path / (path.name + "-wal")
    elif target == "lock":
        dst = tmp_path / (path.name + ".lock")
    elif target == "dotdot":
        (tmp_path / "sub").mkdir()
        dst = tmp_path / "sub" / ".." / path.name
    else:
        dst = tmp_path / (path.name + ".backups") / "x.ccproj"
    args = ["project", command[0], str(path), str(dst), *command[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "would destroy it" in err and str(dst) in err
    _still_sound(path)


def test_the_crash_through_one_name_then_edits_through_a_hard_link_sequence_loses_nothing(reviewed, tmp_path):
    """#36's exact sequence: 30 edits saved through p.ccproj, the writer killed, a hard link opened."""
    path = reviewed
    hard = tmp_path / "hard.ccproj"
    os.link(path, hard)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, numpy as np
        from cellcounter.project import Project
        from cellcounter.annotations import Boxes
        os.unlink({str(hard)!r})  # the writer may only open a project under one name
        p = Project.open({str(path)!r})
        os.link({str(path)!r}, {str(hard)!r})  # a second name made while it writes
        ann = p.load(1)
        for i in range(1, 31):
            ann.boxes = Boxes(np.array([[0, 0, 1 + i, 1 + i]]), [0])
            p.save(1, ann)
        print("saved", flush=True)
        import time; time.sleep(60)
    """)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saved", child.stderr.read()
        # while the writer lives, no reader or writer through the other name sees a stale project
        for ro in (True, False):
            with pytest.raises(ProjectError, match="hard links"):
                Project.open(hard, readonly=ro)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert (tmp_path / (path.name + "-wal")).exists()  # the crash left its log beside the name it used
    for name in (hard, path):  # neither name opens while both exist: nothing can be saved that a log hides
        with pytest.raises(ProjectError, match="hard links"):
            Project.open(name)
    hard.unlink()  # as the message says: keep the name you use
    with Project.open(path) as p:
        assert maintenance.check(p) == []
        assert p.load(1).boxes.xyxy[0, 2] == 31  # all 30 acknowledged edits are there
        assert sum(e["kind"] == "boxes" for e in p.history.events(1)) == 30


def test_status_and_backup_through_a_hard_link_are_refused_with_the_reason(reviewed, tmp_path, capsys):
    os.link(reviewed, tmp_path / "hard.ccproj")
    for cmd in (["status", str(tmp_path / "hard.ccproj")], ["backup", str(tmp_path / "hard.ccproj"),
                                                             str(tmp_path / "b.ccproj")]):
        assert main(["project", *cmd]) == 2
        assert "hard links" in capsys.readouterr().err
    assert not (tmp_path / "b.ccproj").exists()


def _mount(folder, *options: str):
    """``folder`` as its own small file system (a tmpfs; read-only with ``ro``); skips where mounting is not
    allowed (not root, or a container without the right). Unmounted by the returned function."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=1m",) + tuple(o for o in options
                                                                                    if o != "ro")),
                           "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a file system here: {done.stderr.decode().strip()}")
    return lambda: subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(path, leave: int = 0) -> None:
    """Write ``path`` until its file system is full, then give ``leave`` bytes back."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
        fh.truncate(max(0, fh.tell() - leave))


def test_a_project_on_read_only_media_is_read_by_every_reading_command(reviewed, tmp_path, capsys):
    import shutil

    medium = tmp_path / "dvd"
    unmount = _mount(medium)
    try:
        shutil.copy(reviewed, medium / "p.ccproj")
        shutil.copy(tmp_path / "a.png", medium / "a.png")
        assert subprocess.run(["mount", "-o", "remount,ro", str(medium)]).returncode == 0
        assert not os.access(medium, os.W_OK)
        out = tmp_path / "out"
        out.mkdir()
        for argv in (["status"], ["check"], ["export", str(out / "c.csv"), "--to", "counts-csv"],
                     ["audit", str(out / "audit.csv")], ["backup", str(out / "copy.ccproj")]):
            assert main(["project", argv[0], str(medium / "p.ccproj"), *argv[1:]]) == 0, capsys.readouterr().err
        assert "reviewed" in capsys.readouterr().out
        with Project.open(out / "copy.ccproj", readonly=True) as copy:  # whole (its image stayed on the medium)
            assert copy.images()[0].review.value == "reviewed"
        with pytest.raises(ProjectError):  # writing is refused with a reason, nothing is half written
            Project.open(medium / "p.ccproj")
    finally:
        unmount()


def test_a_backup_to_a_missing_folder_or_a_full_disk_names_the_destination_not_the_project(reviewed, tmp_path,
                                                                                            capsys):
    assert main(["project", "backup", str(reviewed), str(tmp_path / "nowhere" / "b.ccproj")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "damaged" not in err
    small = tmp_path / "small"
    unmount = _mount(small)
    try:
        _fill(small / "filler", leave=24 * 1024)  # too little for a copy of the project
        with Project.open(reviewed) as p:  # a project larger than what is left
            for i in range(30):
                make_image(tmp_path / f"x{i}.png", seed=i)
                p.add_image(tmp_path / f"x{i}.png", "blood")
        assert main(["project", "backup", str(reviewed), str(small / "b.ccproj")]) == 2
        err = capsys.readouterr().err
        assert "b.ccproj" in err and "full" in err and "damaged" not in err, err
        assert not list(small.glob("*b.ccproj*"))  # nothing half written
        _fill(small / "filler2")  # the disk entirely full now
        assert main(["project", "create", str(small / "new.ccproj")]) == 2
        err = capsys.readouterr().err
        assert "new.ccproj" in err and ("full" in err), err
        assert not (small / "new.ccproj").exists()
    finally:
        unmount()
    _still_sound(reviewed)


def test_no_wal_shm_or_lock_file_is_left_beside_a_project_after_a_command(reviewed, tmp_path, capsys):
    """#32 point 7: `-wal`, `-shm` and `.lock` stayed beside the project after every CLI command."""
    make_image(tmp_path / "b.png", seed=3)
    for argv in (["status", str(reviewed)], ["add", str(reviewed), str(tmp_path / "b.png")],
                 ["check", str(reviewed), "--quick"], ["status", str(reviewed)]):
        assert main(["project", *argv]) == 0, capsys.readouterr().err
        left = sorted(f.name for f in tmp_path.iterdir() if f.name.startswith("p.ccproj") and f.is_file())
        assert left == ["p.ccproj"], (argv, left)
    with Project.open(reviewed) as p:  # while a writer holds it, a reader leaves the writer's files alone
        with Project.open(reviewed, readonly=True) as r:
            assert len(r.images()) == 2
        assert (tmp_path / "p.ccproj.lock").exists()
        with pytest.raises(ProjectError, match="open in another process"):
            Project.open(reviewed)
        p.set_review(p.images()[1].id, "reviewed")
    _still_sound(reviewed)


def test_a_backup_finds_its_images_where_it_lies_and_checks_sound(reviewed, tmp_path, capsys):
    """#32 point 5: every rolling backup reported its images missing (paths relative to the backup's folder)."""
    from cellcounter.project.backups import backups

    with Project.open(reviewed) as p:  # a change, then an open: a rolling backup is made
        p.set_review(p.images()[0].id, "in_progress")
    with Project.open(reviewed) as p:
        pass
    (rolling,) = backups(reviewed)[-1:]
    elsewhere = tmp_path / "safe"
    elsewhere.mkdir()
    assert main(["project", "backup", str(reviewed), str(elsewhere / "copy.ccproj")]) == 0
    for copy in (rolling, elsewhere / "copy.ccproj"):
        with Project.open(copy, readonly=True) as b:
            assert maintenance.check(b) == [], copy
            assert b.images()[0].path == (tmp_path / "a.png").resolve() and not maintenance.missing_images(b)
        assert main(["project", "check", str(copy)]) == 0, capsys.readouterr().out
