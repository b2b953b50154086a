"""Building the three model kinds from their configs (torchvision underneath)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou, sigmoid_focal_loss
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from cellcounter.models.config import (
    DetectorConfig,
    GraderConfig,
    ModelConfig,
    SegmenterConfig,
    UNetConfig,
    detector_anchor_sizes,
)

_RESNETS = {"resnet18": (resnet18, 512), "resnet34": (resnet34, 512), "resnet50": (resnet50, 2048)}


def _resnet(name: str, frozen_bn: bool) -> nn.Module:
    fn, _ = _RESNETS[name]
    norm = misc_nn_ops.FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    return fn(weights=None, norm_layer=norm)


def _fpn_backbone(name: str, frozen_bn: bool, out_channels: int, returned_layers: list[int], extra) -> BackboneWithFPN:
    body = _resnet(name, frozen_bn)
    c5 = _RESNETS[name][1]
    in_channels = [c5 // 8 * 2 ** (i - 1) for i in returned_layers]  # C2..C5 widths
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    return BackboneWithFPN(body, return_layers, in_channels, out_channels, extra_blocks=extra)


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resize: normalisation and padding only.

    Resizing happens before the model (:func:`cellcounter.inference.preprocess.detection_input`
    at inference, the training transforms when training), so torch and the exported ONNX graph
    see identical pixels and the resize policy is written in the model card.
    """

    def resize(self, image, target=None):
        return image, target


def _no_resize(model, min_size: int, max_size: int, mean, std):
    model.transform = NoResizeTransform(min_size, max_size, list(mean), list(std))
    return model


class FocalClassificationHead(RetinaNetClassificationHead):
    """RetinaNet's classification head with configurable focal-loss alpha and gamma."""

    def __init__(self, in_channels, num_anchors, num_classes, prior_probability, alpha: float, gamma: float):
        super().__init__(in_channels, num_anchors, num_classes, prior_probability=prior_probability)
        self.alpha = alpha
        self.gamma = gamma

    def compute_loss(self, targets, head_outputs, matched_idxs):
        losses = []
        for tgt, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
            fg = matched >= 0
            target = torch.zeros_like(logits)
            target[fg, tgt["labels"][matched[fg]]] = 1.0
            valid = matched != self.BETWEEN_THRESHOLDS
            loss = sigmoid_focal_loss(logits[valid], target[valid], alpha=self.alpha, gamma=self.gamma,
                                      reduction="sum")
            losses.append(loss / max(1, int(fg.sum())))
        return sum(losses) / len(targets)


class IgnoringHead(RetinaNetHead):
    """RetinaNet's head whose losses skip anchors inside a target's ``ignore`` boxes (unlabelled objects).

    An anchor that matched no label but overlaps an ignore box as much as a label would need to make it
    anything but background (IoU 0.4, the matcher's lower threshold) counts neither as object nor as
    background, like the anchors between the matcher's two thresholds. Without ``ignore`` boxes it is
    torchvision's head.
    """

    IGNORE_IOU = 0.4

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        matched_idxs = [_ignoring(t.get("ignore"), a, m, self.IGNORE_IOU)
                        for t, a, m in zip(targets, anchors, matched_idxs)]
        return super().compute_loss(targets, head_outputs, anchors, matched_idxs)


def _ignoring(ignore, anchors, matched, min_iou: float):
    if ignore is None or ignore.numel() == 0:
        return matched
    overlap = box_iou(ignore.to(anchors.dtype), anchors).max(0).values
    matched = matched.clone()
    matched[(matched == Matcher.BELOW_LOW_THRESHOLD) & (overlap >= min_iou)] = Matcher.BETWEEN_THRESHOLDS
    return matched


def build_detector(cfg: DetectorConfig) -> RetinaNet:
    backbone = _fpn_backbone(cfg.backbone, cfg.frozen_bn, cfg.fpn_channels, [2, 3, 4],
                             LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels))
    sizes = detector_anchor_sizes(cfg)
    anchors = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
    n_anchors = anchors.num_anchors_per_location()[0]
    head = IgnoringHead(cfg.fpn_channels, n_anchors, cfg.num_classes)
    head.classification_head = FocalClassificationHead(cfg.fpn_channels, n_anchors, cfg.num_classes,
                                                       cfg.prior_probability, cfg.focal_alpha, cfg.focal_gamma)
    head.regression_head = RetinaNetRegressionHead(cfg.fpn_channels, n_anchors)
    model = RetinaNet(
        backbone, num_classes=cfg.num_classes, min_size=cfg.min_size, max_size=cfg.max_size,
        image_mean=list(cfg.image_mean), image_std=list(cfg.image_std), anchor_generator=anchors, head=head,
        score_thresh=cfg.score_thresh, nms_thresh=cfg.nms_thresh, detections_per_img=cfg.detections_per_img,
        topk_candidates=cfg.topk_candidates,
    )
    return _no_resize(model, cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std)


def build_segmenter(cfg: SegmenterConfig) -> MaskRCNN:
    c = cfg.fpn_channels
    backbone = _fpn_backbone(cfg.backbone, cfg.frozen_bn, c, [1, 2, 3, 4], LastLevelMaxPool())
    sizes = tuple((s,) for s in cfg.anchor_sizes)
    anchors = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
    resolution = 7
    box_head = TwoMLPHead(c * resolution**2, cfg.representation_size)
    n_out = cfg.num_classes + 1  # Mask R-CNN keeps class 0 for the background
    model = MaskRCNN(
        backbone, num_classes=None, min_size=cfg.min_size, max_size=cfg.max_size,
        image_mean=list(cfg.image_mean), image_std=list(cfg.image_std), rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_head=box_head, box_predictor=FastRCNNPredictor(cfg.representation_size, n_out),
        mask_head=MaskRCNNHeads(c, (c, c, c, c), 1), mask_predictor=MaskRCNNPredictor(c, c, n_out),
        box_score_thresh=cfg.score_thresh, box_nms_thresh=cfg.nms_thresh,
        box_detections_per_img=cfg.detections_per_img, box_batch_size_per_image=cfg.box_batch_size_per_image,
    )
    return _no_resize(model, cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std)


class Grader(nn.Module):
    """ResNet features, optional dropout, a linear layer to ``num_classes`` logits."""

    def __init__(self, cfg: GraderConfig) -> None:
        super().__init__()
        net = _RESNETS[cfg.backbone][0](weights=None)
        self.features = nn.Sequential(*list(net.children())[:-1])  # up to global average pooling
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(net.fc.in_features, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.features(x), 1)))


def build_model(cfg: ModelConfig) -> nn.Module:
    if isinstance(cfg, DetectorConfig):
        return build_detector(cfg)
    if isinstance(cfg, SegmenterConfig):
        return build_segmenter(cfg)
    if isinstance(cfg, UNetConfig):
        from cellcounter.models.unet import UNet

        return UNet(cfg)
    if isinstance(cfg, GraderConfig):
        return Grader(cfg)
    raise TypeError(f"not a model config: {cfg!r}")


__all__ = ["build_model", "build_detector", "build_segmenter", "Grader", "FocalClassificationHead", "NoResizeTransform"]
