"""Many objects in the app: time to show 10,000 and 100,000 boxes and 10,000 masks, and for one edit
to reach the counts. Run alone under a display (Xvfb): ``python bench/bench_many_objects.py``.
"""

from __future__ import annotations

import time

import numpy as np

from _common import write


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from app.layers import boxes_layer_data, masks_layer_data
    from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks

    rows = [("objects", "show s", "edit->count ms")]
    res = {}
    for n in (10_000, 100_000):
        rng = np.random.default_rng(0)
        xy = rng.uniform(0, 20000, (n, 2))
        xyxy = np.hstack([xy, xy + rng.uniform(10, 40, (n, 2))])
        ann = ImageAnnotation("x.png", 20100, 20100, ("RBC", "WBC", "Platelets"),
                              boxes=Boxes(xyxy, rng.integers(0, 3, n), rng.random(n)))
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
        rows.append((f"{n} boxes (Shapes layer)", f"{show:.2f}", f"{edit * 1000:.0f}"))
        res[f"boxes_{n}"] = {"show_s": show, "edit_to_count_s": edit}
        viewer.close()
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
