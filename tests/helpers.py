"""Helpers several test modules share: small images, slides, models and training configurations (fixtures
live in the conftest files; these are plain functions and stand-ins)."""

from __future__ import annotations

import numpy as np
import tifffile
import torch
from scipy import ndimage

from cellcounter.inference import Predictor
from cellcounter.models import DetectorConfig, GraderConfig, ModelCard, SegmenterConfig, build_model, save_model
from cellcounter.models.config import UNetConfig, config_to_dict
from tests.conftest import data_dir
from training import TrainConfig, apply_recipe

TINY = {
    # a 0.5 prior makes a random head fire, so there are detections to compare
    "detector": (DetectorConfig(min_size=192, max_size=256, prior_probability=0.5, score_thresh=0.3,
                                detections_per_img=40, fpn_channels=64), "blood", ["RBC", "WBC", "Platelets"]),
    "segmenter": (SegmenterConfig(backbone="resnet18", min_size=0, max_size=0, representation_size=64,
                                  score_thresh=0.0, detections_per_img=30, rpn_post_nms_top_n_test=300,
                                  rpn_pre_nms_top_n_test=300), "nuclei", ["nucleus"]),
    "unet": (UNetConfig(width=4, depth=2), "nuclei", ["nucleus"]),
    "grader": (GraderConfig(input_size=96), "retinopathy", ["No DR", "Mild", "Moderate", "Severe NPDR",
                                                            "Proliferative DR"]),
}


def make_tiny_model(kind: str, directory, seed: int = 0, task: str | None = None, class_names=None):
    torch.manual_seed(seed)
    cfg, default_task, default_names = TINY[kind]
    task, names = task or default_task, list(class_names or default_names)
    model = build_model(cfg)
    if kind == "detector":
        # an untrained head scores every anchor about the same, and ties make any two backends pick
        # different boxes; spread the scores as a trained model would
        torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.05)
    card = ModelCard(f"tiny-{task}", task, names, config_to_dict(cfg))
    save_model(model, card, directory)
    return directory


def write_svs(path, h=1500, w=2000, img=None, mpp=0.25):
    """An Aperio SVS of ``img`` (or of 40 stained squares on glass) with a 4x lower level."""
    if img is None:
        rng = np.random.default_rng(0)
        img = np.full((h, w, 3), 235, np.uint8)
        for _ in range(40):
            y, x = rng.integers(20, h - 40), rng.integers(20, w - 40)
            img[y:y + 24, x:x + 24] = (140, 60, 150)
    h, w = img.shape[:2]
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", metadata=None,
                 description=f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (256x256) RAW|AppMag = 40|"
                             f"MPP = {mpp}")
        tw.write(np.ascontiguousarray(img[::4, ::4]), tile=(256, 256), photometric="rgb", metadata=None)
    return img


def squares(h=1500, w=2000):
    """White 20 px squares every 100 px on black, and their centres (x, y)."""
    img = np.zeros((h, w, 3), np.uint8)
    centres = []
    for y in range(60, h - 40, 100):
        for x in range(60, w - 40, 100):
            img[y - 10:y + 10, x - 10:x + 10] = 255
            centres.append((x, y))
    return img, np.array(centres, float)


QUIET = dict(checkpoint_every=0, warmup_iters=2, num_workers=0)


def tiny(task: str, tmp_path, **kw) -> TrainConfig:
    base = {
        "blood": dict(data=str(data_dir("bccd")), train_ids="train", val_ids="val", min_size=96, max_size=128,
                      fpn_channels=32, limit_images=4, batch_size=2),
        "nuclei": dict(data=str(data_dir("dsb2018-stained") / "stage1_train"), random_crop=96, multiscale=(96,),
                       limit_images=3, batch_size=1, val_split=0.03, representation_size=32,
                       detections_per_img=30),
        "leaves": dict(data="synthetic", synthetic_train=3, synthetic_val=2, synthetic_size=96,
                       representation_size=32, batch_size=1, detections_per_img=30),
        "retinopathy": dict(data=str(data_dir("idrid")), input_size=64, limit_images=6, batch_size=3,
                            val_split=0.05),
    }[task]
    cfg = TrainConfig(task=task, out=str(tmp_path / task), **{"epochs": 1, **base, **QUIET, **kw})
    return apply_recipe(cfg, explicit=set(base) | set(QUIET) | set(kw) | {"task", "out", "epochs"})


def disc_folder(folder, n: int, size: int = 96, seed: int = 0, prefix: str = "d"):
    """Bright discs on a dark ground, some touching, written as images with label TIFFs."""
    from PIL import Image

    from cellcounter.annotations import ImageAnnotation, InstanceMasks
    from cellcounter.formats import write_labels

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        lab = np.zeros((size, size), np.int32)
        k = 0
        for _ in range(40):
            cy, cx, r = rng.integers(10, size - 10), rng.integers(10, size - 10), rng.integers(6, 10)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if (lab[disc] > 0).mean() < 0.15:  # touching or slightly overlapping, never hidden
                k += 1
                lab[disc & (lab == 0)] = k
        img = np.where(lab[..., None] > 0, [190, 70, 160], [235, 225, 235]).astype(np.uint8)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{prefix}{i}.png")
        ann = ImageAnnotation(image_path=str(folder / f"{prefix}{i}.png"), width=size, height=size, task="nuclei",
                              class_names=["nucleus"], masks=InstanceMasks(lab))
        write_labels([ann], folder, "label-tiff")
    return folder


COLOURS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)]


def coloured(h, w, boxes, labels):
    """An image whose only coloured pixels are inside its boxes, each painted the colour of its label."""
    img = torch.full((3, h, w), 0.5)
    for lab, (x1, y1, x2, y2) in zip(labels, boxes):
        img[:, y1:y2, x1:x2] = torch.tensor(COLOURS[lab % 4])[:, None, None]
    return img


def box_colour_ok(img, boxes, labels, min_frac=0.9):
    for (x1, y1, x2, y2), lab in zip(boxes.round().int().tolist(), labels.tolist()):
        patch = img[:, y1:y2, x1:x2].reshape(3, -1)
        target = torch.tensor(COLOURS[lab % 4])[:, None]
        frac = ((patch - target).abs().max(0).values < 0.2).float().mean()
        if frac < min_frac:
            return False
    return True


class BlobBackend:
    """A stand-in for a trained network that finds bright squares in whatever tile it is shown.

    Objects cut by the tile edge are reported cut, as a real detector would, so the
    tiler's job of keeping only whole objects once is really exercised.
    """

    name = "blobs"
    takes_network_input = False  # whole-graph outputs: boxes, labels, scores (and masks)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls = 0
        self.description = "blobs"

    def run(self, chw: np.ndarray) -> dict:
        self.calls += 1
        if self.kind == "unet":  # the maps a trained U-Net gives: foreground, each blob's distance to its edge
            fg = chw[0, 0] > 0.5
            lab, n = ndimage.label(fg)
            dist = ndimage.distance_transform_edt(np.pad(fg, 1))[1:-1, 1:-1]
            top = ndimage.maximum(dist, lab, np.arange(n + 1)) if n else np.zeros(1)
            norm = dist / np.maximum(np.asarray(top)[lab], 1)
            return {"maps": np.stack([fg, norm])[None].astype(np.float32)}
        lab, n = ndimage.label(chw[0] > 0.5)
        boxes, masks = [], []
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
            masks.append((lab == k)[None].astype(np.float32))
        out = {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.full(n, 0.9, np.float32),
               "labels": np.full(n, 1 if self.kind == "segmenter" else 0, np.int64)}
        if self.kind == "segmenter":
            out["masks"] = np.array(masks).reshape(n, 1, *chw.shape[1:])
        return out


def blob_predictor(kind: str) -> Predictor:
    cfg = {"detector": DetectorConfig(min_size=0), "segmenter": SegmenterConfig(min_size=0),  # native pixels
           "unet": UNetConfig()}[kind]
    card = ModelCard("blobs", "blood" if kind == "detector" else "nuclei",
                     ["RBC", "WBC", "Platelets"] if kind == "detector" else ["nucleus"], config_to_dict(cfg))
    return Predictor(card, BlobBackend(kind))
