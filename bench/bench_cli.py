"""CLI start-up: wall time of commands that need no model (they import no torch) beside one that does.

Run alone (``python bench/bench_cli.py``); prints a table and writes ``bench/results/cli.json``. Each command
runs in a fresh interpreter, as a user would type it; the median of 5 runs after one warm-up.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, machine, write
from PIL import Image

VOC = """<annotation><filename>a.png</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


def wall(args: list[str], runs: int = 5) -> float:
    cmd = [sys.executable, "-m", "cellcounter.cli", *args]
    subprocess.run(cmd, capture_output=True, cwd=ROOT, check=True)  # warm the file cache; it must work
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp / "a.png")
        (tmp / "a.xml").write_text(VOC)
        subprocess.run([sys.executable, "-m", "cellcounter.cli", "project", "create", str(tmp / "p.ccproj"),
                        str(tmp)], capture_output=True, cwd=ROOT, check=True)
        commands = {
            "--version": ["--version"],
            "--help": ["--help"],
            "info a.xml": ["info", str(tmp / "a.xml")],
            "convert --to coco": ["convert", "--to", "coco", str(tmp / "a.xml"), str(tmp / "out" / "a.json")],
            "project status": ["project", "status", str(tmp / "p.ccproj")],
            "predict --help": ["predict", "--help"],
            "predict 1 image (loads torch + model)": ["predict", str(tmp / "a.png"), "--task", "blood", "--model",
                                                      "blood-default", "--out", str(tmp / "pred")],
        }
        results = {name: wall(args) for name, args in commands.items()}
    rows = [(name, f"{t:.2f} s") for name, t in results.items()]
    write("cli", rows, {"machine": machine(), "seconds": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
