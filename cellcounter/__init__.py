"""cellcounter core: a Qt-free library for annotations, image and label IO, models and metrics.

Nothing in this package imports Qt or napari; the GUI lives in :mod:`app`.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime's usage telemetry writes a device id and an event queue under ~/.cache/Microsoft at import and
# uploads them: off before anything imports it (a lab's machine sends nothing and keeps nothing of it).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = version("cellcounter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from cellcounter.annotations import (
    Boxes,
    Grade,
    ImageAnnotation,
    InstanceMasks,
    Origin,
    Points,
    ReviewStatus,
    flip_xy_rc,
)
from cellcounter.errors import CellCounterError, FormatError, ImageReadError
from cellcounter.tasks import TASKS, Task, get_task

__all__ = [
    "Boxes",
    "Grade",
    "ImageAnnotation",
    "InstanceMasks",
    "Origin",
    "Points",
    "ReviewStatus",
    "flip_xy_rc",
    "CellCounterError",
    "FormatError",
    "ImageReadError",
    "TASKS",
    "Task",
    "get_task",
    "__version__",
]
