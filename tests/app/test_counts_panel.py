"""Counts at a glance (#19, point 1): every class and the total without scrolling, a long file name that does
not squeeze the canvas, and a fundus photo's grade said as a grade."""

from __future__ import annotations

import numpy as np
from PIL import Image
from qtpy.QtWidgets import QLabel


def test_every_class_row_and_the_total_show_without_scrolling_and_a_long_name_is_elided(open_window, voc_folder,
                                                                                        qtbot):
    _, win, _ = open_window(voc_folder({"BloodImage_00004_" + "x" * 120: ["WBC", "RBC", "RBC"]}))
    panel = win.counts
    panel.refresh()
    qtbot.wait(50)
    table = panel.table
    assert table.rowCount() == 4  # RBC, WBC, Platelets, total
    assert table.verticalScrollBar().maximum() == 0
    shown = table.viewport().height()
    assert shown >= sum(table.rowHeight(i) for i in range(table.rowCount()))
    assert panel.summary.text() == "3 counted: RBC 2, WBC 1, Platelets 0"
    shown_name = QLabel.text(panel.title)  # what is drawn; the label's text() is the whole name
    assert panel.title.toolTip().startswith("BloodImage_00004_") and "\u2026" in shown_name
    assert shown_name.startswith("BloodImage") and not shown_name.endswith("\u2026")  # elided in the middle
    assert panel.minimumSizeHint().width() < 400  # the name no longer sets the dock's width


def test_a_fundus_photo_shows_its_grade_not_a_table_of_grade_names(open_window, tmp_path):
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(tmp_path / "fundus.jpg")
    _, win, _ = open_window(tmp_path / "fundus.jpg", "retinopathy")
    win.counts.refresh()
    assert win.counts.summary.text() == "Not graded yet" and not win.counts.table.isVisible()
    win.grade.set_grade(3)
    win.counts.refresh()
    assert win.counts.summary.text() == "Grade 3: Severe NPDR"
