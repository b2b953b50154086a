"""Inference: torch and ONNX Runtime backends, whole-image and tiled prediction.

The names below load on first use: a command that needs no model (``cellcounter info``, ``convert``,
``project status``) never pays for importing torch or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {"OnnxBackend": "backends", "TorchBackend": "backends", "resolve_device": "device",
          "export_onnx": "export", "Cancelled": "predictor", "Predictor": "predictor",
          "RawDetections": "predictor", "TiledPredictor": "tiling", "predict_image": "tiling"}

__all__ = ["Cancelled", "OnnxBackend", "Predictor", "RawDetections", "TiledPredictor", "TorchBackend",
           "export_onnx", "predict_image", "resolve_device"]

if TYPE_CHECKING:
    from cellcounter.inference.backends import OnnxBackend, TorchBackend
    from cellcounter.inference.device import resolve_device
    from cellcounter.inference.export import export_onnx
    from cellcounter.inference.predictor import Cancelled, Predictor, RawDetections
    from cellcounter.inference.tiling import TiledPredictor, predict_image


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
