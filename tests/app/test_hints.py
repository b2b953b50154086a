"""The hints agree with the app (#19, point 8): the status bar names the app's keys, F1 is a sheet by task."""

from __future__ import annotations

from app.layers import BOXES, POINTS


def test_the_status_bar_hint_names_the_class_keys_not_napari_tools_and_f1_groups_by_task(open_window, voc_folder):
    viewer, win, _ = open_window(voc_folder({"a": ["RBC", "WBC"]}))
    for name in (POINTS, BOXES):
        layer = viewer.layers[name]
        viewer.layers.selection.active = layer
        layer.mode = "select" if name == BOXES else "add"
        layer.mode = "pan_zoom"
        assert "1 RBC, 2 WBC, 3 Platelets" in layer.help and "for add points" not in layer.help
        assert viewer.help == layer.help
    win.show_help()
    html = win._help.text.toPlainText()
    for group in ("Every image", "Boxes and counts (blood cells)", "Masks (nuclei, leaves)", "Grades"):
        assert group in html
    assert "1 RBC, 2 WBC, 3 Platelets" in html and win._help.isVisible()
