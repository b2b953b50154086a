"""A blood detector's figures per lab on TXL-PBC (every visible cell boxed), as in docs/models.md.

Each image is predicted once through the one inference entry (``predict_image``), then scored per source lab
(``metadata.csv``) with the same metrics as ``cellcounter evaluate``: mAP@0.5, AP per class, count error per
image at the card's threshold. Prints a Markdown table and, with ``--json``, writes the figures.

    python scripts/blood_per_lab.py --model blood-default --split resources/splits/txl-pbc/holdout.txt
    python scripts/blood_per_lab.py --model runs/blood-v4/model --split resources/splits/txl-pbc/select.txt \
        --backend auto --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cellcounter.evaluate import evaluate_annotations, predict_all, select_ids, split_ids
from cellcounter.formats import read_labels
from cellcounter.inference import Predictor
from cellcounter.inference.run import predict_image


def per_lab(model: str, data: Path, split: str, backend: str = "torch", threshold: float = 0.5) -> dict:
    predictor = Predictor.load(model, backend)
    gts = select_ids(read_labels(data, class_names=predictor.card.class_names), split_ids(data, split))
    source = {r["image"].rsplit(".", 1)[0]: r["source_dataset"]
              for r in csv.DictReader(open(data / "metadata.csv", newline=""))}
    gts, preds = predict_all(lambda image, path: predict_image(predictor, image, path), gts)
    out = {"model": predictor.model_version, "backend": predictor.backend.description, "split": split, "labs": {}}
    labs = sorted({source.get(g.stem, "?") for g in gts})
    for lab in labs + ["all"]:
        idx = [i for i, g in enumerate(gts) if lab == "all" or source.get(g.stem) == lab]
        m = evaluate_annotations("blood", [gts[i] for i in idx], [preds[i] for i in idx], threshold)
        m["cells_per_image"] = {c: float(np.mean([gts[i].counts()[c] for i in idx])) for c in gts[0].class_names}
        out["labs"][lab] = m
    return out


def table(figures: dict) -> str:
    rows = ["| lab | images | mAP@0.5 | RBC AP | WBC AP | Platelets AP | count error RBC / WBC / Platelets "
            "| RBC per image |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for lab, m in figures["labs"].items():
        ap, mae = m["ap50"], m["count_mae"]
        rows.append(f"| {lab} | {m['images']} | {m['map50']:.3f} | {ap['RBC']:.3f} | {ap['WBC']:.3f} | "
                    f"{ap['Platelets']:.3f} | {mae['RBC']:.2f} / {mae['WBC']:.2f} / {mae['Platelets']:.2f} | "
                    f"{m['cells_per_image']['RBC']:.1f} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="blood-default")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "txl-pbc")
    p.add_argument("--split", default="resources/splits/txl-pbc/holdout.txt")
    p.add_argument("--backend", default="torch")
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    figures = per_lab(args.model, args.data, args.split, args.backend, args.score_threshold)
    print(f"{figures['model']} on {args.split} ({figures['backend']})")
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
