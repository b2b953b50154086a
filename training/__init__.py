"""Fine-tuning of cellcounter's models from corrected labels (imports :mod:`cellcounter`, never :mod:`app`).

``iter_training(config)`` yields progress events and can be stopped between
steps; ``run_training(config)`` runs it to the end. The GUI and
``cellcounter-train`` both use them.
"""

from training.config import TrainConfig
from training.loop import TrainEvent, iter_training, run_training
from training.recipes import RECIPES, apply_recipe

__all__ = ["RECIPES", "TrainConfig", "TrainEvent", "apply_recipe", "iter_training", "run_training"]
