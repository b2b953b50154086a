"""``cellcounter-app``: open images, folders or projects for prediction, correction, counting and review.

``--selftest`` opens the bundled blood sample offscreen, predicts it with the
bundled model through torch and ONNX Runtime (the counting build: OpenVINO and
ONNX Runtime, int8), predicts the other bundled samples, writes a screenshot
and prints a one-line JSON summary, for installers and machines without a
display.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellcounter-app",
                                description="Open an image, a folder or a project (.ccproj) for counting.")
    p.add_argument("path", nargs="?", help="image, folder or project (default: the bundled blood-smear sample)")
    p.add_argument("--task", choices=["blood", "nuclei", "leaves", "retinopathy"])
    p.add_argument("--selftest", action="store_true",
                   help="open the sample, predict it, take a screenshot, print a JSON summary and exit")
    p.add_argument("--screenshot", type=Path, help="where --selftest writes its screenshot")
    p.add_argument("--model", default="blood-default", help="model for --selftest (default: blood-default)")
    return p


def selftest(window, model_name: str, shot: Path) -> dict:
    from qtpy.QtWidgets import QApplication

    from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD
    from cellcounter.flavour import has_torch
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.models.card import resolve_model
    from cellcounter.project.workflows import prediction_jobs

    session = window.session
    summary: dict = {"task": session.saved.task, "image": Path(session.saved.image_path).name, "model": None}
    try:
        resolve_model(model_name)
    except Exception as exc:  # noqa: BLE001 - reported with what failed
        summary["model_error"] = str(exc)
    else:
        image = read_image(session.saved.image_path)
        summary["backends"] = {}
        # auto: what the Predict panel runs by default; the counting build has no torch and ships int8 graphs
        for backend in ("auto", "onnx", "torch") if has_torch() else ("auto", "onnx-int8"):
            predictor = Predictor.load(model_name, backend)
            ann = predict_image(predictor, image, session.saved.image_path)
            summary["model"] = predictor.model_version
            summary["backends"][backend] = {"runs_on": predictor.backend.description,
                                            "counts": ann.counts(score_threshold=DEFAULT_SCORE_THRESHOLD)}
            (job,) = prediction_jobs(session.project, [session.current_id])
            window.controller.predicted(job, ann, predictor.model_version)
        window.review.threshold.setValue(round(100 * DEFAULT_SCORE_THRESHOLD))
        summary["samples"] = predict_samples()
    summary["torch"] = sys.modules.get("torch") is not None  # imported (None: made unimportable)
    summary["fine_tune"] = {"enabled": window.train.start_b.isEnabled(), "says": window.train.status.text()}
    QApplication.processEvents()
    shot.parent.mkdir(parents=True, exist_ok=True)
    window.viewer.screenshot(str(shot), canvas_only=False)
    summary["counts"] = window.controller.current().counts(score_threshold=DEFAULT_SCORE_THRESHOLD)
    summary["screenshot"] = str(shot)
    return summary


def predict_samples() -> dict:
    """What each bundled task's default model makes of its sample, as ``auto`` runs it: counts, or the grade."""
    from app.window import SAMPLES
    from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.project.workflows import default_model

    out = {}
    for task in ("nuclei", "leaves", "retinopathy"):  # the blood sample is the self-test's own
        model = default_model(None, task)
        if SAMPLES.get(task) is None or model is None:
            continue
        predictor = Predictor.load(model, "auto")
        ann = predict_image(predictor, read_image(SAMPLES[task]), str(SAMPLES[task]))
        out[task] = {"model": predictor.description,
                     "result": ann.grade.value if ann.grade is not None
                     else ann.counts(score_threshold=DEFAULT_SCORE_THRESHOLD)}
    return out


def start(args: argparse.Namespace):
    """The window ``cellcounter-app ARGS`` opens, shown and ready: ``(viewer, window)``. Raises
    :class:`~cellcounter.errors.CellCounterError` when the path cannot be opened. Tests drive this same window."""
    import napari

    from app.session import Session
    from app.window import SAMPLES, CellCounterWindow

    path = Path(args.path) if args.path else SAMPLES["blood"]
    task = args.task or (None if args.path else "blood")
    # the bundled sample opens with the default model's predictions, not its reference labels
    session, first = Session.open_path(path, task, with_labels=bool(args.path))
    viewer = napari.Viewer(title="cellcounter", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    window = CellCounterWindow(viewer, session, task or session.load(first).task or "blood")
    window.show_image(first)
    return viewer, window


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.logs import log, setup_logging

    setup_logging()
    log.info("cellcounter-app starting: %s", " ".join(sys.argv))
    import napari

    from cellcounter.errors import CellCounterError

    tmp = None
    if args.selftest:  # leave no project behind: the self-test writes only to a temporary folder
        tmp = tempfile.TemporaryDirectory(prefix="cellcounter-selftest-")
        os.environ["CELLCOUNTER_PROJECTS"] = tmp.name
    try:
        viewer, window = start(args)
    except CellCounterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.selftest:
        try:
            summary = selftest(window, args.model, args.screenshot or Path("cellcounter-selftest.png"))
        finally:
            window.controller.flush()
            window.session.close()
            viewer.close()
            tmp.cleanup()
        print(json.dumps(summary))
        return 0
    if not args.path:
        window.predict.run_default("blood")
    napari.run()
    window.controller.flush()
    window.session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
