"""Inference: torch, ONNX Runtime and OpenVINO backends; one entry (:func:`predict_image`) for every caller.

The names below load on first use: a command that needs no model (``cellcounter info``, ``convert``,
``project status``) never pays for importing torch or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {"OnnxBackend": "backends", "TorchBackend": "backends", "resolve_device": "device",
          "export_onnx": "export", "Cancelled": "predictor", "Predictor": "predictor",
          "RawDetections": "predictor", "TiledPredictor": "tiling", "predict_image": "run", "predict_file": "run",
          "load_predictor": "run"}

__all__ = ["Cancelled", "OnnxBackend", "Predictor", "RawDetections", "TiledPredictor", "TorchBackend",
           "export_onnx", "load_predictor", "predict_file", "predict_image", "resolve_device"]

if TYPE_CHECKING:
    from cellcounter.inference.backends import OnnxBackend, TorchBackend
    from cellcounter.inference.device import resolve_device
    from cellcounter.inference.export import export_onnx
    from cellcounter.inference.predictor import Cancelled, Predictor, RawDetections
    from cellcounter.inference.run import load_predictor, predict_file, predict_image
    from cellcounter.inference.tiling import TiledPredictor


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
