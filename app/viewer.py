"""Opening images with their labels in a napari viewer, and the live per-class counts panel."""

from __future__ import annotations

from pathlib import Path

import napari
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from app.layers import BOXES, MASKS, POINTS, annotation_from_layers, annotation_layers, class_colours
from cellcounter.annotations import ImageAnnotation
from cellcounter.formats import labels_for_image
from cellcounter.imageio import open_image
from cellcounter.tasks import TASKS

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SAMPLES = {
    "blood": RESOURCES / "samples" / "blood" / "BloodImage_00000.jpg",
}


class CountsWidget(QWidget):
    """Per-class counts of the current image, updated on every edit of boxes, masks or points."""

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.template: ImageAnnotation | None = None
        self.title = QLabel("No image")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "count"])
        self.table.verticalHeader().setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.table)

    def attach(self, template: ImageAnnotation) -> None:
        self.template = template
        self.title.setText(f"{Path(template.image_path).name} ({template.task or 'labels'})")
        for name in (BOXES, POINTS):
            if name in self.viewer.layers:
                self.viewer.layers[name].events.data.connect(self.refresh)
        if MASKS in self.viewer.layers:
            self.viewer.layers[MASKS].events.paint.connect(self.refresh)
            self.viewer.layers[MASKS].events.data.connect(self.refresh)
        self.refresh()

    def current(self) -> ImageAnnotation | None:
        if self.template is None:
            return None
        layers = self.viewer.layers
        return annotation_from_layers(
            self.template,
            shapes=layers[BOXES] if BOXES in layers else None,
            labels=layers[MASKS] if MASKS in layers else None,
            points=layers[POINTS] if POINTS in layers else None,
        )

    def counts(self) -> dict[str, int]:
        ann = self.current()
        return {} if ann is None else ann.counts()

    def refresh(self, *_args) -> None:
        counts = self.counts()
        colours = class_colours(tuple(counts))
        self.table.setRowCount(len(counts) + 1)
        for row, (name, n) in enumerate(counts.items()):
            item = QTableWidgetItem(name)
            item.setForeground(QColor(colours[name]))
            self.table.setItem(row, 0, item)
            self.table.setItem(row, 1, QTableWidgetItem(str(n)))
        self.table.setItem(len(counts), 0, QTableWidgetItem("total"))
        self.table.setItem(len(counts), 1, QTableWidgetItem(str(sum(counts.values()))))


def open_image_with_labels(viewer: napari.Viewer, path: str | Path, task: str | None = None) -> ImageAnnotation:
    """Show an image and the labels stored beside it (empty editable layers when there are none)."""
    path = Path(path)
    src = open_image(path)
    pixels = src.read()
    class_names = TASKS[task].class_names if task else None
    ann = labels_for_image(path, class_names)
    if ann is None:
        names = class_names or TASKS["blood"].class_names
        ann = ImageAnnotation(str(path), src.width, src.height, names, task=task or "blood")
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(pixels, name=path.name, rgb=pixels.ndim == 3 and pixels.shape[2] == 3)
    for data, kwargs, kind in annotation_layers(ann):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.reset_view()
    viewer.title = f"cellcounter - {path.name}"
    return ann
