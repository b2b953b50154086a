"""Which device a model runs on: ``auto`` (a CUDA GPU where torch can use one, else the CPU), ``cpu`` or ``cuda``.

Asked of the NVIDIA driver first: importing torch to find out costs seconds, and on a machine without a GPU
(most counting stations, and the counting build, which has no torch) the answer is always the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from cellcounter.errors import CellCounterError
from cellcounter.flavour import has_torch


@functools.cache
def _driver_sees_a_gpu() -> bool:
    """Whether an NVIDIA driver is installed and reports a CUDA device, asked of the driver itself."""
    names = {"win32": ("nvcuda.dll",), "darwin": ()}.get(sys.platform, ("libcuda.so.1", "libcuda.so"))
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def cuda_available() -> bool:
    """Whether torch can run on a CUDA GPU here (False without a GPU, without torch, or with a broken driver)."""
    if not _driver_sees_a_gpu() or not has_torch():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install must not stop CPU inference
        return False


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise CellCounterError("--device cuda asked for, but no usable CUDA GPU was found; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise CellCounterError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device
