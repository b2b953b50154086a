"""The first view shows the whole image, fitted after the window has laid out its docks (#19, point 6)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.session import Session
from app.window import CellCounterWindow


def test_the_whole_image_is_in_view_once_the_window_is_laid_out(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    Image.fromarray(np.full((480, 1600, 3), 120, np.uint8)).save(tmp_path / "wide.png")  # wider than the canvas
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    session, first = Session.open_path(tmp_path / "wide.png", "blood", user="tester")
    win = CellCounterWindow(viewer, session, "blood")  # adds the docks: the canvas narrows after this
    win.show_image(first)
    qtbot.wait(600)
    x1, y1, x2, y2 = win.controller._view_rect_xyxy()
    assert x1 <= 1 and y1 <= 1 and x2 >= 1599 and y2 >= 479, (x1, y1, x2, y2)
    viewer.camera.zoom *= 3  # the user zooms in: a late fit must not undo it
    win.show_image(first)
    zoom = viewer.camera.zoom
    viewer.camera.zoom = zoom * 2
    qtbot.wait(400)
    assert viewer.camera.zoom == zoom * 2
