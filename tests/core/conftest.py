"""Tiny randomly initialised models saved as model folders (no downloads; built by :mod:`tests.helpers`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import TINY, make_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {kind: make_tiny_model(kind, root / kind) for kind in TINY}


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    img = (rng.random((200, 240, 3)) * 60 + 150).astype(np.uint8)
    for y, x in [(40, 50), (120, 160), (150, 60)]:
        img[y - 15:y + 15, x - 15:x + 15] = (120, 40, 140)
    return img


@pytest.fixture
def detector_copy(tiny_models, tmp_path):
    """A copy of the tiny detector whose card a test may edit."""
    import shutil

    dst = tmp_path / "m"
    shutil.copytree(tiny_models["detector"], dst)
    return dst

