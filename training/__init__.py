"""Fine-tuning of cellcounter's models from corrected labels (imports :mod:`cellcounter`, never :mod:`app`).

``iter_training(config)`` yields progress events and can be stopped between
steps; ``run_training(config)`` runs it to the end. The GUI and
``cellcounter-train`` both use them. The names load on first use, so that the
``cellcounter`` command line can register ``project train`` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {"TrainConfig": "config", "TrainEvent": "loop", "iter_training": "loop", "run_training": "loop",
          "RECIPES": "recipes", "apply_recipe": "recipes"}

__all__ = ["RECIPES", "TrainConfig", "TrainEvent", "apply_recipe", "iter_training", "run_training"]

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.loop import TrainEvent, iter_training, run_training
    from training.recipes import RECIPES, apply_recipe


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
