"""Three ways to run a model: torch (CUDA with mixed precision when present), ONNX Runtime and OpenVINO.

All take the same preprocessed array and return the same named arrays, so the
predictor above them does not care which one runs. The two ONNX runtimes run
the exported graph, float or int8 (:mod:`cellcounter.inference.quantize`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cellcounter.errors import CellCounterError
from cellcounter.inference.choice import INT8_NAME
from cellcounter.inference.device import resolve_device

if TYPE_CHECKING:
    from torch import nn

    from cellcounter.models.card import ModelCard

log = logging.getLogger(__name__)
# f32 as written: left to itself OpenVINO may compute in bf16 where the CPU has it, and drift from torch
OPENVINO_CPU = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
DETECTION_OUTPUTS = {"detector": ("cls_logits", "bbox_regression"), "segmenter": ("boxes", "labels", "scores", "masks"),
                     "unet": ("maps",), "grader": ("logits",)}


def check_outputs(onnx_path: str | Path, kind: str, names: list[str], takes_network_input: bool) -> None:
    """Refuse, naming the file, an ONNX graph without the outputs a model of ``kind`` gives (a hand-made or
    foreign ``model.onnx``): it would fail at its first image with a bare ``KeyError``."""
    want = DETECTION_OUTPUTS.get(kind, ())
    if kind == "detector" and not takes_network_input:
        want = ("boxes", "scores", "labels")  # exported whole, as older files were
    missing = [n for n in want if n not in names]
    if missing:
        raise CellCounterError(f"{onnx_path}: not a {kind} graph of this app: it lacks the output(s) "
                               f"{', '.join(missing)} (it has {', '.join(names) or 'none'})")


def _precision(onnx_path: str | Path) -> str:
    return "int8" if Path(onnx_path).name == INT8_NAME else "float32"


class Backend(Protocol):
    """What the predictor asks of every backend: a preprocessed batch in, the kind's named arrays out."""

    name: str  # torch, onnx or openvino
    kind: str  # the model's kind (detector, segmenter, unet, grader)
    takes_network_input: bool  # a detector's network alone (post-processing after it), not a whole graph

    @property
    def description(self) -> str: ...

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchBackend:
    name = "torch"

    def __init__(self, model: nn.Module, card: ModelCard, device: str = "auto", amp: bool = True) -> None:
        import torch

        self._torch = torch
        self.kind = card.config.kind
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.amp = amp and self.device.startswith("cuda")
        # a detector runs its network only, as every backend does; the predictor post-processes
        self.network = None
        if self.kind == "detector":
            from cellcounter.inference.detector_net import DetectorNetwork

            self.network = DetectorNetwork(self.model).eval()
        self.takes_network_input = self.network is not None

    @property
    def description(self) -> str:
        return f"torch on {self.device}" + (" (mixed precision)" if self.amp else "")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        t = torch.from_numpy(x).to(self.device)
        ctx = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            if self.kind == "grader":
                return {"logits": self.model(t).float().cpu().numpy()}
            if self.kind == "unet":
                return {"maps": self.model(t).float().cpu().numpy()}
            if self.network is not None:
                logits, deltas = self.network(t)
                return {"cls_logits": logits.float().cpu().numpy(), "bbox_regression": deltas.float().cpu().numpy()}
            out = self.model([t])[0]
        return {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in out.items()}


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: str | Path, card: ModelCard, device: str = "auto",
                 providers: Sequence[str] | None = None) -> None:
        """``providers``: ONNX Runtime's execution providers in order of preference (default: CUDA where
        ``device`` resolves to a GPU and ONNX Runtime has it, then the CPU)."""
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # keep CUDA/TensorRT probing messages off the user's console
        self.kind = card.config.kind
        if providers is None:
            want_cuda = resolve_device(device).startswith("cuda")
            providers = ["CPUExecutionProvider"]
            if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        providers = list(providers)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - reported with what failed
            raise CellCounterError(f"{onnx_path}: cannot load the ONNX model ({exc})") from None
        self.provider = self.session.get_providers()[0]
        self.precision = _precision(onnx_path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        # a detector exported as its network takes a padded batch; one exported whole (older files) one image
        self.takes_network_input = self.kind == "detector" and len(self.session.get_inputs()[0].shape) == 4
        check_outputs(onnx_path, self.kind, self.output_names, self.takes_network_input)

    @property
    def description(self) -> str:
        return f"onnxruntime with {self.provider}" + (", int8" if self.precision == "int8" else "")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, outs))


class OpenVinoBackend:
    """OpenVINO on the CPU, over the same ONNX graph (float or int8 QDQ) as :class:`OnnxBackend`."""

    name = "openvino"

    def __init__(self, onnx_path: str | Path, card: ModelCard, device: str = "auto") -> None:
        from cellcounter.inference.choice import import_openvino

        try:
            ov = import_openvino()
        except ImportError:
            raise CellCounterError("the OpenVINO backend needs the openvino package (pip install openvino), "
                                   "or choose --backend onnx") from None
        import threading

        self.kind = card.config.kind
        core = ov.Core()
        try:
            model = core.read_model(str(onnx_path))
            self.compiled = core.compile_model(model, "CPU", OPENVINO_CPU)
        except Exception as exc:  # noqa: BLE001 - reported with what failed
            raise CellCounterError(f"{onnx_path}: OpenVINO cannot compile the model ({exc})") from None
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one request: one inference at a time
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        rank = model.inputs[0].get_partial_shape().rank.get_length()
        self.takes_network_input = self.kind == "detector" and rank == 4
        check_outputs(onnx_path, self.kind, self.output_names, self.takes_network_input)
        self.cpu = core.get_property("CPU", "FULL_DEVICE_NAME")
        self.precision = _precision(onnx_path)
        self._ov, self._core, self._path, self._cam = ov, core, onnx_path, None

    def class_activation(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A grader's ``(logits, last feature map, classifier weights)`` for ``x``: what its heat map is made
        of (:mod:`cellcounter.inference.heatmap`), from this graph, without torch."""
        if self.kind != "grader":
            raise CellCounterError("heat maps exist for graders only")
        from cellcounter.inference.heatmap import class_activation

        with self._lock:
            if self._cam is None:  # a second compiled copy, kept apart from the one that predicts
                model = self._core.read_model(str(self._path))
                weights = class_activation(self._ov, self._core, model)
                compiled = self._core.compile_model(model, "CPU", OPENVINO_CPU)
                self._cam = (compiled.create_infer_request(), compiled, weights)
            request, compiled, weights = self._cam
            res = request.infer({0: np.ascontiguousarray(x)})
            logits, features = (np.array(res[out]) for out in compiled.outputs[:2])
            return logits, features, weights

    @property
    def description(self) -> str:
        return f"OpenVINO on {self.cpu}" + (", int8" if self.precision == "int8" else "")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            res = self.request.infer({0: np.ascontiguousarray(x)})
            return {name: np.array(res[out]) for name, out in zip(self.output_names, self.compiled.outputs)}
