import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Every test here is a ``gui`` test (``-m "not gui"`` leaves them out), skipped without a display."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    skip = pytest.mark.skip(reason="GUI tests need a display: run them with `make test` (uses xvfb-run)")
    for item in items:
        if "tests/app" in str(item.fspath):
            item.add_marker(pytest.mark.gui)
            if not display:
                item.add_marker(skip)


@pytest.fixture
def open_window(make_napari_viewer, tmp_path, monkeypatch):
    """``open_window(path, task)``: the app's window on an image, folder or project (projects kept under
    tmp_path), showing the first image; returns ``(viewer, window, first image id)``."""
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))

    def _open(path, task="blood"):
        from app.session import Session
        from app.window import CellCounterWindow

        viewer = make_napari_viewer(show=True)
        session, first = Session.open_path(path, task, user="tester")
        win = CellCounterWindow(viewer, session, task or "blood")
        win.show_image(first)
        return viewer, win, first

    return _open


@pytest.fixture
def voc_folder(tmp_path):
    """``voc_folder({name: [class, ...]})``: a VOC folder whose images hold boxes of those classes, in order."""
    import numpy as np
    from PIL import Image

    obj = ("<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>10</ymin><xmax>{}</xmax><ymax>40</ymax></bndbox>"
           "</object>")

    def _make(images: dict, root=None):
        root = root or tmp_path / "voc"
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages").mkdir(exist_ok=True)
        for k, (name, classes) in enumerate(images.items()):
            objs = "".join(obj.format(c, 10 + 40 * i, 40 + 40 * i) for i, c in enumerate(classes))
            (root / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><filename>{name}.jpg</filename><size><width>200</width><height>60</height>"
                f"<depth>3</depth></size>{objs}</annotation>")
            # each image its own pixels: identical files are one image to a project
            Image.fromarray(np.full((60, 200, 3), 200 - k, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        return root

    return _make
