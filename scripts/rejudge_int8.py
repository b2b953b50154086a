"""Re-judge a model's existing int8 graph against its float graph on the card's own validation images, counts
included (#32: int8 acceptance judged on mAP alone let a count-changing box through), and update the card's
``metrics.int8`` verdict. The int8 graph itself is not remade.

    python scripts/rejudge_int8.py blood-default nuclei-default
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cellcounter.evaluate import evaluate_annotations, predict_all, select_ids, split_ids
from cellcounter.fileutil import atomic_write_text
from cellcounter.formats import read_labels
from cellcounter.inference import Predictor, predict_image
from cellcounter.inference.quantize import judge
from cellcounter.models.card import CARD_NAME, ModelCard, resolve_model


def rejudge(name: str) -> dict:
    directory = resolve_model(name)
    card = ModelCard.from_file(directory / CARD_NAME)
    old = card.metrics["int8"]
    m = re.match(r"\d+ images of (.+?)(?: \((.+)\))?$", old["validation"])
    data, split = m.group(1), m.group(2)
    gts = []
    for source in data.split(","):
        part = read_labels(Path(source), None, card.class_names)
        gts += select_ids(part, split_ids(Path(source), split)) if split else part
    scores = {}
    for precision in ("", "-int8"):
        p = Predictor.load(directory, old["runtime"] + precision, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept, preds = predict_all(lambda image, path, p=p: predict_image(p, image, path), gts)
        scores[precision or "fp32"] = evaluate_annotations(card.task, kept, preds)
    verdict = judge(card.config.kind, scores["fp32"], scores["-int8"])
    verdict.update({k: old[k] for k in ("runtime", "calibration", "validation")})
    card.metrics["int8"] = verdict
    atomic_write_text(directory / CARD_NAME, card.to_json())
    return verdict


if __name__ == "__main__":
    for model in sys.argv[1:]:
        print(model, json.dumps(rejudge(model)))
