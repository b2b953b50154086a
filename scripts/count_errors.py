"""Where a box detector's count error comes from: per-image signed errors, by blocks of image numbers.

Reproduces the analysis in docs/models.md (blood-default on BCCD's val split): the error per image at the
card's threshold (the app's default 0.5 after the card's calibration), how concentrated it is, and how it
follows the labelling density of blocks of image numbers (BCCD's labellers counted early images more
completely).

    python scripts/count_errors.py --model blood-default --data ../shared/data/bccd --split val
    python scripts/count_errors.py --model runs/x/model --data ../shared/data/bccd --split val --csv errors.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cellcounter.evaluate import predict_all, select_ids, split_ids
from cellcounter.formats import read_labels
from cellcounter.inference import Predictor
from cellcounter.inference.run import predict_image


def per_image(model: str, data: Path, split: str, threshold: float) -> list[dict]:
    predictor = Predictor.load(model)
    gts = select_ids(read_labels(data, class_names=predictor.card.class_names), split_ids(data, split))
    gts, preds = predict_all(lambda image, path: predict_image(predictor, image, path), gts)
    rows = []
    for g, p in zip(gts, preds):
        truth, found = g.counts("boxes"), p.counts("boxes", score_threshold=threshold)
        rows.append({"image": g.stem, **{f"{c}_labelled": truth[c] for c in truth},
                     **{f"{c}_found": found.get(c, 0) for c in truth}})
    return rows


def summary(rows: list[dict], classes: list[str], block: int) -> dict:
    out: dict = {"images": len(rows)}
    for c in classes:
        err = np.array([r[f"{c}_found"] - r[f"{c}_labelled"] for r in rows], dtype=float)
        a = np.abs(err)
        worst = np.sort(a)[::-1][:10]
        out[c] = {"mae": float(a.mean()), "median": float(np.median(a)), "mean_signed": float(err.mean()),
                  "share_of_worst_10": float(worst.sum() / max(a.sum(), 1e-9))}
        blocks: dict[str, dict] = {}
        for r, e in zip(rows, err):
            m = re.search(r"(\d+)$", r["image"])
            key = f"{int(m.group(1)) // block * block}-{int(m.group(1)) // block * block + block - 1}" if m else "?"
            b = blocks.setdefault(key, {"images": 0, "labelled": 0, "found": 0, "abs_error": 0.0})
            b["images"] += 1
            b["labelled"] += r[f"{c}_labelled"]
            b["found"] += r[f"{c}_found"]
            b["abs_error"] += abs(e)
        out[c]["by_block"] = {k: {"images": v["images"], "labelled_per_image": v["labelled"] / v["images"],
                                  "found_per_image": v["found"] / v["images"], "mae": v["abs_error"] / v["images"]}
                              for k, v in sorted(blocks.items(), key=lambda kv: int(kv[0].split("-")[0])
                                                 if kv[0] != "?" else -1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="blood-default")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--threshold", type=float, default=0.5, help="after the card's calibration (the app's slider)")
    ap.add_argument("--block", type=int, default=60, help="image numbers per block")
    ap.add_argument("--csv", type=Path, help="also write the per-image counts here")
    args = ap.parse_args(argv)
    rows = per_image(args.model, args.data, args.split, args.threshold)
    classes = [k[: -len("_labelled")] for k in rows[0] if k.endswith("_labelled")] if rows else []
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(json.dumps(summary(rows, classes, args.block), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
