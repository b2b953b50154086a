"""Training in a child process: the same events as in-process, Cancel leaves a resumable checkpoint, a dying
child is reported as an error and not fatal to its parent."""

from __future__ import annotations

import os
import signal

import pytest

from cellcounter.errors import CellCounterError
from tests.helpers import tiny
from training.child import TrainingProcess, iter_training_in_child


def test_a_run_in_a_child_streams_its_events_and_writes_the_model(tmp_path):
    cfg = tiny("blood", tmp_path, max_steps=2)
    kinds = [ev.kind for ev in iter_training_in_child(cfg)]
    assert kinds[0] == "start" and kinds.count("step") == 2 and kinds[-1] == "done"
    assert (tmp_path / "blood" / "model" / "card.json").is_file()


def test_cancel_asks_the_child_to_stop_and_it_leaves_a_checkpoint_to_resume_from(tmp_path):
    cfg = tiny("blood", tmp_path, epochs=50)  # far longer than the test waits
    steps = []

    def should_stop():
        return len(steps) >= 1

    events = []
    for ev in iter_training_in_child(cfg, should_stop=should_stop):
        events.append(ev)
        if ev.kind == "step":
            steps.append(ev.step)
    assert events[-1].kind == "stopped" and "resume" in events[-1].message
    assert (tmp_path / "blood" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "blood" / "model").exists()


def test_a_child_that_dies_is_reported_with_its_signal_and_the_parent_goes_on(tmp_path):
    run = TrainingProcess(tiny("blood", tmp_path, epochs=50)).start()
    with pytest.raises(CellCounterError, match="ended unexpectedly.*signal 9"):
        for ev in run.events():
            if ev.kind == "step":
                os.kill(run.pid, signal.SIGKILL)


def test_a_failing_run_raises_the_child_s_message(tmp_path):
    cfg = tiny("blood", tmp_path, max_steps=1, data=str(tmp_path / "no-such-folder"))
    with pytest.raises(CellCounterError, match="no-such-folder"):
        list(iter_training_in_child(cfg))
