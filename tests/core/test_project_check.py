"""``project check`` says "ok" only on a sound project (#36): each damage kind the probe found is reported,
naming what it is about, and none crashes the check, the status or the export."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from cellcounter.annotations import Boxes, Origin
from cellcounter.cli import main
from cellcounter.project import Project, maintenance
from cellcounter.project import serialize as ser
from tests.conftest import make_image


@pytest.fixture
def sound(tmp_path):
    make_image(tmp_path / "a.png", 64, 48, seed=1)
    make_image(tmp_path / "other.png", 64, 48, seed=2)
    path = tmp_path / "p.ccproj"
    with Project.create(path) as p:
        image_id = p.add_image(tmp_path / "a.png", "blood")
        ann = p.load(image_id)
        ann.boxes = Boxes(np.array([[1, 2, 10, 12], [20, 20, 30, 30]], float), [0, 1], [0.9, np.nan],
                          [Origin.MODEL, Origin.HUMAN])
        p.save(image_id, ann)
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "card.json").write_text("{}")  # a model folder: check looks that it is there
        p.registry.add("blood-project-1", "blood", tmp_path / "model", {"name": "x"}, None, [image_id],
                            {"after": {"map50": 0.5}})
    return path


def _sql(path, *statements, params=()):
    conn = sqlite3.connect(path)
    for s in statements:
        conn.execute(s, params) if params else conn.execute(s)
    conn.commit()
    conn.close()


def _boxes_blob(xyxy, classes, origins):
    return ser.boxes_blob(Boxes(np.array(xyxy, float), classes, [np.nan] * len(classes), origins))


DAMAGE = {
    "card not JSON": (lambda p, t: _sql(p, "UPDATE models SET card = '{not json'"), "card is not JSON"),
    "metrics not JSON": (lambda p, t: _sql(p, "UPDATE models SET metrics = 'nan nan'"), "metrics is not JSON"),
    "class id past the names": (lambda p, t: _sql(p, "UPDATE annotations SET boxes = ?",
                                                  params=(_boxes_blob([[1, 1, 5, 5]], [7], [1]),)), "class id 7"),
    "origin 200": (lambda p, t: _sql(p, "UPDATE annotations SET boxes = ?",
                                     params=(_boxes_blob([[1, 1, 5, 5]], [0], [200]),)), "unknown origin 200"),
    "NaN box": (lambda p, t: _sql(p, "UPDATE annotations SET boxes = ?",
                                  params=(_boxes_blob([[np.nan, 1, 5, 5]], [0], [1]),)), "non-finite"),
    "garbage in the history": (lambda p, t: _sql(p, "UPDATE events SET before = X'DEADBEEF' WHERE kind = 'boxes'"),
                               "edit history event"),
    "events table dropped": (lambda p, t: _sql(p, "DROP TABLE events"), "lacks table 'events'"),
    "foreign trigger": (lambda p, t: _sql(p, "CREATE TRIGGER evil AFTER INSERT ON images BEGIN SELECT 1; END"),
                        "foreign trigger 'evil'"),
    "image replaced": (lambda p, t: (t / "other.png").replace(t / "a.png"), "different image"),
    "path rewritten": (lambda p, t: _sql(p, "UPDATE images SET path = '/etc/passwd'"), "different image"),
    "review status bogus": (lambda p, t: _sql(p, "UPDATE images SET review = 'bogus'"),
                            "unknown review status 'bogus'"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_each_kind_of_damage_is_found_and_named(sound, tmp_path, kind, capsys):
    damage, expected = DAMAGE[kind]
    with Project.open(sound, readonly=True) as p:
        assert maintenance.check(p) == []
    damage(sound, tmp_path)
    assert main(["project", "check", str(sound)]) == 1
    out = capsys.readouterr().out
    assert expected in out and "problem(s)" in out


def test_quick_skips_the_content_hashes_only(sound, tmp_path, capsys):
    (tmp_path / "other.png").replace(tmp_path / "a.png")
    assert main(["project", "check", "--quick", str(sound)]) == 0
    assert main(["project", "check", str(sound)]) == 1


def test_a_random_page_overwrite_is_reported_not_a_crash(sound, capsys):
    data = bytearray(sound.read_bytes())
    rng = np.random.default_rng(0)
    page = 4096
    start = page * (len(data) // page - 1)
    data[start:start + page] = rng.integers(0, 256, page, dtype=np.uint8).tobytes()
    sound.write_bytes(bytes(data))
    rc = main(["project", "check", str(sound)])
    out = capsys.readouterr()
    assert rc in (1, 2) and "Traceback" not in out.err
    assert "problem" in out.out or "damaged" in out.err
