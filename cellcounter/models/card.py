"""Saving and loading models: weights plus a JSON model card, never code.

A model directory holds ``card.json`` and ``model.pt`` (a plain state dict,
optionally stored in float16). Loading uses ``torch.load(weights_only=True)``,
so a file carrying pickled code is refused instead of run.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellcounter.calibration import check_calibration, thresholds_by_index
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.fileutil import atomic_open, atomic_write_text, not_regular_reason
from cellcounter.models.config import ModelConfig, config_from_dict

if TYPE_CHECKING:  # the card is read without torch (the counting build has none); the weights need it
    import torch
    from torch import nn

CARD_NAME, WEIGHTS_NAME, ONNX_NAME = "card.json", "model.pt", "model.onnx"
MAX_CARD_BYTES = 32 * 1024 * 1024  # the bundled cards, training lists included, are under 100 kB
FORMAT_VERSION = 1
RESOURCES_MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"


@dataclass
class ModelCard:
    """What a model is, what it expects and how it was made."""

    name: str
    task: str
    class_names: list[str]
    architecture: dict[str, Any]
    version: str = "1"
    parent: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    pretrained: str = "none"
    notes: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    weights_dtype: str = "float32"
    # per class, the score that counts best on validation images; the predictor maps it to 0.5
    score_calibration: dict[str, float] = field(default_factory=dict)
    # keys a person or another tool wrote that this version does not know (a licence, an intended use):
    # kept as they are when a command rewrites the card
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def config(self) -> ModelConfig:
        return config_from_dict(self.architecture)

    def to_json(self) -> str:
        known = asdict(self)
        extra = known.pop("extra")
        out = {"format": "cellcounter-model", "format_version": FORMAT_VERSION, **known}
        out.update({k: v for k, v in extra.items() if k not in out})
        return json.dumps(out, indent=2) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> ModelCard:
        why = not_regular_reason(path)
        if why:
            raise FormatError(path, why)
        try:
            if path.stat().st_size > MAX_CARD_BYTES:
                raise FormatError(path, f"a model card of {path.stat().st_size:,} bytes: far larger than any card "
                                        f"({MAX_CARD_BYTES:,} at most)")
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(path, f"unreadable model card ({exc})") from None
        except RecursionError:
            raise FormatError(path, "unreadable model card (JSON nested too deeply)") from None
        if not isinstance(d, dict) or d.get("format") != "cellcounter-model":
            raise FormatError(path, "not a cellcounter model card")
        if not isinstance(d.get("format_version", 0), int) or isinstance(d.get("format_version"), bool):
            raise FormatError(path, f"'format_version' must be a whole number, got {d.get('format_version')!r}")
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise FormatError(path, "model card from a newer cellcounter; update to use this model")
        d.pop("format", None)
        d.pop("format_version", None)
        known = set(cls.__dataclass_fields__) - {"extra"}
        try:
            card = cls(**{k: v for k, v in d.items() if k in known},
                       extra={k: v for k, v in d.items() if k not in known})
            _check_fields(card)
            cfg = card.config  # validates the architecture
        except (TypeError, CellCounterError) as exc:
            raise FormatError(path, f"invalid model card: {exc}") from None
        if len(card.class_names) != getattr(cfg, "num_classes", len(card.class_names)):
            raise FormatError(path, f"invalid model card: {len(card.class_names)} class_names for "
                                    f"architecture.num_classes {cfg.num_classes}")
        return card


def _check_fields(card: ModelCard) -> None:
    """The card's own fields have the types they must (a string of class names would become its letters)."""
    for name in ("name", "task", "version", "pretrained", "notes", "weights_dtype"):
        if not isinstance(getattr(card, name), str):
            raise CellCounterError(f"{name} must be text, got {getattr(card, name)!r}")
    for name in ("name", "version"):  # names appear in file names, menus and exports: one plain line
        text = getattr(card, name)
        if not text or len(text) > 200 or any(c in text for c in "/\\\0\n\r") or text in (".", "..") \
                or text.startswith("-"):
            raise CellCounterError(f"{name} must be a short plain name (no slashes, line breaks or '..'), "
                                   f"got {text[:80]!r}")
    if (not isinstance(card.class_names, list) or not card.class_names
            or not all(isinstance(c, str) and c for c in card.class_names)):
        raise CellCounterError(f"class_names must be a list of names, got {card.class_names!r}")
    for name in ("architecture", "preprocessing", "training", "metrics"):
        if not isinstance(getattr(card, name), dict):
            raise CellCounterError(f"{name} must be an object, got {type(getattr(card, name)).__name__}")
    if card.parent is not None and not isinstance(card.parent, str):
        raise CellCounterError(f"parent must be text, got {card.parent!r}")
    check_calibration(card.score_calibration)
    thresholds_by_index(card.score_calibration, card.class_names)


def default_preprocessing(cfg: ModelConfig) -> dict[str, Any]:
    pre: dict[str, Any] = {"input": "RGB float in [0, 1]", "mean": list(cfg.image_mean), "std": list(cfg.image_std)}
    if cfg.kind == "grader":
        pre["resize"] = (("crop to the fundus (its bright part), then " if cfg.fundus_crop else "")
                         + f"shorter side to {cfg.input_size}, then centre crop {cfg.input_size} x {cfg.input_size}")
        if cfg.local_contrast > 0:
            pre["contrast"] = (f"local average colour subtracted (Gaussian sigma {cfg.local_contrast:g} x "
                               f"{cfg.input_size} px): 4 * (x - blur) + 0.5, surround mid-grey")
    elif cfg.kind == "unet":
        pre["resize"] = (f"none: the model sees native pixels, padded by reflection to a multiple of {2 ** cfg.depth}; "
                         "instances by a watershed of its foreground and distance maps")
    elif cfg.min_size <= 0:
        pre["resize"] = "none: the model sees native pixels"
    else:
        pre["resize"] = (f"before the model, bilinear: shorter side to {cfg.min_size} unless the longer side "
                         f"would pass {cfg.max_size}; outputs scaled back to the image")
    return pre


def save_model(model: nn.Module, card: ModelCard, directory: str | Path, half: bool = False) -> Path:
    """Write ``card.json`` and ``model.pt`` into ``directory`` (each atomically)."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    card.weights_dtype = "float16" if half else "float32"
    if not card.preprocessing:
        card.preprocessing = default_preprocessing(card.config)
    with atomic_open(directory / WEIGHTS_NAME, "wb") as fh:
        torch.save(state, fh)
    atomic_write_text(directory / CARD_NAME, card.to_json())
    return directory


def user_models_dir() -> Path:
    base = os.environ.get("CELLCOUNTER_MODELS")
    if base:
        return Path(base)
    from platformdirs import user_data_dir

    return Path(user_data_dir("cellcounter", appauthor=False)) / "models"


def resolve_model(path_or_name: str | Path) -> Path:
    """A model directory from a path (directory, ``card.json`` or ``model.pt``) or a bundled/installed name."""
    p = Path(path_or_name)
    if p.is_file():
        if p.name not in (CARD_NAME, WEIGHTS_NAME, ONNX_NAME):  # the folder's own files are used, never another
            raise CellCounterError(f"{p}: a model is a folder holding {CARD_NAME} and {WEIGHTS_NAME}; give the "
                                   "folder, not another file in it")
        p = p.parent
    if (p / CARD_NAME).is_file():
        return p
    for root in (RESOURCES_MODELS, user_models_dir()):
        cand = root / str(path_or_name)
        if (cand / CARD_NAME).is_file():
            return cand
    raise CellCounterError(
        f"model {str(path_or_name)!r} not found: give a model folder (with card.json and model.pt) or the name "
        f"of a bundled model in {RESOURCES_MODELS} or an installed one in {user_models_dir()}")


_CARDS: dict[tuple[str, int], ModelCard] = {}


def read_card(model: str | Path) -> ModelCard:
    """The card of a model (folder or name), read once while the file is unchanged: a training run asks for
    its start model's card at several stages (recipe, geometry, base check, calibration). A copy each time,
    so that a caller may change it."""
    path = resolve_model(model) / CARD_NAME
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _CARDS:
        if len(_CARDS) > 32:
            _CARDS.clear()
        _CARDS[key] = ModelCard.from_file(path)
    return copy.deepcopy(_CARDS[key])


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict without running code from the file."""
    import torch

    why = not_regular_reason(path)
    if why:
        raise FormatError(path, why)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise FormatError(path, f"cannot read the weights ({exc.strerror})") from None
    if not head:
        raise FormatError(path, "empty file: it holds no weights")
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise FormatError(path, "not a PyTorch weights file (damaged, or another kind of file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FormatError(path, "refused: the file holds code or objects other than weights "
                                f"(loading it could run that code) [{str(exc).splitlines()[0][:200]}]") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as exc:
        raise FormatError(path, f"not a readable weights file ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FormatError(path, "not a state dict of tensors")
    return state


def load_model(path_or_name: str | Path) -> tuple[nn.Module, ModelCard]:
    """Build the model its card describes and load its weights (float32, eval mode, on the CPU)."""
    from cellcounter.flavour import needs_torch

    needs_torch(f"{path_or_name}: loading a model's weights needs torch")
    from cellcounter.models.build import build_model

    directory = resolve_model(path_or_name)
    card = ModelCard.from_file(directory / CARD_NAME)
    model = build_model(card.config)
    state = load_weights(directory / WEIGHTS_NAME)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FormatError(directory / WEIGHTS_NAME, f"weights do not fit the card's architecture "
                                                    f"({_state_dict_mismatch(str(exc))})") from None
    return model.eval(), card


def _state_dict_mismatch(message: str) -> str:
    """The first concrete difference from torch's load_state_dict message (its first line says nothing)."""
    lines = [ln.strip() for ln in message.splitlines()[1:] if ln.strip()]
    return (lines[0][:300] if lines else message.splitlines()[0]).rstrip(".")

