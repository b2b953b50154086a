"""The correction loop, measured: predict N images with a bundled model, take the reference labels as the
person's corrections, mark them reviewed, fine-tune through the same workflow the Fine-tune panel uses (in a
child process), and score the model before and after on images it never saw, and on the base model's own
validation images (forgetting).

Three fine-tunes are compared (:data:`VARIANTS`: plain, rehearsal, slow trunk). Run alone: ``python
bench/bench_hitl.py [--task blood] [--images 20] [--epochs 10] [--variants plain,...]``; prints a table and writes
``bench/results/hitl_<task>.json``. Needs ``../shared/data`` (or ``CELLCOUNTER_DATA``).

A new organ (#34): ``--base nuclei-maskrcnn --correct TCGA-B0-5698-01Z-00-DX1,TCGA-B0-5711-01Z-00-DX1 --measure
TCGA-2Z-A9J9-01A-01-TS1,TCGA-B0-5710-01Z-00-DX1,TCGA-IZ-8196-01A-01-BS1`` corrects two kidney tiles for a model
that saw no kidney (DSB and five MoNuSeg tiles of other organs) and measures the three other kidney tiles;
``--name`` keeps the result apart (``hitl_<name>.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import ROOT, write

DATA = Path(os.environ.get("CELLCOUNTER_DATA", ROOT.parent / "shared" / "data"))
#: (data source, split of it to draw from): images the bundled model did not train on
SETUPS = {
    "blood": ("bccd", "val"),  # blood-default trained on train.txt; val was only used to pick its checkpoint
    # the five kept-aside H&E tiles of nuclei-default's split (the other MoNuSeg tiles are its training tiles)
    "nuclei": ("monuseg-more,monuseg", str(ROOT / "resources" / "splits" / "nuclei-24" / "val.txt")),
    "retinopathy": ("idrid-train-1280", str(ROOT / "resources" / "splits" / "idrid-481" / "test.txt")),
}


def _labelled(task: str, ids: list[str] | None = None) -> list:
    """The task's labelled images the bundled model did not train on, in a fixed random order; or the images
    named in ``ids`` (file stems, from every folder of the task's setup, in that order)."""
    from cellcounter.evaluate import select_ids, split_ids
    from cellcounter.formats import read_labels
    from cellcounter.tasks import TASKS

    folders, split = SETUPS[task]
    anns = []
    for folder in folders.split(","):
        found = read_labels(DATA / folder, None, TASKS[task].class_names)
        anns += select_ids(found, split_ids(DATA / folder, split)) if split and ids is None else found
    if ids is not None:
        by_id = {Path(a.image_path).stem: a for a in anns}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise SystemExit(f"bench_hitl: no labelled image {', '.join(missing)} in {folders}")
        return [by_id[i] for i in ids]
    anns = [a for a in anns if Path(a.image_path).is_file()]
    order = np.random.default_rng(0).permutation(len(anns))
    return [anns[i] for i in order]


def score(model: str, task: str, gts: list) -> dict:
    from cellcounter.evaluate import evaluate_annotations, predict_all
    from cellcounter.inference import Predictor, predict_image

    predictor = Predictor.load(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept, preds = predict_all(lambda image, path: predict_image(predictor, image, path), gts)
    res = evaluate_annotations(task, kept, preds)
    counts = res.get("count_mae")
    if isinstance(counts, dict):
        res["count_mae_total"] = float(np.mean([abs(sum(p.counts(score_threshold=0.5).values())
                                                    - sum(g.counts().values())) for g, p in zip(kept, preds)]))
    return res


#: the fine-tunes compared: what each keeps of the base model's skills
VARIANTS = {
    "plain": {},  # the corrected images only, every layer at the recipe's rate
    "rehearsal": {"rehearsal": 0.5},  # as many of the base model's own training images mixed in
    "slow-trunk": {"trunk_lr": 0.1},  # the trunk at a tenth of the rate
    "low-lr": {"lr_scale": 0.1},  # every layer at a tenth of the recipe's rate
    "rehearsal-low-lr": {"rehearsal": 0.5, "lr_scale": 0.1},  # both: the slower rate counted best on new organs
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="blood", choices=list(SETUPS))
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None, help="default: the task's fine-tune plan")
    parser.add_argument("--measure", type=int, default=0, help="images to measure on (0: all the others)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--base", help="the model to correct (default: the task's bundled default)")
    parser.add_argument("--correct", help="comma-separated image ids (file stems) to correct, instead of --images")
    parser.add_argument("--measure-ids", help="comma-separated image ids to measure on (with --correct)")
    parser.add_argument("--name", help="result name (default: the task)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= set(VARIANTS):
        print(f"unknown variant(s): {', '.join(sorted(set(variants) - set(VARIANTS)))}", file=sys.stderr)
        return 2

    import dataclasses

    from cellcounter.project import Project
    from cellcounter.project.workflows import (
        Predicted,
        activate_model,
        default_model,
        predict_jobs,
        prediction_jobs,
        register_model,
        review_image,
        rollback_model,
        store_prediction,
    )
    from training.child import iter_training_in_child
    from training.project import project_run

    folder = DATA / SETUPS[args.task][0].split(",")[0]
    if not folder.is_dir():
        print(f"bench_hitl: skipped, {folder} is absent (set CELLCOUNTER_DATA)")
        return 0
    if args.correct:
        correct = _labelled(args.task, [i.strip() for i in args.correct.split(",") if i.strip()])
        measure = _labelled(args.task, [i.strip() for i in (args.measure_ids or "").split(",") if i.strip()])
    else:
        pool = _labelled(args.task)
        correct, measure = pool[:args.images], pool[args.images:]
    if args.measure:
        measure = measure[:args.measure]
    if len(correct) < 2 or not measure:
        print(f"not enough labelled images for {args.task} in {DATA}", file=sys.stderr)
        return 2
    base = args.base or default_model(None, args.task)
    tmp = Path(tempfile.mkdtemp(prefix="cellcounter-hitl-"))
    key = {"blood": "map50", "nuclei": "aji", "retinopathy": "qwk"}[args.task]
    rows = [("", "train to active", f"unseen {key}", "unseen count err", f"base-val {key}", "base-val count")]
    res = {"task": args.task, "corrected_images": len(correct), "measured_images": len(measure), "base": base,
           "epochs": args.epochs, "variants": {}}
    with Project.create(tmp / "hitl.ccproj", user="bench") as proj:
        ids = [proj.add_image(a.image_path, args.task) for a in correct]
        from cellcounter.inference import Predictor

        predictor = Predictor.load(base)
        t = time.perf_counter()
        for ev in predict_jobs(predictor, prediction_jobs(proj, ids)):
            if isinstance(ev, Predicted):
                store_prediction(ev.job, ev.annotation, ev.model_version, proj)
        res["predict_s"] = time.perf_counter() - t
        for image_id, ref in zip(ids, correct):  # the person corrects every image to the reference labels
            stored = proj.load(image_id)
            stored.boxes, stored.masks, stored.points, stored.grade = ref.boxes, ref.masks, ref.points, ref.grade
            proj.save(image_id, stored, origin="human")
            review_image(proj, image_id, "reviewed", 0.5)
        before = score(base, args.task, measure)
        res["before"] = before
        rows.append(("base model", "", f"{before[key]:.3f}", _count(before), "", ""))
        for name in variants:
            t = time.perf_counter()
            cfg, anns, image_ids = project_run(proj, args.task, None, args.epochs, base, out=tmp / name,
                                               rehearsal=VARIANTS[name].get("rehearsal", 0.0))
            settings = {k: v for k, v in VARIANTS[name].items() if k not in ("rehearsal", "lr_scale")}
            if "lr_scale" in VARIANTS[name]:  # the config comes with its recipe applied
                settings["lr"] = cfg.lr * VARIANTS[name]["lr_scale"]
            cfg = dataclasses.replace(cfg, **settings)
            done = None
            for ev in iter_training_in_child(cfg, annotations=anns):
                if ev.kind == "done":
                    done = ev
            version = register_model(proj, done.model_dir, base, image_ids)
            activate_model(proj, version.name, force=True)  # measured either way; the gate is reported
            t_train = time.perf_counter() - t
            rollback_model(proj, args.task)  # each variant starts from the base model
            after = score(done.model_dir, args.task, measure)
            kept = version.metrics.get("base") or {}
            kb, ka = kept.get("before") or {}, kept.get("after") or {}
            rows.append((name, f"{t_train:.0f} s", f"{after[key]:.3f}", _count(after),
                         f"{kb.get(key, float('nan')):.3f} -> {ka.get(key, float('nan')):.3f}",
                         f"{_count(kb)} -> {_count(ka)}"))
            res["variants"][name] = {"settings": VARIANTS[name], "train_to_active_s": t_train, "after": after,
                                     "base_validation": kept}
    print(f"{args.task}: {len(correct)} corrected images, {args.epochs or 'planned'} epochs; measured on "
          f"{len(measure)} unseen images; base-val: the base model's own validation images not corrected ({base})")
    write(f"hitl_{args.name or args.task}", rows, res)
    return 0


def _count(m: dict) -> str:
    """Count error per image, summed over the classes (each class's mean absolute error)."""
    if not m:
        return ""
    c = m.get("count_mae")
    if isinstance(c, dict):
        return f"{sum(c.values()):.2f}"
    return f"{c:.2f}" if isinstance(c, float) else ""


if __name__ == "__main__":
    raise SystemExit(main())
