"""Bad model cards and files are refused with a message naming the file and the field (#18, cases 7 and 13)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cellcounter.cli import main
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.models import load_model
from cellcounter.models.card import resolve_model
from tests.helpers import tiny
from training import iter_training


@pytest.fixture
def model(detector_copy):
    return detector_copy


def _edit(model, change):
    card = json.loads((model / "card.json").read_text())
    change(card)
    (model / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize("change, says", [
    (lambda c: c["architecture"].update(backbone="resnet999"), "architecture.backbone must be one of resnet18"),
    (lambda c: c["architecture"].update(min_size="big"), "architecture.min_size must be a whole number"),
    (lambda c: c["architecture"].update(fpn_channels=-3), "architecture.fpn_channels must be between"),
    (lambda c: c["architecture"].update(frozen_bn="yes"), "architecture.frozen_bn must be true or false"),
    (lambda c: c["architecture"].update(anchor_sizes=[1.5, 3]), "architecture.anchor_sizes must be whole"),
    (lambda c: c["architecture"].update(prior_probability=float("nan")), "prior_probability must be a number"),
    (lambda c: c["architecture"].update(image_std=[0.2, 0.2]), "image_std must hold 3 numbers"),
    (lambda c: c.update(class_names="RBC"), "class_names must be a list of names"),
    (lambda c: c.update(class_names=["RBC", "WBC"]), "2 class_names for architecture.num_classes 3"),
    (lambda c: c.update(name=["x"]), "name must be text"),
    # each setting within its range, together a network that would fill the memory before its weights are read
    (lambda c: c["architecture"].update(fpn_channels=4096, head_convs=16), "million weights"),
    (lambda c: c["architecture"].update(min_size=65536), "architecture.min_size must be between 0 and 8192"),
    (lambda c: c["architecture"].update(tile_size=16), "architecture.tile_size must be between 64"),
])
def test_a_card_that_says_nonsense_is_refused_naming_the_field(model, tmp_path, capsys, change, says):
    _edit(model, change)
    with pytest.raises(FormatError, match="invalid model card") as info:
        load_model(model)
    assert says in str(info.value) and "card.json" in str(info.value)
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--task", "blood", "--model", str(model),
                 "--out", str(tmp_path / "out")]) == 2
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, says", [(b"", "empty file"),
                                            (np.random.default_rng(0).bytes(5000), "not a PyTorch weights file")])
def test_empty_or_random_weights_are_named_as_such_not_as_code(model, content, says):
    (model / "model.pt").write_bytes(content)
    with pytest.raises(FormatError, match=says):
        load_model(model)


def test_weights_of_another_architecture_say_which_tensor_differs(model):
    _edit(model, lambda c: c["architecture"].update(fpn_channels=32))
    with pytest.raises(FormatError, match="do not fit the card's architecture .size mismatch for backbone"):
        load_model(model)


def test_another_file_beside_the_model_is_not_silently_swapped_for_model_pt(model):
    shutil.copy(model / "model.pt", model / "evil.pt")
    with pytest.raises(CellCounterError, match="evil.pt: a model is a folder"):
        resolve_model(model / "evil.pt")
    assert resolve_model(model / "model.pt") == model


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_resuming_from_a_checkpoint_carrying_code_is_a_clear_refusal(tmp_path, capsys):
    cfg = tiny("blood", tmp_path, max_steps=1, resume=True)
    ckpt = tmp_path / "blood" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {}, "step": 0, "best": 0.0, "history": "[]", "evals": "[]", "x": _Evil()}, ckpt)
    with pytest.raises(CellCounterError, match="last.pt: refused: the checkpoint holds code"):
        list(iter_training(cfg))
    assert "pwned" not in capsys.readouterr().out
    torch.save([1, 2], ckpt)
    with pytest.raises(CellCounterError, match="not a cellcounter training checkpoint"):
        list(iter_training(cfg))


@pytest.mark.parametrize("field,value", [("name", "../../trap/escape"), ("name", "/tmp/abs"), ("version", "1/../../x"),
                                         ("version", ".."), ("name", "a\nb")])
def test_card_text_never_becomes_a_path(detector_copy, tmp_path, monkeypatch, field, value):
    """#32 point 2: a card whose name or version holds a path is refused at load, naming the field; the export
    cache's file names come from the weights' hash, never from card text."""
    import json

    from cellcounter.inference import Predictor

    card_path = detector_copy / "card.json"
    card = json.loads(card_path.read_text())
    card[field] = value
    card_path.write_text(json.dumps(card))
    monkeypatch.setenv("CELLCOUNTER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CellCounterError, match=field):
        Predictor.load(str(detector_copy), "onnx")
    assert not any(p.suffix == ".onnx" for p in tmp_path.rglob("*") if "cache" not in p.parts)


def test_the_onnx_cache_is_named_by_hash_inside_the_cache(detector_copy, tmp_path, monkeypatch):
    from cellcounter.inference.predictor import onnx_cache_path
    from cellcounter.models.card import ModelCard

    monkeypatch.setenv("CELLCOUNTER_CACHE", str(tmp_path / "cache"))
    card = ModelCard.from_file(detector_copy / "card.json")
    path = onnx_cache_path(detector_copy, card)
    assert path.parent == tmp_path / "cache" / "onnx" and card.name not in path.name


@pytest.mark.parametrize("kind, arch, says", [
    ("segmenter", {"representation_size": 65536}, "million weights"),
    ("unet", {"width": 512, "depth": 7}, "million weights"),
    ("grader", {"input_size": 65536}, "architecture.input_size must be between 16 and 4096"),
])
def test_cards_of_other_kinds_describing_a_network_too_large_are_refused_before_it_is_built(kind, arch, says):
    from cellcounter.models.config import _KINDS, config_from_dict, config_to_dict

    d = {**config_to_dict(_KINDS[kind]()), **arch}
    with pytest.raises(CellCounterError, match=says):
        config_from_dict(d)
    config_from_dict(config_to_dict(_KINDS[kind]()))  # the defaults pass


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_foreign_onnx_graph_beside_a_card_is_refused_naming_what_it_lacks(model, tmp_path, capsys, backend):
    """#32 point 4: an ONNX file without the detector's outputs ended in ``KeyError: 'cls_logits'``."""
    foreign = torch.nn.Conv2d(3, 2, 1)
    torch.onnx.export(foreign, torch.zeros(1, 3, 32, 32), str(model / "model.onnx"), input_names=["image"],
                      output_names=["foo"], dynamo=False)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--task", "blood", "--model", str(model), "--backend", backend,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.onnx: not a detector graph of this app: it lacks the output(s) cls_logits, bbox_regression" in err
    assert "Traceback" not in err
