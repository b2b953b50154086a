"""The tasks the product knows, declared once.

Every other module (formats, models, GUI, training) takes class names from
here, so ``blood`` always means RBC, WBC, Platelets in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cellcounter.errors import CellCounterError

TaskKind = Literal["boxes", "masks", "grade"]


@dataclass(frozen=True)
class Task:
    """A prediction task: what is predicted and with which class names."""

    name: str
    kind: TaskKind
    class_names: tuple[str, ...]
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("blood", "boxes", ("RBC", "WBC", "Platelets"), "Blood-smear cell detection and counting"),
        Task("nuclei", "masks", ("nucleus",), "Nuclei instance segmentation"),
        Task("leaves", "masks", ("leaf",), "Leaf instance segmentation of plant rosettes"),
        Task(
            "retinopathy",
            "grade",
            ("No DR", "Mild", "Moderate", "Severe NPDR", "Proliferative DR"),
            "Diabetic-retinopathy grade 0-4 of fundus photographs",
        ),
    )
}


#: Class colours, by the class's place in its task (RBC red, WBC blue, Platelets yellow): the app's layers, the
#: counts table, the legend and exports that carry colour (QuPath GeoJSON) all take them from here.
PALETTE = ("#ff3b30", "#007aff", "#ffcc00", "#34c759", "#af52de", "#ff9500", "#5ac8fa", "#ff2d55")


def class_colours(class_names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """A fixed colour per class (hex), by its index."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(class_names)}


def get_task(name: str) -> Task:
    """Return the task called ``name`` or raise a error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise CellCounterError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
