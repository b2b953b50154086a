"""Which build this is: the full one (torch: fine-tuning, torch inference, GPUs) or the counting one, which
carries no torch and predicts every bundled model through OpenVINO or ONNX Runtime (docs/install.md).

Asked without importing torch: importing it costs seconds, and the answer must not.
"""

from __future__ import annotations

import importlib.util

from cellcounter.errors import CellCounterError

FULL_BUILD = ("this installation carries no torch (the counting build): install the full build of cellcounter "
              "for it (docs/install.md, 'Which installer')")


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def needs_torch(why: str) -> None:
    """Raise ``why`` (what needs torch) as a :class:`CellCounterError` naming the full build, where torch
    cannot be imported."""
    if not has_torch():
        raise CellCounterError(f"{why}: {FULL_BUILD}")
