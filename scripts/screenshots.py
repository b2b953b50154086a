"""Screenshots of the app for the docs: blood, nuclei and fundus screens with the bundled models' predictions.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py``);
writes ``docs/images/screen-{blood,nuclei,fundus,slide-region}.png``. The fundus photo comes from IDRiD in
``../shared/data`` (CC-BY 4.0); without it that screen is skipped. The slide is an Aperio SVS pyramid made
from the bundled blood sample (3 x 3 copies, 0.25 um per pixel), opened through OpenSlide, with a polygon
region predicted and counted on its own. ``--only NAME`` makes one screen.
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
    screens.append(("slide-region", _blood_slide(Path(os.environ["CELLCOUNTER_PROJECTS"])), "blood-default"))
    if "--only" in sys.argv:
        screens = [s for s in screens if s[0] == sys.argv[sys.argv.index("--only") + 1]]
    out = ROOT / "docs" / "images"
    for name, image_path, model in screens:
        task = {"fundus": "retinopathy", "slide-region": "blood"}.get(name, name)
        viewer = napari.Viewer(title="cellcounter", show=True)
        viewer.window._qt_window.resize(1600, 1000)
        session, first = Session.open_path(image_path, task, with_labels=False)
        win = CellCounterWindow(viewer, session, task)
        win.show_image(first)
        predictor = Predictor.load(model)
        image = read_image(image_path)
        if name == "slide-region":  # a region drawn round part of the smear: predicted and counted alone
            from cellcounter.regions import Region

            ann = session.project.load(first)
            ann.regions = [Region("region 1", [[250, 200], [1300, 150], [1450, 900], [700, 1250], [200, 800]])]
            session.project.save(first, ann)
            win.show_image(first)
        (job,) = prediction_jobs(session.project, [first])
        ann = predict_image(predictor, image, str(image_path), regions=list(job.regions))
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


def _blood_slide(folder: Path) -> Path:
    """An Aperio SVS (two pyramid levels) tiled from 3 x 3 copies of the blood sample."""
    import numpy as np
    import tifffile

    from app.window import SAMPLES
    from cellcounter.imageio import read_image

    tile = read_image(SAMPLES["blood"])[:, :, :3]
    img = np.ascontiguousarray(np.tile(tile, (3, 3, 1)))
    h, w = img.shape[:2]
    path = folder / "smear.svs"
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", metadata=None,
                 description=f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (256x256) RAW|AppMag = 40|"
                             "MPP = 0.25")
        tw.write(np.ascontiguousarray(img[::4, ::4]), tile=(256, 256), photometric="rgb", metadata=None)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
