"""Mask tools for dense nuclei: the brush size and an outline-only view of the instances."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QSpinBox, QWidget

from app.controller import LayerController
from app.layers import MASKS


class MaskToolsPanel(QWidget):
    def __init__(self, controller: LayerController) -> None:
        super().__init__()
        self.controller = controller
        self.brush = QSpinBox()
        self.brush.setRange(1, 200)
        self.brush.setValue(10)
        self.brush.setSuffix(" px")
        self.outlines = QCheckBox("Outlines only (see the tissue under dense nuclei)")
        keys = QLabel("Shift-N new instance, Shift-D delete, Shift-M merge, Shift-X split along a line")
        keys.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Brush size", self.brush)
        form.addRow("", self.outlines)
        form.addRow("", keys)
        self.brush.valueChanged.connect(self.apply)
        self.outlines.toggled.connect(self.apply)
        controller.image_changed.connect(self.apply)  # a new masks layer takes the same settings
        controller.changed.connect(self.apply)

    def apply(self, *_args) -> None:
        layers = self.controller.viewer.layers
        if MASKS not in layers:
            return
        layer = layers[MASKS]
        layer.brush_size = self.brush.value()
        layer.contour = 2 if self.outlines.isChecked() else 0
