"""The window never freezes: prediction and training run off the GUI thread, and they finish."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QTimer

from app.session import Session
from app.window import CellCounterWindow
from tests.conftest import data_dir
from tests.helpers import make_tiny_model


def test_longest_event_loop_stall_during_prediction_and_training(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    bccd = data_dir("bccd")
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(bccd / "JPEGImages" / "BloodImage_00002.jpg", "blood", user="t")
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
    for name in ("BloodImage_00003.jpg", "BloodImage_00004.jpg"):  # two reviewed images to fine-tune on
        other = session.import_image(bccd / "JPEGImages" / name)
        session.project.set_review(other, "reviewed")

    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)

    model = make_tiny_model("detector", tmp_path / "tiny")
    win.predict.model.addItem("tiny", str(model))
    win.predict.model.setCurrentIndex(win.predict.model.count() - 1)
    from app.widgets.train import prepare_run

    cfg, anns, ids = prepare_run(win.controller, "blood", "blood-detector", 1, None)
    cfg.min_size, cfg.max_size, cfg.fpn_channels, cfg.batch_size, cfg.max_steps = 96, 128, 32, 1, 3
    cfg.warmup_iters, cfg.checkpoint_every = 1, 0
    assert win.predict.start(all_unreviewed=False) is not None
    assert win.train.start(cfg, anns, ids) is not None
    qtbot.waitUntil(lambda: win.predict.worker is None and win.train.worker is None, timeout=240_000)
    timer.stop()
    # one more round of events to settle, then measure
    stall_ms = max(gaps[5:]) * 1000
    print(f"longest event-loop stall: {stall_ms:.0f} ms over {len(gaps)} ticks")
    (tmp_path / "stall.txt").write_text(f"{stall_ms:.1f}\n")
    assert win.train.result and win.train.result.version is not None  # the new version was registered
    assert session.project.registry.versions("blood")[0].name == win.train.result.version.name
    # Work on the GUI thread would freeze it for the whole run (many seconds); the target of under 200 ms
    # is measured on a quiet machine by bench/bench_ui.py, not asserted here where other load can intrude.
    assert stall_ms < 2000, f"GUI froze for {stall_ms:.0f} ms"
    win.train.activate()
    assert session.project.registry.active("blood").name == win.train.result.version.name
    win.train.rollback()
    assert session.project.registry.active("blood") is None
    np.testing.assert_equal(len(gaps) > 50, True)
    session.close()
