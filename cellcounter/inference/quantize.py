"""int8 versions of a model's network: static QDQ quantisation with ONNX Runtime, calibrated on real images.

The network graph (:mod:`cellcounter.inference.export`: no post-processing inside) is quantised with
per-channel int8 weights and uint8 activations whose ranges are measured on calibration images fed exactly
as the predictor feeds them (same resize, tiles, padding: the inputs are recorded from a predictor run). The
result, ``model.int8.onnx`` beside the weights, runs on ONNX Runtime and on OpenVINO; it is used by default
only when its card records that it scored within :data:`TOLERANCE` of the float model on validation images.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.errors import CellCounterError
from cellcounter.evaluate import key_metric
from cellcounter.fileutil import atomic_write_with

#: how far an int8 model may fall below float on its key score and still be chosen by default
TOLERANCE = {"map50": 0.01, "aji": 0.01, "qwk": 0.02}
#: the kinds whose network is exported alone (a Mask R-CNN graph holds its post-processing), by key score
KEY_SCORE = {kind: key_metric(kind) for kind in ("detector", "unet", "grader")}


class _Recorder:
    """A backend that runs another and keeps a copy of each input it is given."""

    def __init__(self, backend, limit: int) -> None:
        self.backend, self.limit, self.inputs = backend, limit, []
        self.name, self.kind, self.description = backend.name, backend.kind, backend.description
        self.takes_network_input = backend.takes_network_input

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if len(self.inputs) < self.limit:
            self.inputs.append(np.array(x, copy=True))
        return self.backend.run(x)


def calibration_inputs(predictor, images: Sequence[np.ndarray], limit: int = 64) -> list[np.ndarray]:
    """The network inputs ``predictor`` makes of ``images`` (tiles included), at most ``limit`` of them."""
    from cellcounter.inference.run import predict_image

    recorder = _Recorder(predictor.backend, limit)
    with predictor.using(recorder):
        for image in images:
            predict_image(predictor, image, "calibration")
            if len(recorder.inputs) >= limit:
                break
    if not recorder.inputs:
        raise CellCounterError("no calibration inputs: give at least one image")
    return recorder.inputs


def quantize_onnx(fp32: str | Path, out: str | Path, inputs: Sequence[np.ndarray]) -> Path:
    """Write the static int8 (QDQ, per-channel weights) quantisation of ``fp32`` to ``out``, atomically."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {name: x}

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            pre = Path(d) / "pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})

    atomic_write_with(Path(out), write)
    return Path(out)


#: how much higher the int8 graph's count error (per image, all classes) may be than the float one's: a mAP
#: within tolerance can hide a box that flips a count (a Platelets box at 0.52 on the WBC of the blood sample)
COUNT_TOLERANCE = 0.1


def judge(kind: str, fp32: dict, int8: dict) -> dict:
    """The card's record of an int8 graph: both key scores, the drop, both count errors where there are counts,
    and whether it is within tolerance on both."""
    key = KEY_SCORE[kind]
    a, b = fp32.get(key), int8.get(key)
    if not isinstance(a, float) or not isinstance(b, float):
        raise CellCounterError(f"no {key} to compare float and int8 on")
    verdict = {"score": key, "fp32": round(a, 4), "int8": round(b, 4), "drop": round(a - b, 4),
               "tolerance": TOLERANCE[key], "accepted": a - b <= TOLERANCE[key]}
    from cellcounter.evaluate import total_count_error

    ca, cb = total_count_error(fp32), total_count_error(int8)
    if ca is not None and cb is not None:
        verdict.update(count_error={"fp32": round(ca, 4), "int8": round(cb, 4)}, count_tolerance=COUNT_TOLERANCE)
        verdict["accepted"] = verdict["accepted"] and cb - ca <= COUNT_TOLERANCE
    return verdict
