"""Shared fixtures: where the real data lives, and small synthetic annotations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks, Origin, Points

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CELLCOUNTER_DATA", REPO.parent / "shared" / "data"))


def data_dir(name: str) -> Path:
    """A folder of the real data, or skip the test with the reason."""
    p = DATA / name
    if not p.is_dir():
        pytest.skip(f"real data not available: {p} is absent (set CELLCOUNTER_DATA to its folder)")
    return p


@pytest.fixture
def bccd() -> Path:
    return data_dir("bccd")


@pytest.fixture
def dsb() -> Path:
    return data_dir("dsb2018-stained")


@pytest.fixture
def monuseg() -> Path:
    return data_dir("monuseg")


@pytest.fixture
def idrid() -> Path:
    return data_dir("idrid")


def make_image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def sample_annotation(folder: Path, name: str = "img", seed: int = 0, with_masks: bool = True) -> ImageAnnotation:
    """An image on disk with boxes (some scored), masks, points and a grade."""
    image = make_image(folder / f"{name}.png", 64, 48, seed)
    rng = np.random.default_rng(seed)
    lab = np.zeros((48, 64), dtype=np.int32)
    lab[5:15, 5:20] = 3
    lab[20:30, 30:50] = 7
    lab[40:46, 2:9] = 9
    masks = InstanceMasks(lab, [3, 7, 9], [0, 1, 0], [0.9, np.nan, 0.5],
                          [Origin.MODEL, Origin.HUMAN, Origin.CORRECTED]) if with_masks else None
    return ImageAnnotation(
        image_path=str(image),
        width=64,
        height=48,
        class_names=("RBC", "WBC", "Platelets"),
        boxes=Boxes(
            np.array([[1, 2, 10.5, 12], [20, 20, 40, 30], [0, 0, 64, 48]]) + rng.random() * 0,
            [0, 2, 1],
            [0.75, np.nan, 0.125],
            [Origin.MODEL, Origin.HUMAN, Origin.CORRECTED],
        ),
        masks=masks,
        points=Points(np.array([[3.0, 4.5], [10, 20]]), [1, 2], [Origin.HUMAN, Origin.MODEL]),
        grade=Grade(2, np.array([0.1, 0.2, 0.5, 0.1, 0.1]), Origin.MODEL),
    )


@pytest.fixture(autouse=True, scope="session")
def _private_user_folders(tmp_path_factory):
    """Tests never write to the real user's cache, projects or models folders."""
    base = tmp_path_factory.mktemp("user")
    old = {k: os.environ.get(k) for k in ("CELLCOUNTER_CACHE", "CELLCOUNTER_PROJECTS", "CELLCOUNTER_MODELS")}
    os.environ["CELLCOUNTER_CACHE"] = str(base / "cache")
    os.environ["CELLCOUNTER_PROJECTS"] = str(base / "projects")
    os.environ["CELLCOUNTER_MODELS"] = str(base / "models")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
