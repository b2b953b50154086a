"""``cellcounter-app``: open images with their labels in napari, with live per-class counts.

``--selftest`` opens the bundled sample, writes a screenshot and prints a one-line
JSON summary, for installers and machines without a display.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellcounter-app", description="Open an image and its labels for counting.")
    p.add_argument("image", nargs="?", help="image to open (default: the bundled blood-smear sample)")
    p.add_argument("--task", help="task whose class names to use (blood, nuclei, leaves, retinopathy)")
    p.add_argument("--selftest", action="store_true",
                   help="open the sample, take a screenshot, print a JSON summary and exit")
    p.add_argument("--screenshot", type=Path, help="where --selftest writes its screenshot")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import napari

    from app.viewer import SAMPLES, CountsWidget, open_image_with_labels

    image = Path(args.image) if args.image else SAMPLES["blood"]
    viewer = napari.Viewer(title="cellcounter", show=True)
    counts = CountsWidget(viewer)
    viewer.window.add_dock_widget(counts, name="Counts", area="right")
    try:
        ann = open_image_with_labels(viewer, image, args.task)
    except Exception as exc:  # shown to the user, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        viewer.close()
        return 2
    counts.attach(ann)
    if args.selftest:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        shot = args.screenshot or Path("cellcounter-selftest.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(shot), canvas_only=False)
        summary = {"task": ann.task, "model": None, "labels": "stored labels", "image": image.name,
                   "counts": counts.counts(), "screenshot": str(shot)}
        viewer.close()
        print(json.dumps(summary))
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
