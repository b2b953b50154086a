"""The app under Xvfb: time to first overlay, Run-to-masks on a 1000 x 1000 tile with 600 instances, and
the longest event-loop stall while a prediction and a training run go on.

Run alone under a display: ``xvfb-run -a python bench/bench_ui.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, model_or_tiny, write

from cellcounter.project.workflows import prediction_jobs


def longest_stall(win, load: int) -> tuple[float, int]:
    """Longest gap between ticks of a 10 ms timer while a prediction and a 4-step fine-tune run, with ``load``
    processes spinning on the CPU meanwhile."""
    import subprocess
    import sys

    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from app.widgets.train import prepare_run

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        gaps, last = [], [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        cfg, anns, ids = prepare_run(win.controller, "blood", "blood-detector", 1, None)
        cfg.min_size, cfg.max_size, cfg.batch_size, cfg.max_steps, cfg.checkpoint_every = 320, 427, 2, 4, 0
        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(10)
        win.predict.start(False)
        win.train.start(cfg, anns, ids)
        while win.predict.worker is not None or win.train.worker is not None:
            QApplication.processEvents()
            time.sleep(0.001)
        timer.stop()
    finally:
        for p in busy:
            p.kill()
    worst = int(np.argmax(gaps[3:])) + 3
    print(f"load {load}: stall at tick", worst, "of", len(gaps), "gaps around:",
          [round(g * 1000) for g in gaps[max(0, worst - 3):worst + 3]])
    return max(gaps[3:]) * 1000, len(gaps)


def main() -> int:
    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from app.session import Session
    from app.window import CellCounterWindow
    from cellcounter.annotations import ImageAnnotation, InstanceMasks

    tmp = Path(tempfile.mkdtemp())
    os.environ["CELLCOUNTER_PROJECTS"] = str(tmp / "projects")
    rows = [("what", "value")]
    res = {}
    blood_model = model_or_tiny("blood-default", "detector", tmp)

    # 1. start the app; open a BCCD image; Run with the default model until its boxes are drawn
    sample = ROOT / "resources" / "samples" / "blood" / "BloodImage_00000.jpg"
    t = time.perf_counter()
    viewer = napari.Viewer(show=True)
    session, first = Session.open_path(sample, "blood", with_labels=False)
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
    QApplication.processEvents()
    t_start = time.perf_counter() - t
    idx = win.predict.model.findData(str(blood_model))
    if idx < 0:
        win.predict.model.addItem("bench", str(blood_model))
        idx = win.predict.model.count() - 1
    win.predict.model.setCurrentIndex(idx)
    win.predict.backend.setCurrentText("onnx")

    def run_until_boxes() -> float:
        t0 = time.perf_counter()
        win.predict.start(False)
        while win.predict.worker is not None:
            QApplication.processEvents()
            time.sleep(0.002)
        assert len(win.viewer.layers["boxes"].data) > 0
        return time.perf_counter() - t0

    t_first_run = run_until_boxes()  # loads the model (and exports it to ONNX on a fresh cache)
    bccd = Path(os.environ.get("CELLCOUNTER_BENCH_BCCD", ROOT.parent / "shared" / "data" / "bccd"))
    second = bccd / "JPEGImages" / "BloodImage_00001.jpg"
    if not second.is_file():
        second = tmp / "second.jpg"
        Image.open(sample).transpose(Image.FLIP_LEFT_RIGHT).save(second)
    t = time.perf_counter()
    win.open_path(second, "blood", with_labels=False)
    QApplication.processEvents()
    t_open = time.perf_counter() - t
    t_run = run_until_boxes()
    rows += [("start the app on an image (viewer, window, image shown)", f"{t_start:.2f} s"),
             ("first Run: model load + predict + boxes shown", f"{t_first_run:.2f} s"),
             ("open another image in the running app", f"{t_open:.2f} s"),
             ("Run again: predict + boxes shown (model kept loaded)", f"{t_run:.2f} s"),
             ("first overlay: open + Run (model loaded)", f"{t_open + t_run:.2f} s")]
    res.update(start_s=t_start, first_run_s=t_first_run, open_s=t_open, run_s=t_run,
               first_overlay_s=t_open + t_run)
    session = win.session
    first = session.current_id

    # 2. a 1000 x 1000 tile with 600 predicted instances: from result to masks shown
    lab = np.zeros((1000, 1000), np.int32)
    k = 0
    for y in range(20, 1000, 40):
        for x in range(20, 1000, 40):
            if k < 600:
                k += 1
                lab[y - 14:y + 14, x - 14:x + 14] = k
    tile = tmp / "tile.png"
    Image.fromarray(np.zeros((1000, 1000, 3), np.uint8)).save(tile)
    tile_id = session.import_image(tile)
    win.show_image(tile_id)
    masks = ImageAnnotation(str(tile), 1000, 1000, ("nucleus",), task="nuclei",
                            masks=InstanceMasks(lab, scores=np.full(600, 0.9), origins=np.zeros(600, np.uint8)))
    t = time.perf_counter()
    win.controller.predicted(prediction_jobs(win.session.project, [tile_id])[0], masks, "synthetic@1")
    QApplication.processEvents()
    t_masks = time.perf_counter() - t
    rows.append(("600 instances: result to masks shown", f"{t_masks:.2f} s"))
    res["result_to_masks_s"] = t_masks

    # 3. the longest stall of a 10 ms timer while a prediction and a training run go on, on an idle machine
    #    and with two other CPU-heavy processes (a busy workstation)
    win.show_image(first)
    session.project.set_review(first, "reviewed")
    extra = tmp / "second.jpg"
    Image.open(sample).save(extra)
    session.project.set_review(session.import_image(extra), "reviewed")
    for load in (0, 2):
        stall, n = longest_stall(win, load)
        rows.append((f"longest event-loop stall (prediction + training), {load} other busy processes",
                     f"{stall:.0f} ms over {n} ticks"))
        res[f"stall_ms_load{load}"] = stall
    session.close()
    viewer.close()
    write("ui", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
