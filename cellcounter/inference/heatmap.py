"""Where a grader looked, without autograd: the class activation map (Zhou et al., 2016) from its graph.

For a head that is global average pooling and one linear layer (every grader here), Grad-CAM of a class
(:mod:`cellcounter.inference.gradcam`, torch) equals its class activation map: the gradient of the class's
logit with respect to the last feature map is that class's row of the linear layer, spread evenly over
the map. OpenVINO gives both from the model's own graph, float or int8: the feature map as a second output,
the layer's weights by evaluating their (dequantising) constant subgraph. The counting build, which has no
torch, shows the heat map this way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cellcounter.errors import CellCounterError
from cellcounter.inference.preprocess import grader_crop_xyxy, grader_view, view_input


def class_activation(ov, core, model) -> np.ndarray:
    """The classifier weights ``(classes, C)`` of an OpenVINO grader ``model`` (read, not compiled), which gets
    its last feature map added as a second output (in place)."""
    ops = model.get_ordered_ops()
    pools = [op for op in ops if op.get_type_name() in ("ReduceMean", "AvgPool")]
    heads = [op for op in ops if op.get_type_name() == "MatMul"]
    if not pools or not heads:
        raise CellCounterError("the grader's graph has no global pooling followed by a linear layer to map")
    features = pools[-1].input(0).get_source_output()
    head = heads[-1]
    weights_out = head.input(1).get_source_output()
    constant = core.compile_model(ov.Model([weights_out], []), "CPU")  # constants only: no input to give
    weights = np.array(next(iter(constant.create_infer_request().infer({}).values())), np.float32)
    if not head.get_attributes().get("transpose_b"):
        weights = weights.T
    model.add_outputs([features])
    return weights


def cam_from_features(features: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """``relu(sum_c w_kc A_c)`` over a ``(C, h, w)`` feature map, scaled to ``[0, 1]``."""
    cam = np.maximum(np.tensordot(weights[k], features, axes=(0, 0)), 0).astype(np.float32)
    top = float(cam.max())
    return cam / top if top > 0 else cam


def place_heat(cam: np.ndarray, image_shape: tuple[int, int], box, cfg) -> np.ndarray:
    """A low-resolution map of the grader's centre crop, as an ``(H, W)`` float32 heat map of the whole image
    (zero outside the crop)."""
    h, w = image_shape
    x1, y1, x2, y2 = grader_crop_xyxy(box, cfg)
    c0, r0 = int(round(x1)), int(round(y1))
    cw, ch = max(1, int(round(x2)) - c0), max(1, int(round(y2)) - r0)
    up = np.asarray(Image.fromarray(cam).resize((cw, ch), Image.BILINEAR), dtype=np.float32)
    heat = np.zeros((h, w), np.float32)
    rr, cc = min(ch, h - r0), min(cw, w - c0)
    heat[r0:r0 + rr, c0:c0 + cc] = up[:rr, :cc]
    return np.clip(heat, 0.0, 1.0)


def class_activation_heat(backend, cfg, image: np.ndarray, target: int | None = None) -> tuple[np.ndarray, int]:
    """``(heat map (H, W) in [0, 1], explained grade)`` from a backend with ``class_activation`` (OpenVINO)."""
    view, box = grader_view(image, cfg)
    logits, features, weights = backend.class_activation(view_input(view, cfg))
    k = int(np.argmax(logits[0])) if target is None else int(target)
    return place_heat(cam_from_features(features[0], weights, k), image.shape[:2], box, cfg), k
