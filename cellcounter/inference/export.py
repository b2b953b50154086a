"""ONNX export of each model kind, with dynamic image size."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from cellcounter.fileutil import atomic_write_with
from cellcounter.inference.backends import DETECTION_OUTPUTS
from cellcounter.models.card import ModelCard

OPSET = 17


def export_onnx(model: nn.Module, card: ModelCard, out: str | Path) -> Path:
    """Write ``model`` as ONNX to ``out`` (atomically). A detector is exported as its network (a normalised
    batch padded to multiples of 32 in, per-anchor logits and box deltas out: post-processing runs outside,
    :mod:`cellcounter.inference.detector_post`); a segmenter keeps its normalisation, box decoding, NMS and
    mask heads inside the graph; the grader takes a preprocessed batch, the U-Net a batch of RGB in [0, 1]
    padded to its multiple."""
    cfg = card.config
    model = model.eval().cpu()
    out = Path(out)
    if cfg.kind == "detector":
        from cellcounter.inference.detector_net import DetectorNetwork
        from cellcounter.inference.detector_post import PAD

        side = (cfg.min_size if cfg.min_size > 0 else 256) // PAD * PAD
        model = DetectorNetwork(model).eval()
        example = (torch.zeros(1, 3, side, side + 2 * PAD),)
        dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "cls_logits": {0: "batch", 1: "anchors"},
                   "bbox_regression": {0: "batch", 1: "anchors"}}
    elif cfg.kind == "grader":
        example: tuple = (torch.zeros(1, 3, cfg.input_size, cfg.input_size),)
        dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    elif cfg.kind == "unet":  # the network only; the watershed runs outside it, the same for every backend
        example = (torch.zeros(1, 3, 256, 256),)
        dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "height", 3: "width"}}
    else:
        side = cfg.min_size if cfg.min_size > 0 else 256  # native-resolution models: any size traces
        example = ([torch.rand(3, side, side)],)
        dynamic = {"image": {1: "height", 2: "width"}}
    names = list(DETECTION_OUTPUTS[cfg.kind])

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow are expected here
            torch.onnx.export(model, example, tmp, opset_version=OPSET, dynamo=False, input_names=["image"],
                              output_names=names, dynamic_axes=dynamic)

    atomic_write_with(out, write)
    return out
