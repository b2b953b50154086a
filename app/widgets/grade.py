"""The grade of a fundus photo: the model's grade, its probabilities as bars, and the user's override."""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from app.controller import LayerController
from cellcounter.annotations import Grade, Origin
from cellcounter.grading import grade_call
from cellcounter.tasks import TASKS

COMMIT_AFTER_MS = 600


class GradePanel(QWidget):
    def __init__(self, controller: LayerController) -> None:
        super().__init__()
        self.controller = controller
        names = TASKS["retinopathy"].class_names
        self.predicted = QLabel("no prediction")
        self.predicted.setWordWrap(True)
        self.referral = QLabel("")
        self.bars = []
        form = QFormLayout()
        form.addRow("Model", self.predicted)
        form.addRow("Referral", self.referral)
        for i, name in enumerate(names):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("%p%")
            self.bars.append(bar)
            form.addRow(f"{i} {name}", bar)
        self.override = QComboBox()
        self.override.addItem("(none)", -1)
        for i, name in enumerate(names):
            self.override.addItem(f"{i} {name}", i)
        form.addRow("Grade", self.override)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        self.override.activated.connect(self._set)
        controller.changed.connect(self.refresh)
        self._updating = False
        # arrow keys on the combo pass through grades one by one: the grade settled on is saved, as one step
        self._pending: int | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COMMIT_AFTER_MS)
        self._timer.timeout.connect(self.commit_pending)
        controller.before_flush.append(self.commit_pending)  # before the image switches, exports or closes

    def refresh(self, *_args) -> None:
        ann = self.controller.session.saved
        if ann is None:
            return
        self._updating = True
        try:
            g = ann.grade
            probs = g.probabilities if g is not None and g.probabilities is not None else None
            if probs is None:
                self.predicted.setText("no prediction")
                self.referral.setText("")
            else:  # how sure it is, not only the argmax: 24/17/22/17/17 is no "Grade 0"
                call = grade_call(probs)
                self.predicted.setText(call.text(TASKS["retinopathy"].class_names))
                self.predicted.setStyleSheet("" if call.sure else "color: #ff9500")
                self.referral.setText(call.referral_text())
            for i, bar in enumerate(self.bars):
                bar.setValue(0 if probs is None or i >= len(probs) else int(round(probs[i] * 1000)))
            if self._pending is None:  # a choice still settling stays shown
                self.override.setCurrentIndex(0 if g is None else g.value + 1)
        finally:
            self._updating = False

    def set_grade(self, value: int) -> None:
        ann = self.controller.current()
        if ann is None:
            return
        if value < 0:
            ann.grade = None
        elif ann.grade is None:
            ann.grade = Grade(value, origin=Origin.HUMAN)
        elif ann.grade.value != value:
            ann.grade = ann.grade.set_by_person(value)
        else:
            return
        self.controller.session.commit(ann)
        self.controller.apply(self.controller.session.saved)

    def _set(self, index: int) -> None:
        if not self._updating:
            self._pending = int(self.override.itemData(index))
            self._timer.start()

    def commit_pending(self) -> None:
        self._timer.stop()
        value, self._pending = self._pending, None
        if value is not None:
            self.set_grade(value)
