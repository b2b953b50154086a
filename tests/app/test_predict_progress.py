"""Progress you can trust (#19, point 5): a multi-tile image moves the bar per tile, with the time left, and
the panel says when the run is over."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from app.session import Session
from app.widgets.predict import PROGRESS_STEPS, TileProgress
from app.window import CellCounterWindow
from tests.helpers import make_tiny_model


class Recording(TileProgress):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __call__(self, *a) -> None:
        self.calls.append(a)
        super().__call__(*a)


def test_the_bar_moves_per_tile_and_the_panel_says_when_it_is_done(make_napari_viewer, tmp_path, monkeypatch,
                                                                   qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    model = make_tiny_model("detector", tmp_path / "m")
    card = json.loads((model / "card.json").read_text())
    card["architecture"]["tile_size"] = 128  # a 600 x 600 image becomes dozens of tiles
    (model / "card.json").write_text(json.dumps(card))
    Image.fromarray((np.random.default_rng(0).random((600, 600, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(tmp_path / "a.png", "blood", user="tester")
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
    panel = win.predict
    panel.model.addItem("tiny", str(model))
    panel.model.setCurrentIndex(panel.model.count() - 1)
    panel.tiles = Recording()
    values, texts = [], []
    panel.progress.valueChanged.connect(values.append)
    panel.progress.valueChanged.connect(lambda _v: texts.append(panel.status.text()))
    assert panel.start(all_unreviewed=False) is not None
    qtbot.waitUntil(lambda: panel.worker is None, timeout=120_000)
    calls = panel.tiles.calls
    assert len(calls) >= 9 and [c[2] for c in calls] == list(range(1, len(calls) + 1))
    assert all(c[3] == len(calls) for c in calls)
    intermediate = [v for v in values if 0 < v < PROGRESS_STEPS]
    assert len(intermediate) >= 2 and intermediate == sorted(intermediate)
    assert any("tile" in t and "left" in t for t in texts)
    assert panel.progress.value() == PROGRESS_STEPS
    assert panel.status.text().startswith("Done: 1 image(s) in ")
    assert len(win.session.saved.boxes) > 0
