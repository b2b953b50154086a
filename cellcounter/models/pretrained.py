"""ImageNet-pretrained backbone initialisation: torchvision's weights when online (cached after), or a local file.

Nothing is downloaded unless asked for; offline without a file, the error
says where to get the file and how to pass it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from cellcounter.errors import CellCounterError
from cellcounter.models.card import load_weights

IMAGENET_WEIGHTS = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}


def backbone_body(model: nn.Module) -> nn.Module:
    """The ResNet trunk inside a detector, segmenter or grader."""
    if hasattr(model, "backbone"):
        return model.backbone.body
    if hasattr(model, "features"):
        return model.features
    raise TypeError(f"no ResNet backbone in {type(model).__name__}")


def imagenet_state_dict(backbone: str, weights_file: str | Path | None = None) -> dict[str, torch.Tensor]:
    """ResNet ImageNet weights from ``weights_file`` or torchvision's cache/download."""
    if weights_file is not None:
        return load_weights(Path(weights_file))
    weights = IMAGENET_WEIGHTS[backbone]
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, socket timeouts, SSL errors: all mean "could not fetch"
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise CellCounterError(
            f"cannot fetch ImageNet weights for {backbone} ({type(exc).__name__}: {exc}). This machine seems "
            f"offline. On a connected machine download {weights.url}, then either copy it into {cache} or pass "
            "the file with --init-weights FILE; or train from scratch with --init none.") from None


def init_backbone_imagenet(model: nn.Module, backbone: str, weights_file: str | Path | None = None) -> list[str]:
    """Load ImageNet weights into the model's ResNet trunk; returns the trunk keys left uninitialised."""
    state = imagenet_state_dict(backbone, weights_file)
    body = backbone_body(model)
    if isinstance(body, nn.Sequential):  # the grader's trunk: children numbered in ResNet order
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
        state = {_renumber(k, names): v for k, v in state.items() if not k.startswith("fc.")}
    result = body.load_state_dict(state, strict=False)
    return list(result.missing_keys)


def _renumber(key: str, names: list[str]) -> str:
    head, _, rest = key.partition(".")
    return f"{names.index(head)}.{rest}" if head in names else key
