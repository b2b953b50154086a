"""Which backend runs a model: the names a user can choose, and what ``auto`` picks.

Light on purpose (no torch, no runtimes imported): the command line lists these choices without loading
anything.
"""

from __future__ import annotations

import functools
from pathlib import Path

from cellcounter.flavour import has_torch

INT8_NAME = "model.int8.onnx"  # a model's int8 network graph, beside its weights (cellcounter quantize)
#: bumped when what an exported graph holds changes (2: a detector's network only), so cached exports are redone
EXPORT_FORMAT = 2

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
#: the fastest CPU backend per model kind at the accuracy of float torch, measured by bench/bench_inference.py
#: (docs/performance.md); int8 is taken only where the model's card accepts its int8 graph
CPU_DEFAULT = {"detector": "openvino-int8", "unet": "openvino-int8", "grader": "openvino-int8",
               "segmenter": "torch"}


def import_openvino():
    """``openvino``, imported with its telemetry off. Left alone, ``import openvino`` sends a usage event to
    Google Analytics and writes a client id under ``~/intel``; this software promises a lab's workstation that
    it sends nothing. With its telemetry package unimportable, OpenVINO uses its own no-op stub."""
    import sys

    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: that import raises ImportError
    import openvino

    return openvino


@functools.cache
def openvino_available() -> bool:
    """Whether OpenVINO is installed and its CPU plugin loads (a packaged app may carry one without the other)."""
    try:
        ov = import_openvino()

        return "CPU" in ov.Core().available_devices
    except Exception:  # noqa: BLE001 - a missing or broken install only means: use ONNX Runtime
        return False


def default_backend(card, directory: Path, device: str = "auto") -> str:
    """What ``auto`` runs: torch on a GPU (mixed precision), else the kind's measured CPU default, falling
    back to float where the model has no accepted int8 graph, to OpenVINO where torch is not installed and to
    ONNX Runtime without OpenVINO."""
    from cellcounter.inference.device import resolve_device

    if resolve_device(device).startswith("cuda"):
        return "torch"
    choice = CPU_DEFAULT.get(card.config.kind, "torch")
    if choice == "torch" and not has_torch():  # the counting build: ONNX it is
        choice = "openvino"
    if choice.endswith("-int8") and not ((directory / INT8_NAME).is_file() and accepted(card)):
        choice = choice[: -len("-int8")]
    if choice.startswith("openvino") and not openvino_available():
        choice = choice.replace("openvino", "onnx")
    return choice


def accepted(card) -> bool:
    """Whether the card records an int8 graph that scored within tolerance of the float model."""
    rec = (card.metrics or {}).get("int8") or {}
    return bool(rec.get("accepted"))
