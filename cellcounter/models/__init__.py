"""Model definitions (RetinaNet detector, Mask R-CNN segmenter, ResNet grader), cards and weights IO."""

from cellcounter.models.build import build_model
from cellcounter.models.card import ModelCard, load_model, resolve_model, save_model
from cellcounter.models.config import (
    DetectorConfig,
    GraderConfig,
    SegmenterConfig,
    config_from_dict,
    config_to_dict,
)

__all__ = ["DetectorConfig", "GraderConfig", "ModelCard", "SegmenterConfig", "build_model", "config_from_dict",
           "config_to_dict", "load_model", "resolve_model", "save_model"]
