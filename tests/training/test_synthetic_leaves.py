"""The synthetic rosette generator is deterministic and its colour masks import to the generated leaves."""

from __future__ import annotations

import numpy as np

from cellcounter.formats import read_labels
from training.synthetic_leaves import make_rosette, write_rosettes


def test_colour_mask_importer_yields_the_generated_number_of_leaves(tmp_path):
    write_rosettes(tmp_path, 6, seed=10, size=128)
    anns = read_labels(tmp_path)  # recognised as colour masks without being told
    assert len(anns) == 6
    for i, ann in enumerate(anns):
        img, lab = make_rosette(10 + i, 128)
        assert len(ann.masks) == lab.max() >= 3
        assert ann.masks.equals(type(ann.masks)(lab))
        assert ann.task == "leaves"


def test_rosettes_are_deterministic_and_varied():
    a1, l1 = make_rosette(5, 96)
    a2, l2 = make_rosette(5, 96)
    b, lb = make_rosette(6, 96)
    assert np.array_equal(a1, a2) and np.array_equal(l1, l2)
    assert not np.array_equal(a1, b)
    counts = {int(make_rosette(s, 96)[1].max()) for s in range(12)}
    assert len(counts) >= 4  # leaf counts vary between rosettes


def test_the_written_validation_set_is_the_one_training_validates_on(tmp_path):
    """``python -m training.synthetic_leaves OUT --validation`` gives `cellcounter evaluate` training's val set."""
    from training import TrainConfig
    from training.data import load_split
    from training.synthetic_leaves import main

    assert main([str(tmp_path), "--validation", "--count", "3", "--size", "96"]) == 0
    on_disk = read_labels(tmp_path)
    split = load_split(TrainConfig(task="leaves", data="synthetic", synthetic_val=3, synthetic_size=96,
                                   synthetic_train=1))
    for ann, loader in zip(on_disk, split.val):
        img, expected = loader()
        assert ann.masks.equals(expected.masks)


def test_leaves_default_reproduces_its_synthetic_validation_figures(tmp_path, capsys):
    """No real data needed: training's fixed validation rosettes are regenerated and scored."""
    import json

    import pytest

    from cellcounter.cli import main
    from cellcounter.models.card import RESOURCES_MODELS
    from training.synthetic_leaves import main as write_validation

    card = json.loads((RESOURCES_MODELS / "leaves-default" / "card.json").read_text())
    val = card["metrics"]["synthetic_validation"]
    assert write_validation([str(tmp_path / "val"), "--validation", "--count", str(val["images"])]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--task", "leaves", "--model", "leaves-default", "--data", str(tmp_path / "val"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == val["images"] == 50
    for key in ("mask_ap50", "mask_ap", "aji"):
        assert res[key] == pytest.approx(val[key], abs=2e-3)
