"""Many objects in the app: time to show 10,000 and 100,000 boxes and 10,000 masks, and for one edit
to reach the counts. Run alone under a display (Xvfb): ``python bench/bench_many_objects.py``.
"""

from __future__ import annotations

import time

import numpy as np
from _common import write

from cellcounter.project.workflows import prediction_jobs


def _many_boxes(n: int):
    from cellcounter.annotations import Boxes, ImageAnnotation, Origin

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 19950, (n, 2))
    xyxy = np.hstack([xy, xy + rng.uniform(10, 40, (n, 2))])
    return ImageAnnotation("x.png", 20000, 20000, ("RBC", "WBC", "Platelets"), task="blood",
                           boxes=Boxes(xyxy, rng.integers(0, 3, n), rng.uniform(0.5, 1, n), np.full(n, Origin.MODEL)))


def _app_boxes(ann) -> dict:
    """Boxes as the app shows a prediction on a 20000 x 20000 slide: time to show, to edit, to count."""
    import os
    import tempfile
    from pathlib import Path

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from app.layers import BOXES
    from app.session import Session
    from app.window import CellCounterWindow

    tmp = Path(tempfile.mkdtemp())
    os.environ["CELLCOUNTER_PROJECTS"] = str(tmp / "projects")
    slide = tmp / "slide.tif"
    with tifffile.TiffWriter(slide, bigtiff=True) as tw:
        tw.write(np.zeros((20000, 20000, 3), np.uint8), tile=(512, 512), compression="zlib")
    ann.image_path = str(slide)
    viewer = napari.Viewer(show=True)
    session, first = Session.open_path(slide, "blood")
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
    QApplication.processEvents()
    ctl = win.controller
    t = time.perf_counter()
    ctl.predicted(prediction_jobs(ctl.session.project, [first])[0], ann, "bench@1")
    QApplication.processEvents()
    show = time.perf_counter() - t
    h, w = viewer.canvas.size
    viewer.scene.camera.zoom = max(h, w) / 1500  # about 1500 px of the slide across the screen
    viewer.scene.camera.center = (10000, 10000)
    t = time.perf_counter()
    ctl._rewindow()  # what the 300 ms debounce calls after the view settles
    QApplication.processEvents()
    zoom = time.perf_counter() - t
    shapes = viewer.layers[BOXES]
    window = len(shapes.data)
    table = win.counts.table
    t = time.perf_counter()
    shapes.selected_data = {0}
    shapes.remove_selected()  # a user deleting a box
    while table.item(table.rowCount() - 1, 2).text() != str(len(ann.boxes) - 1):
        QApplication.processEvents()
    edit = time.perf_counter() - t
    t = time.perf_counter()
    ctl.flush()  # what the debounce does 250 ms later: the edit saved to the project
    save = time.perf_counter() - t
    session.close()
    viewer.close()
    return {"show_s": show, "zoom_s": zoom, "edit_to_count_s": edit, "save_s": save, "window": window}


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from app.layers import boxes_layer_data, masks_layer_data
    from cellcounter.annotations import ImageAnnotation, InstanceMasks

    rows = [("objects", "show s", "edit->count ms")]
    res = {}
    for n in (10_000, 100_000):
        ann = _many_boxes(n)
        # baseline: every box in one napari Shapes layer
        viewer = napari.Viewer(show=True)
        t = time.perf_counter()
        data, kw, _ = boxes_layer_data(ann)
        layer = viewer.add_shapes(data, **kw)
        QApplication.processEvents()
        show = time.perf_counter() - t
        t = time.perf_counter()
        layer.selected_data = {0}
        layer.remove_selected()
        counts = np.bincount(layer.features["class"].cat.codes.to_numpy(), minlength=3)
        edit = time.perf_counter() - t
        assert counts.sum() == n - 1
        rows.append((f"{n} boxes, all in one Shapes layer", f"{show:.2f}", f"{edit * 1000:.0f}"))
        res[f"boxes_{n}_shapes"] = {"show_s": show, "edit_to_count_s": edit}
        viewer.close()
        # the app: view-only overview plus an editing window, through the window, the store and the counts
        r = _app_boxes(ann)
        rows.append((f"{n} boxes in the app (overview + editing window)", f"{r['show_s']:.2f}",
                     f"{r['edit_to_count_s'] * 1000:.0f}"))
        rows.append((f"  zoom in: editing window of {r['window']} boxes filled", f"{r['zoom_s']:.2f}", ""))
        rows.append(("  the edit saved to the project (after the 250 ms debounce)", "", f"{r['save_s'] * 1000:.0f}"))
        res[f"boxes_{n}_app"] = r
    lab = np.zeros((2000, 5000), np.int32)
    k = 0
    for y in range(10, 2000, 20):
        for x in range(10, 5000, 50):
            k += 1
            lab[y - 6:y + 6, x - 6:x + 6] = k
            if k == 10_000:
                break
        if k == 10_000:
            break
    ann = ImageAnnotation("m.png", 5000, 2000, ("nucleus",), masks=InstanceMasks(lab))
    viewer = napari.Viewer(show=True)
    t = time.perf_counter()
    data, kw, _ = masks_layer_data(ann)
    layer = viewer.add_labels(data, **kw)
    QApplication.processEvents()
    show = time.perf_counter() - t
    t = time.perf_counter()
    layer.data[layer.data == 5] = 0
    layer.refresh()
    n = len(np.unique(layer.data)) - 1
    edit = time.perf_counter() - t
    assert n == k - 1
    rows.append((f"{k} masks (Labels layer)", f"{show:.2f}", f"{edit * 1000:.0f}"))
    res["masks_10000"] = {"show_s": show, "edit_to_count_s": edit}
    viewer.close()
    write("many_objects", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
