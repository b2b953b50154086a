"""Inference: torch and ONNX Runtime backends, whole-image and tiled prediction."""

from cellcounter.inference.backends import OnnxBackend, TorchBackend, resolve_device
from cellcounter.inference.export import export_onnx
from cellcounter.inference.predictor import Cancelled, Predictor, RawDetections
from cellcounter.inference.tiling import TiledPredictor

__all__ = ["Cancelled", "OnnxBackend", "Predictor", "RawDetections", "TiledPredictor", "TorchBackend",
           "export_onnx", "resolve_device"]
