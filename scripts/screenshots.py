"""Screenshots of the app for the docs: blood, nuclei and fundus screens with the bundled models' predictions.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py``);
writes ``docs/images/screen-{blood,nuclei,fundus}.png``. The fundus photo comes from IDRiD in ``../shared/data``
(CC-BY 4.0); without it that screen is skipped.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from app.session import Session
    from app.window import SAMPLES, CellCounterWindow
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.project.workflows import prediction_jobs

    os.environ["CELLCOUNTER_PROJECTS"] = tempfile.mkdtemp(prefix="cellcounter-shots-")
    data = Path(os.environ.get("CELLCOUNTER_DATA", ROOT.parent / "shared" / "data"))
    fundus = sorted((data / "idrid" / "1. Original Images" / "b. Testing Set").glob("*.jpg"))
    screens = [("blood", SAMPLES["blood"], "blood-default"), ("nuclei", SAMPLES["nuclei"], "nuclei-default")]
    if fundus:
        screens.append(("fundus", fundus[0], "retinopathy-default"))
    out = ROOT / "docs" / "images"
    for name, image_path, model in screens:
        task = "retinopathy" if name == "fundus" else name
        viewer = napari.Viewer(title="cellcounter", show=True)
        viewer.window._qt_window.resize(1600, 1000)
        session, first = Session.open_path(image_path, task, with_labels=False)
        win = CellCounterWindow(viewer, session, task)
        win.show_image(first)
        predictor = Predictor.load(model)
        image = read_image(image_path)
        ann = predict_image(predictor, image, str(image_path))
        (job,) = prediction_jobs(session.project, [first])
        win.controller.predicted(job, ann, predictor.model_version)
        if name == "fundus":
            win.controller.show_heatmap(first, predictor.explain(image, ann.grade.value)[0])
        win.counts.refresh()
        for _ in range(30):  # let the window lay out and the late fit happen
            QApplication.processEvents()
            time.sleep(0.02)
        shot = out / f"screen-{name}.png"
        viewer.screenshot(str(shot), canvas_only=False)
        print(f"wrote {shot}")
        session.close()
        viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
