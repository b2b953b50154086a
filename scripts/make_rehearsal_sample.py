"""Write the rehearsal sample a bundled blood model ships: a few of its own training smears per lab.

A fine-tune on a lab's corrected smears forgets the other labs (#34: their mAP fell from 0.87 to 0.48-0.58)
unless it rehearses completely labelled smears of them; a user's machine has none of the training data, so
the model folder carries a sample of it (TXL-PBC, MIT licence: its licence goes with it). Run from the
repository root::

    python scripts/make_rehearsal_sample.py [--per-lab 10] [--model resources/models/blood-default]

Reads ``$CELLCOUNTER_DATA/txl-pbc`` (default ``../shared/data``); writes ``MODEL/rehearsal/`` in the VOC
layout (JPEGImages, Annotations) with the licence and a README.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellcounter.evaluate import select_ids, split_ids  # noqa: E402 - after the path is set
from cellcounter.formats import read_labels, write_labels  # noqa: E402
from cellcounter.tasks import TASKS  # noqa: E402
from training.base import REHEARSAL_FOLDER  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-lab", type=int, default=10)
    parser.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "blood-default")
    parser.add_argument("--quality", type=int, default=92, help="JPEG quality of the copies")
    args = parser.parse_args()
    txl = Path(os.environ.get("CELLCOUNTER_DATA", ROOT.parent / "shared" / "data")) / "txl-pbc"
    source = {r["image"].rsplit(".", 1)[0]: r["source_dataset"]
              for r in csv.DictReader(open(txl / "metadata.csv", newline=""))}
    anns = select_ids(read_labels(txl, None, TASKS["blood"].class_names), split_ids(txl, "train"))
    rng = np.random.default_rng(0)
    chosen = []
    for lab in sorted({source[a.stem] for a in anns if a.stem in source}):
        of_lab = sorted((a for a in anns if source.get(a.stem) == lab), key=lambda a: a.stem)
        chosen += [of_lab[i] for i in sorted(rng.choice(len(of_lab), args.per_lab, replace=False))]
    out = args.model / REHEARSAL_FOLDER
    if out.exists():
        shutil.rmtree(out)
    (out / "JPEGImages").mkdir(parents=True)
    for a in chosen:
        dst = out / "JPEGImages" / f"{source[a.stem]}_{a.stem[:12]}.jpg"
        Image.open(a.image_path).convert("RGB").save(dst, quality=args.quality)
        a.image_path = str(dst)
    write_labels(chosen, out, "voc")
    shutil.copy(txl / "LICENSE.txt", out / "LICENSE.txt")
    (out / "README.md").write_text(
        f"# Rehearsal sample of {args.model.name}\n\n{args.per_lab} smears per lab ({len(chosen)} in all) of "
        "TXL-PBC's `train` split (Gan and Li, arXiv:2407.13214, 2024; MIT licence, `LICENSE.txt`), the data this "
        "model was trained on, every visible cell boxed. A fine-tune of this model (or of a version fine-tuned "
        "from it) mixes some of them into its training so that it keeps the labs it knew (`--rehearsal`; "
        "docs/training.md). Written by `scripts/make_rehearsal_sample.py`; JPEG copies of the PNG originals.\n")
    print(f"wrote {len(chosen)} smears to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
