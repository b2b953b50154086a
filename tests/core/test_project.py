"""The project store never loses committed edits, keeps who-did-what, and refuses what it cannot trust."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cellcounter.annotations import Boxes, Grade, Origin, as_reference
from cellcounter.cli import main
from cellcounter.errors import ProjectError
from cellcounter.formats import read_labels
from cellcounter.project import Project, maintenance
from cellcounter.project.serialize import apply_mask_diff, mask_diff, unpack
from tests.conftest import REPO, sample_annotation


@pytest.fixture
def project(tmp_path):
    ann = sample_annotation(tmp_path, "img", 0)
    proj = Project.create(tmp_path / "p.ccproj", user="alice")
    image_id = proj.add_image(ann.image_path, "blood")
    proj.save(image_id, ann, origin="model:blood-v1")
    yield proj, image_id, ann
    proj.close()


def test_annotations_round_trip_through_the_store(project):
    proj, image_id, ann = project
    back = proj.load(image_id)
    assert back.equals(ann)
    assert back.content_hash.startswith("sha256:") and back.task == "blood"
    assert proj.add_image(ann.image_path) == image_id  # adding twice is a no-op


def test_every_edit_is_an_event_with_user_and_origin(project):
    proj, image_id, ann = project
    ann.boxes = ann.boxes.subset(np.array([True, False, True]))
    ann.grade = Grade(3)
    assert proj.save(image_id, ann) == ["boxes", "grade"]
    assert proj.save(image_id, ann) == []  # nothing changed, nothing recorded
    proj.set_review(image_id, "reviewed")
    kinds = [(e["kind"], e["origin"], e["user"]) for e in proj.history.events(image_id)]
    assert kinds[0] == ("add", "human", "alice")
    assert ("masks", "model:blood-v1", "alice") in kinds
    assert kinds[-3:] == [("boxes", "human", "alice"), ("grade", "human", "alice"), ("review", "human", "alice")]
    rec = proj.image(image_id)
    assert rec.review.value == "reviewed" and rec.reviewed_by == "alice"


def test_commit_returns_the_labels_exactly_as_a_fresh_load_reads_them(project):
    proj, image_id, ann = project
    ann.boxes = ann.boxes.subset(np.array([True, False, True]))
    ann.grade = Grade(1)
    changed, stored = proj.commit(image_id, ann)
    assert changed == ["boxes", "grade"]
    fresh = proj.load(image_id)
    assert stored.equals(fresh) and stored.review == fresh.review and stored.content_hash == fresh.content_hash
    assert stored.model_version == fresh.model_version
    unchanged, again = proj.commit(image_id, fresh)
    assert unchanged == [] and again.equals(fresh)


def test_mask_edits_are_stored_as_small_reversible_diffs(project):
    proj, image_id, ann = project
    before = proj.load(image_id).masks
    lab = before.label_image.copy()
    lab[0:2, 60:62] = 3  # a small brush stroke
    after = type(before)(lab, before.ids, before.classes, before.scores, before.origins)
    ann.masks = after
    proj.save(image_id, ann)
    ev = proj.history.events(image_id)[-1]
    assert ev["kind"] == "masks"
    d = mask_diff(before, after)
    assert unpack(d)["after_pixels"].size < 200  # the changed window only
    assert apply_mask_diff(after, d, reverse=True).equals(before)
    assert apply_mask_diff(before, d, reverse=False).equals(after)


def test_model_versions_and_the_active_one_per_task(project, tmp_path):
    proj, image_id, _ = project
    proj.registry.add("blood-v1", "blood", tmp_path / "v1.pt", {"arch": "retinanet"}, active=True)
    proj.registry.add("blood-v2", "blood", tmp_path / "v2.pt", {"arch": "retinanet"}, parent="blood-v1",
                           training_data=[image_id], metrics={"map50": 0.8})
    assert proj.registry.active("blood").name == "blood-v1"
    proj.registry.activate("blood-v2")
    active = proj.registry.active("blood")
    assert active.name == "blood-v2" and active.parent == "blood-v1" and active.training_data == [image_id]
    with pytest.raises(ProjectError, match="no model version"):
        proj.registry.activate("nope")


def test_moved_images_are_relinked_by_content_hash(project, tmp_path):
    proj, image_id, ann = project
    moved = tmp_path / "elsewhere" / "deep"
    moved.mkdir(parents=True)
    shutil.move(ann.image_path, moved / "renamed.png")
    assert [r.id for r in maintenance.missing_images(proj)] == [image_id]
    assert "image missing" in maintenance.check(proj)[0]
    assert maintenance.relink(proj, tmp_path / "elsewhere") == {image_id: moved / "renamed.png"}
    assert maintenance.check(proj) == [] and proj.load(image_id).equals(ann) is False  # name changed with the move
    assert proj.load(image_id).boxes.equals(ann.boxes)


def test_foreign_damaged_and_newer_files_get_clear_errors(tmp_path):
    (tmp_path / "text.ccproj").write_text("hello")
    with pytest.raises(ProjectError, match="not an SQLite database"):
        Project.open(tmp_path / "text.ccproj")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ProjectError, match="foreign SQLite"):
        Project.open(tmp_path / "other.db")
    Project.create(tmp_path / "new.ccproj").close()
    con = sqlite3.connect(tmp_path / "new.ccproj")
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(ProjectError, match="newer cellcounter"):
        Project.open(tmp_path / "new.ccproj")
    Project.create(tmp_path / "cut.ccproj").close()
    data = (tmp_path / "cut.ccproj").read_bytes()
    (tmp_path / "cut.ccproj").write_bytes(data[:100] + os.urandom(len(data) - 100))
    with pytest.raises(ProjectError, match="cut.ccproj"):
        with Project.open(tmp_path / "cut.ccproj") as p:
            p.images()
    with pytest.raises(ProjectError, match="no such project"):
        Project.open(tmp_path / "missing.ccproj")


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_process_gets_a_clear_message_or_read_only_access(project):
    proj, image_id, ann = project
    path = proj.path
    proj.close()
    child = _child(f"""
        import sys, time
        from cellcounter.project import Project
        p = Project.open({str(path)!r})
        print("open", flush=True)
        sys.stdin.readline() if False else time.sleep(30)
    """)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(ProjectError, match=rf"open in another process \(.*pid {child.pid}\)"):
            Project.open(path)
        with Project.open(path, readonly=True) as ro:
            assert ro.load(image_id).equals(ann)
            with pytest.raises(ProjectError, match="read-only"):
                ro.set_review(image_id, "reviewed")
    finally:
        child.kill()
        child.wait()
    with Project.open(path) as again:  # the dead process's lock is gone
        assert maintenance.check(again) == []


def test_sigkill_in_a_stream_of_edits_loses_at_most_the_edit_in_flight(project):
    proj, image_id, _ = project
    path = proj.path
    proj.close()
    child = _child(f"""
        import numpy as np
        from cellcounter.project import Project
        from cellcounter.annotations import Boxes
        p = Project.open({str(path)!r})
        ann = p.load({image_id})
        for i in range(1, 100000):
            ann.boxes = Boxes(np.array([[0, 0, 1 + i, 1 + i]]), [0])
            p.save({image_id}, ann)
            print(i, flush=True)
    """)
    last = 0
    while last < 30:  # kill it mid-stream once it has acknowledged some edits, however slow the machine
        line = child.stdout.readline()
        if not line:
            break
        if line.strip():
            last = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    for line in child.stdout.read().split():
        last = int(line)  # edits reported before the kill
    assert last > 20
    with Project.open(path) as reopened:
        assert maintenance.check(reopened) == []
        box_edits = [e for e in reopened.history.events(image_id) if e["kind"] == "boxes" and e["origin"] == "human"]
        assert last <= len(box_edits) <= last + 1
        assert reopened.load(image_id).boxes.xyxy[0, 2] == 1 + len(box_edits)


def test_backup_while_another_process_writes(project, tmp_path):
    proj, image_id, _ = project
    path = proj.path
    proj.close()
    child = _child(f"""
        import numpy as np
        from cellcounter.project import Project
        from cellcounter.annotations import Boxes
        p = Project.open({str(path)!r})
        ann = p.load({image_id})
        print("go", flush=True)
        for i in range(1, 400):
            ann.boxes = Boxes(np.array([[0, 0, 1 + i, 1 + i]]), [0])
            p.save({image_id}, ann)
    """)
    try:
        assert child.stdout.readline().strip() == "go"
        assert main(["project", "backup", str(path), str(tmp_path / "copy.ccproj")]) == 0
    finally:
        child.wait(timeout=120)
    with Project.open(tmp_path / "copy.ccproj", readonly=True) as copy:
        assert maintenance.check(copy) == [] and len(copy.images()) == 1


def test_cli_create_status_export_audit(tmp_path, capsys):
    anns = [sample_annotation(tmp_path / "data", f"im{i}", i) if (tmp_path / "data").mkdir(exist_ok=True) is None
            else None for i in range(3)]
    from cellcounter.formats import write_labels

    write_labels(anns, tmp_path / "data" / "labels.json", "coco")
    proj = tmp_path / "p.ccproj"
    assert main(["project", "create", str(proj), str(tmp_path / "data" / "labels.json")]) == 0
    assert main(["project", "status", str(proj), "--json"]) == 0
    st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert st["images"] == 3 and st["review"]["unreviewed"] == 3
    assert st["instances"]["RBC"] == sum(a.counts()["RBC"] for a in anns)
    assert st["grades"] == {"2": 3}
    # a full export/import round trip: boxes, masks, points and grades
    assert main(["project", "export", str(proj), "--to", "coco", str(tmp_path / "out.json")]) == 0
    back = read_labels(tmp_path / "out.json")
    assert all(as_reference(a).equals(b) for a, b in zip(anns, back))  # imported labels come back as reference
    assert main(["project", "audit", str(proj), str(tmp_path / "audit.csv")]) == 0
    lines = (tmp_path / "audit.csv").read_text().splitlines()
    assert lines[0].startswith("id,time_utc,user,image,kind,origin") and len(lines) > 3
    assert main(["project", "check", str(proj)]) == 0
    assert main(["project", "create", str(proj)]) == 2  # never overwrites an existing project
    capsys.readouterr()
    (tmp_path / "junk.ccproj").write_bytes(b"junk")
    assert main(["project", "status", str(tmp_path / "junk.ccproj")]) == 2
    assert "not a cellcounter project" in capsys.readouterr().err


def test_origin_of_objects_survives_the_store(project):
    proj, image_id, ann = project
    ann.boxes = Boxes(np.array([[1, 1, 5, 5]]), [1], [0.5], [Origin.CORRECTED])
    proj.save(image_id, ann)
    assert proj.load(image_id).boxes.origins.tolist() == [Origin.CORRECTED]


def test_labels_of_the_wrong_size_are_refused_and_nothing_is_saved(project, tmp_path):
    proj, image_id, ann = project
    n_events = len(proj.history.events())
    wrong = sample_annotation(tmp_path, "other", 1)
    wrong.width = 100
    with pytest.raises(ProjectError, match="100x48 image but the image is 64x48"):
        proj.save(image_id, wrong)
    assert len(proj.history.events()) == n_events and proj.load(image_id).equals(ann)


def test_model_counts_survive_corrections(project):
    proj, image_id, ann = project
    model_ann = proj.load(image_id)
    model_ann.boxes = Boxes(np.array([[0, 0, 5, 5]] * 3), [0, 0, 2], [0.9, 0.8, 0.7], [Origin.MODEL] * 3)
    proj.save(image_id, model_ann, origin="model:blood@1")
    corrected = proj.load(image_id)
    corrected.boxes = corrected.boxes.subset(np.array([True, False, True]))
    proj.save(image_id, corrected)
    assert proj.history.model_counts(image_id) == {"RBC": 2, "WBC": 0, "Platelets": 1}
    assert proj.load(image_id).counts("boxes") == {"RBC": 1, "WBC": 0, "Platelets": 1}


def test_model_counts_follow_the_score_threshold(project):
    proj, image_id, _ = project
    ann = proj.load(image_id)
    ann.boxes = Boxes(np.array([[0, 0, 5, 5]] * 3), [0, 0, 1], [0.9, 0.2, 0.6], [Origin.MODEL] * 3)
    proj.save(image_id, ann, origin="model:blood@1")
    assert proj.history.model_counts(image_id, 0.5) == {"RBC": 1, "WBC": 1, "Platelets": 0}
    assert proj.history.model_counts(image_id) == {"RBC": 2, "WBC": 1, "Platelets": 0}


def test_a_second_name_for_the_project_file_does_not_bypass_the_one_writer_lock(tmp_path):
    path = tmp_path / "p.ccproj"
    Project.create(path).close()
    other = tmp_path / "other.ccproj"
    os.symlink(path, other)
    with Project.open(path):
        with pytest.raises(ProjectError, match="open in another process"):
            Project.open(other)
        with Project.open(other, readonly=True) as ro:  # reading stays possible
            assert ro.images() == []
    Project.open(other).close()  # and once the writer is gone, the other name opens
