"""Where a grader looked: Grad-CAM (Selvaraju et al., 2017) on the last convolutional stage.

The heat map is returned at the image's own size; it covers the centre crop the
grader sees and is zero outside it.
"""

from __future__ import annotations

import numpy as np
import torch

from cellcounter.inference.heatmap import place_heat
from cellcounter.inference.preprocess import grader_view, view_input
from cellcounter.models.build import Grader
from cellcounter.models.config import GraderConfig


def cam_lowres(model: Grader, x: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM at the last stage's resolution, scaled to ``[0, 1]``, and the class it explains.

    ``target`` defaults to the predicted class. ``x`` is the normalised ``(1, 3, S, S)`` grader input.
    """
    stage = model.features[-2]  # the last ResNet stage; features[-1] is the global average pooling
    saved: dict[str, torch.Tensor] = {}

    def keep(_module, _inp, out):
        out.retain_grad()
        saved["a"] = out

    handle = stage.register_forward_hook(keep)
    try:
        with torch.enable_grad(), torch.inference_mode(False):
            was_training = model.training
            model.eval()
            logits = model(x.detach().clone().requires_grad_(True))  # a graph even over frozen weights
            k = int(logits[0].argmax()) if target is None else int(target)
            model.zero_grad(set_to_none=True)
            logits[0, k].backward()
            model.train(was_training)
    finally:
        handle.remove()
    a, g = saved["a"].detach()[0], saved["a"].grad.detach()[0]  # (C, h, w)
    weights = g.mean(dim=(1, 2))  # one weight per channel: the gradient pooled over the map
    cam = torch.relu((weights[:, None, None] * a).sum(0)).numpy().astype(np.float32)
    top = float(cam.max())
    return (cam / top if top > 0 else cam), k


def grad_cam(model: Grader, cfg: GraderConfig, image: np.ndarray, target: int | None = None
             ) -> tuple[np.ndarray, int]:
    """``(heat map (H, W) float32 in [0, 1], explained grade)`` for one image of any size."""
    device = next(model.parameters()).device
    view, box = grader_view(image, cfg)
    x = torch.from_numpy(view_input(view, cfg)).to(device)
    cam, k = cam_lowres(model, x, target)
    return place_heat(cam, image.shape[:2], box, cfg), k
