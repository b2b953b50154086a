"""A vendor slide opens in the app at its own pyramid levels, read region by region (#21, part 1)."""

from __future__ import annotations

from app.session import Session
from app.window import CellCounterWindow
from tests.helpers import write_svs


def test_an_svs_opens_as_a_multiscale_image(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    write_svs(tmp_path / "s.svs")
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(tmp_path / "s.svs", "nuclei", user="tester")
    win = CellCounterWindow(viewer, session, "nuclei")
    win.show_image(first)
    qtbot.wait(300)
    layer = viewer.layers[win.controller.image_layer_name]
    assert layer.multiscale and [tuple(d.shape) for d in layer.data] == [(1500, 2000, 3), (375, 500, 3)]
    assert session.project.load(first).pixel_size_um == 0.25
