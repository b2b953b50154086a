"""Live counts per class: what the model predicted, what the image holds now, and the difference."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from app.controller import LayerController
from app.layers import class_colours
from cellcounter.project.workflows import export_project


class CountsPanel(QWidget):
    def __init__(self, controller: LayerController) -> None:
        super().__init__()
        self.controller = controller
        self.title = QLabel("No image")
        self.project_wide = QCheckBox("Whole project")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["class", "model", "now", "difference"])
        self.table.verticalHeader().setVisible(False)
        export = QPushButton("Export counts CSV...")
        export.clicked.connect(self._export)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.project_wide)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(export)
        layout.addLayout(row)
        controller.changed.connect(self.refresh)
        controller.editing.connect(self._live_refresh)
        self.project_wide.toggled.connect(self.refresh)

    def rows(self) -> list[tuple[str, int, int]]:
        session = self.controller.session
        if self.project_wide.isChecked():
            return session.project_count_rows(self.controller.score_threshold or None)
        ann = self.controller.current()
        return [] if ann is None else session.count_rows(ann, self.controller.score_threshold or None)

    def refresh(self, *_args) -> None:
        session = self.controller.session
        if session.saved is not None:
            self.title.setText(Path(session.saved.image_path).name if not self.project_wide.isChecked()
                               else f"{len(session.project.images())} images")
        rows = self.rows()
        colours = class_colours(tuple(r[0] for r in rows))
        self.table.setRowCount(len(rows) + 1)
        tm = tn = 0
        for i, (name, model, now) in enumerate(rows):
            item = QTableWidgetItem(name)
            item.setForeground(QColor(colours[name]))
            self.table.setItem(i, 0, item)
            for j, v in enumerate((model, now, now - model), start=1):
                self.table.setItem(i, j, QTableWidgetItem(f"{v:+d}" if j == 3 else str(v)))
            tm, tn = tm + model, tn + now
        self.table.setItem(len(rows), 0, QTableWidgetItem("total"))
        for j, v in enumerate((tm, tn, tn - tm), start=1):
            self.table.setItem(len(rows), j, QTableWidgetItem(f"{v:+d}" if j == 3 else str(v)))

    def _live_refresh(self) -> None:
        """Counts of the current image follow an edit at once, before it is saved; project totals on save."""
        if not self.project_wide.isChecked() and not self.controller.session.project.closed:
            self.refresh()

    def _export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export counts", "counts.csv", "CSV (*.csv)")
        if path:
            self.controller.flush()
            export_project(self.controller.session.project, path, "counts-csv", "all",
                           unreviewed_min_score=self.controller.score_threshold)
