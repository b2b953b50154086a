"""Training in a child process, its events streamed back: what the app's Fine-tune panel runs.

A training step holds the GIL for most of its time, so a run in a thread of
the GUI process makes the window stutter; a spawned process shares nothing
with the GUI but a queue. Stopping is asked, not forced: the child's loop
reaches its own stop branch, writes a checkpoint and says the run can be
resumed. A child that dies (a crash, out of memory, killed) is reported as an
error naming its exit status, never taking the app with it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable, Iterator, Sequence

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from training.config import TrainConfig

_EVENT, _ERROR, _END = "event", "error", "end"


def _child_main(config: TrainConfig, annotations, events, stop) -> None:
    """The child's body: run the training, put each event on ``events``, then an end or an error."""
    try:
        from training.loop import iter_training

        for ev in iter_training(config, should_stop=stop.is_set, annotations=annotations):
            events.put((_EVENT, ev))
    except CellCounterError as exc:
        events.put((_ERROR, str(exc)))
    except BaseException as exc:  # noqa: BLE001 - anything else still reaches the parent, with where it came from
        events.put((_ERROR, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"))
    else:
        events.put((_END, None))
    finally:
        events.close()
        events.join_thread()  # everything put reaches the parent before the process exits


class TrainingProcess:
    """One training run in a spawned child process.

    Parameters
    ----------
    config
        The run's settings, as for :func:`training.iter_training`.
    annotations
        The training set in memory (frozen: the child gets a copy when it starts), or ``None`` to read
        ``config.data``.
    stop_timeout_s
        How long :meth:`close` waits for a stopping child to write its checkpoint before ending it.
    """

    def __init__(self, config: TrainConfig, annotations: Sequence[ImageAnnotation] | None = None,
                 stop_timeout_s: float = 120.0) -> None:
        ctx = mp.get_context("spawn")  # fork would copy the GUI's threads and GL state into the child
        self._events = ctx.Queue()
        self._stop = ctx.Event()
        anns = None if annotations is None else list(annotations)
        self._proc = ctx.Process(target=_child_main, args=(config, anns, self._events, self._stop),
                                 name="cellcounter-training", daemon=True)
        self.stop_timeout_s = stop_timeout_s

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def start(self) -> TrainingProcess:
        self._proc.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop at its next step: it writes a checkpoint and ends with a ``stopped`` event."""
        self._stop.set()

    def events(self, should_stop: Callable[[], bool] | None = None, poll_s: float = 0.2) -> Iterator:
        """The run's :class:`training.loop.TrainEvent` objects as the child sends them.

        ``should_stop`` is polled between events (and every ``poll_s`` seconds while none come); once
        true, the child is asked to stop. Raises :class:`CellCounterError` with the child's message when
        the run fails, or with its exit status when the child dies.
        """
        if self._proc.pid is None:
            self.start()
        try:
            while True:
                if should_stop is not None and not self._stop.is_set() and should_stop():
                    self.stop()
                try:
                    tag, payload = self._events.get(timeout=poll_s)
                except queue.Empty:
                    if self._proc.is_alive():
                        continue
                    try:  # it may have put its last words just before exiting
                        tag, payload = self._events.get(timeout=1.0)
                    except queue.Empty:
                        raise CellCounterError(f"the training process ended unexpectedly "
                                               f"({_exit_words(self._proc.exitcode)}); nothing was registered, "
                                               "and the run can be resumed from its last checkpoint") from None
                if tag == _EVENT:
                    yield payload
                elif tag == _ERROR:
                    raise CellCounterError(f"training failed: {payload}")
                else:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the child to end (asking it to stop first if it still runs); end it if it will not."""
        if self._proc.pid is None:
            return
        if self._proc.is_alive():
            self.stop()
            self._proc.join(self.stop_timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)
        self._events.close()
        self._events.cancel_join_thread()


def _exit_words(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"


def iter_training_in_child(config: TrainConfig, should_stop: Callable[[], bool] | None = None,
                           annotations: Sequence[ImageAnnotation] | None = None) -> Iterator:
    """:func:`training.iter_training`, run in a spawned child process; same arguments, same events."""
    yield from TrainingProcess(config, annotations).events(should_stop)


__all__ = ["TrainingProcess", "iter_training_in_child"]
