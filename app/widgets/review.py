"""The review queue: status of the current image, previous/next, filter and order; score threshold."""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from app.controller import LayerController
from cellcounter.annotations import ReviewStatus

FILTERS = {"all": None, "unreviewed": "unreviewed", "in progress": "in_progress", "reviewed": "reviewed"}
ORDERS = {"as added": "added", "least confident first": "least-confident"}


class ReviewPanel(QWidget):
    def __init__(self, controller: LayerController) -> None:
        super().__init__()
        self.controller = controller
        self.status = QLabel("-")
        self.position = QLabel("")
        self.filter = QComboBox()
        self.filter.addItems(list(FILTERS))
        self.order = QComboBox()
        self.order.addItems(list(ORDERS))
        prev_b, next_b = QPushButton("< Previous (PgUp)"), QPushButton("Next (PgDn) >")
        prev_b.clicked.connect(lambda: self.go(-1))
        next_b.clicked.connect(lambda: self.go(1))
        buttons = QHBoxLayout()
        for status, label in ((ReviewStatus.UNREVIEWED, "Unreviewed"), (ReviewStatus.IN_PROGRESS, "In progress"),
                              (ReviewStatus.REVIEWED, "Reviewed (Shift-R)")):
            b = QPushButton(label)
            b.clicked.connect(lambda _=False, s=status: self.set_status(s))
            buttons.addWidget(b)
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(0, 100)
        self.threshold.setValue(int(round(controller.score_threshold * 100)))
        self.threshold_label = QLabel(f"score >= {controller.score_threshold:.2f}")
        accept, drop = QPushButton("Accept shown"), QPushButton("Drop hidden")
        accept.clicked.connect(controller.accept_shown)
        drop.clicked.connect(controller.drop_hidden)
        form = QFormLayout()
        form.addRow("Status", self.status)
        form.addRow("Show", self.filter)
        form.addRow("Order", self.order)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        nav = QHBoxLayout()
        nav.addWidget(prev_b)
        nav.addWidget(self.position)
        nav.addWidget(next_b)
        layout.addLayout(nav)
        layout.addWidget(QLabel("Model predictions shown"))
        layout.addWidget(self.threshold)
        layout.addWidget(self.threshold_label)
        row = QHBoxLayout()
        row.addWidget(accept)
        row.addWidget(drop)
        layout.addLayout(row)
        self.threshold.valueChanged.connect(self._threshold)
        controller.changed.connect(self.refresh)

    def _threshold(self, value: int) -> None:
        self.threshold_label.setText(f"score >= {value / 100:.2f}")
        self.controller.set_threshold(value / 100)

    def go(self, step: int) -> None:
        self.controller.flush()
        target = self.controller.session.neighbour(step, FILTERS[self.filter.currentText()],
                                                   ORDERS[self.order.currentText()], self.controller.score_threshold)
        if target is not None and target != self.controller.session.current_id:
            self.controller.show(target)

    def set_status(self, status: ReviewStatus) -> None:
        dropped = self.controller.set_review(status)
        if dropped:
            show_info(f"Reviewed: {dropped} hidden model object(s) below score {self.controller.score_threshold:.2f}"
                      " left out of the labels (Ctrl-Z brings them back)")
        self.refresh()

    def refresh(self, *_args) -> None:
        s = self.controller.session
        if s.saved is None:
            return
        self.status.setText(s.saved.review.value.replace("_", " "))
        ids = s.queue(FILTERS[self.filter.currentText()], ORDERS[self.order.currentText()],
                      self.controller.score_threshold)
        pos = ids.index(s.current_id) + 1 if s.current_id in ids else 0
        self.position.setText(f"{pos} / {len(ids)}")
