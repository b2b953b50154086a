"""Model definitions (RetinaNet detector, Mask R-CNN segmenter, ResNet grader), cards and weights IO.

The names below load on first use: reading a model's configuration (``cellcounter.models.config``) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {"build_model": "build", "ModelCard": "card", "load_model": "card", "resolve_model": "card",
          "save_model": "card", "DetectorConfig": "config", "GraderConfig": "config", "SegmenterConfig": "config",
          "config_from_dict": "config", "config_to_dict": "config"}

__all__ = ["DetectorConfig", "GraderConfig", "ModelCard", "SegmenterConfig", "build_model",
           "config_from_dict", "config_to_dict", "load_model", "resolve_model", "save_model"]

if TYPE_CHECKING:
    from cellcounter.models.build import build_model
    from cellcounter.models.card import ModelCard, load_model, resolve_model, save_model
    from cellcounter.models.config import (
        DetectorConfig,
        GraderConfig,
        SegmenterConfig,
        config_from_dict,
        config_to_dict,
    )


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
