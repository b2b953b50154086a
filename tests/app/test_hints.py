"""The hints agree with the app (#19, point 8): the status bar names the app's keys, F1 is a sheet by task."""

from __future__ import annotations

from app.layers import BOXES, POINTS
from app.session import Session
from app.window import CellCounterWindow
from tests.app.test_colours import _voc


def test_the_status_bar_hint_names_the_class_keys_not_napari_tools_and_f1_groups_by_task(
        make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    _voc(root, "a", ["RBC", "WBC"])
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(root, "blood", user="tester")
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
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
