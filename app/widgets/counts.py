"""Live counts per class: what the model predicted, what the image holds now, and the difference."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from app.controller import LayerController
from app.layers import class_colours
from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, Origin
from cellcounter.grading import grade_call
from cellcounter.project.workflows import export_project
from cellcounter.regions import region_counts
from cellcounter.tasks import TASKS, get_task


def _fitted_table(headers: list[str]) -> QTableWidget:
    """A table without row numbers or a scroll bar, as high as its rows (see ``CountsPanel._fit_table``)."""
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    t.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
    return t


class CountsPanel(QWidget):
    def __init__(self, controller: LayerController) -> None:
        super().__init__()
        self.controller = controller
        # a long file name is elided in its middle (full name in the tooltip) instead of widening the dock
        self.title = QElidingLabel("No image")
        self.title.setElideMode(Qt.ElideMiddle)
        self.summary = QLabel("")  # the total and each class, in one line where the eye is
        self.summary.setWordWrap(True)
        font = self.summary.font()
        font.setBold(True)
        self.summary.setFont(font)
        self.selected = QLabel("")  # class, origin and score of the selected box
        self.selected.setWordWrap(True)
        self.project_wide = QCheckBox("Whole project")
        self.table = _fitted_table(["class", "model", "now", "difference"])
        # counts inside each drawn or imported region, with its area and density when the pixel size is known
        self.regions_table = _fitted_table(["region", "objects", "area", "per mm\u00b2"])
        self.regions_table.setVisible(False)
        export = QPushButton("Export counts CSV...")
        export.clicked.connect(self._export)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addWidget(self.project_wide)
        layout.addWidget(self.table)
        layout.addWidget(self.regions_table)
        layout.addWidget(self.selected)
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
            name = (Path(session.saved.image_path).name if not self.project_wide.isChecked()
                    else f"{len(session.project.images())} images")
            self.title.setText(name)
            self.title.setToolTip(name)
        saved = session.saved
        if (saved is not None and not self.project_wide.isChecked() and saved.task in TASKS
                and TASKS[saved.task].kind == "grade"):
            self._show_grade(self.controller.current())  # the labels as edited (the layers), only for a grade
            self.regions_table.setVisible(False)
            return
        self.table.setVisible(True)
        rows = self.rows()
        total = sum(r[2] for r in rows)
        spans = self._ranges()
        self.summary.setText(f"{total} counted: " + ", ".join(f"{r[0]} {r[2]}{spans.get(r[0], '')}" for r in rows)
                             if rows else "")
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
        self._fit_table(self.table)
        self._show_regions(None if self.project_wide.isChecked() else self.controller.current())

    def _ranges(self) -> dict[str, str]:
        """" (21-26)" per class whose count moves when the threshold moves by 0.1 either way: how much the count
        rests on objects the model was unsure of. Nothing for a class that does not move, or the whole project."""
        ann = None if self.project_wide.isChecked() else self.controller.current()
        if ann is None:
            return {}
        spans = ann.count_range(self.controller.score_threshold or DEFAULT_SCORE_THRESHOLD)
        return {name: f" ({lo}-{hi})" for name, (lo, hi) in spans.items() if lo != hi}

    def region_rows(self) -> list[tuple[str, int, str, str]]:
        """``(region, objects, area, density)`` as the table shows them, for the image on screen."""
        ann = None if self.project_wide.isChecked() else self.controller.current()
        if ann is None:
            return []
        out = []
        for rc in region_counts(ann, self.controller.score_threshold or None):
            area = f"{rc.area_mm2:.3g} mm\u00b2" if rc.area_mm2 else f"{rc.area_px:.0f} px"
            density = f"{rc.total / rc.area_mm2:.1f}" if rc.area_mm2 else "no pixel size"
            out.append((rc.region, rc.total, area, density))
        return out

    def _show_regions(self, ann) -> None:
        rows = self.region_rows() if ann is not None else []
        per_class = region_counts(ann, self.controller.score_threshold or None) if rows else []
        self.regions_table.setVisible(bool(rows))
        self.regions_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                item = QTableWidgetItem(str(v))
                # each class's count and density, for the region under the pointer
                dens = per_class[i].densities_per_mm2 or {}
                item.setToolTip("\n".join(f"{k}: {n}" + (f" ({dens[k]:.1f} per mm\u00b2)" if k in dens else "")
                                          for k, n in per_class[i].counts.items()))
                self.regions_table.setItem(i, j, item)
        if rows:
            self._fit_table(self.regions_table)

    def _fit_table(self, t: QTableWidget) -> None:
        """As high as its rows: every class and the total show without scrolling."""
        t.resizeRowsToContents()
        height = t.horizontalHeader().height() + sum(t.rowHeight(i) for i in range(t.rowCount()))
        t.setFixedHeight(height + 2 * t.frameWidth())

    def _show_grade(self, ann) -> None:
        """A fundus photo has a grade, not objects: say it as a grade, with the model's where it differs."""
        self.table.setVisible(False)
        names = get_task(ann.task).class_names
        if ann.grade is None:
            self.summary.setText("Not graded yet")
            return
        g = ann.grade
        if g.origin == Origin.MODEL and g.probabilities is not None:  # the model's own: as sure as it is
            call = grade_call(g.probabilities)
            text = call.text(names) if not call.sure else f"Grade {g.value}: {names[g.value]}"
        else:
            text = f"Grade {g.value}: {names[g.value]}"
        model = self.controller.session.model_grade()
        if model is not None and model != g.value:
            text += f" (the model said {model}: {names[model]})"
        self.summary.setText(text[:1].upper() + text[1:])

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
