"""The correction loop where users need it: a lab the model never saw.

A base model that never saw lab X predicts X's images; a person corrects 5, 10, 20 of them (here: TXL-PBC's
complete labels stand in for the corrections) and fine-tunes through the same workflow the Fine-tune panel
runs (project, predict, correct, review, fine-tune in a child process, register, activate). Each fine-tuned
model is scored on X's other images and on the other labs' (forgetting). ``--rounds`` runs a correction
session instead: 5 more images a round, each round's fine-tune starting from the active version and
training on every reviewed image so far.

Blood's base model is blood-default@3 (BCCD only, taken from this repository's history): Raabin-WBC, PBC and
BCDD are labs it never saw. Run alone::

    python bench/bench_newlab.py --lab Raabin-WBC [--images 0,5,10,20] [--variants recipe] [--seeds 0]
    python bench/bench_newlab.py --lab PBC --rounds 4

Measures on the lab's images of ``resources/splits/txl-pbc/select.txt`` (``--measure holdout`` for the
kept-aside half, once a recipe is chosen). Writes ``bench/results/newlab_<lab>.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, write
from bench_hitl import DATA, score

TXL = DATA / "txl-pbc"
#: the commit that holds blood-default v3, the model of BCCD alone
V3_COMMIT = "9c9e438"
LABS = ("BCCD", "BCDD", "PBC", "Raabin-WBC")

#: fine-tunes compared: changes to the configuration the Fine-tune panel would run
VARIANTS = {
    "recipe": {},  # the plan without rehearsal (the panel's default until rehearsal was measured, #34)
    "scratch-recipe": {"finetune": False},  # the from-scratch recipe at 10 epochs (the former default)
    "low-lr": {"lr_scale": 0.1},
    "slow-trunk": {"trunk_lr": 0.1},
    "rehearsal": {"rehearsal": 0.5},  # as many of the start model's own training images mixed in
    # as many of the start model's own lab (BCCD) mixed in, but TXL-PBC's complete labels of those smears
    "rehearsal-complete": {"rehearsal": 0.5, "rehearse_lab": "BCCD"},  # as the panel now runs the bundled model
    "rehearsal-complete-0.8": {"rehearsal": 0.8, "rehearse_lab": "BCCD"},  # four rehearsed a corrected one
    # the warmup as it was before #38: the recipe's 100 steps whatever the run's length (in this process)
    "old-warmup": {"finetune": False, "old_warmup": True},
}


#: the variants' names in the figure's legend
PLOT_NAMES = {"recipe": "no rehearsal", "rehearsal-complete": "rehearsing complete labels (the default)"}


def base_model_v3() -> Path:
    """blood-default v3 written out of the repository's history into ``bench/results`` (once)."""
    out = RESULTS / "blood-default-v3"
    if not (out / "model.pt").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("card.json", "model.pt"):
            data = subprocess.run(["git", "show", f"{V3_COMMIT}:resources/models/blood-default/{name}"],
                                  cwd=ROOT, check=True, capture_output=True).stdout
            (out / name).write_bytes(data)
    return out


def lab_images(split_file: str | None, split: str | None = None) -> dict[str, list]:
    """TXL-PBC's labelled images per lab, from a split file or one of its own splits, in a fixed order."""
    from cellcounter.evaluate import select_ids, split_ids
    from cellcounter.formats import read_labels
    from cellcounter.tasks import TASKS

    source = {r["image"].rsplit(".", 1)[0]: r["source_dataset"]
              for r in csv.DictReader(open(TXL / "metadata.csv", newline=""))}
    anns = read_labels(TXL, None, TASKS["blood"].class_names)
    if split_file:
        anns = select_ids(anns, split_ids(TXL, split_file))
    elif split:
        anns = [a for a in anns if f"/{split}/" in str(a.image_path)]
    out: dict[str, list] = {lab: [] for lab in LABS}
    for a in sorted(anns, key=lambda a: a.stem):
        if source.get(a.stem) in out:
            out[source[a.stem]].append(a)
    rng = np.random.default_rng(0)
    return {lab: [v[i] for i in rng.permutation(len(v))] for lab, v in out.items()}


def _blood(m: dict) -> dict:
    counts = m.get("count_mae") or {}
    return {"map50": m.get("map50"), "count_error": float(sum(counts.values())) if counts else None,
            "rbc_count_error": counts.get("RBC")}


def finetune(proj, init: str, variant: dict, seed: int, out: Path) -> tuple[str, dict, float]:
    """One fine-tune of the project's reviewed images from ``init``, registered and activated as the panel
    does; returns the model folder, the version's record and the wall time from "train" to active."""
    from cellcounter.project.workflows import activate_model, register_model
    from training.child import iter_training_in_child
    from training.project import project_run

    t = time.perf_counter()
    rehearse_ids = ""
    if variant.get("rehearse_lab"):  # that lab's training smears of TXL-PBC
        rehearse_ids = str(out.with_name(out.name + "-rehearse.txt"))
        Path(rehearse_ids).write_text("\n".join(a.stem for a in lab_images(None, "train")[variant["rehearse_lab"]]))
    cfg, anns, ids = project_run(proj, "blood", None, None, init, out=out, finetune=variant.get("finetune", True),
                                 trunk_lr=variant.get("trunk_lr"), rehearsal=variant.get("rehearsal", 0.0),
                                 rehearse_from=str(TXL) if rehearse_ids else "", rehearse_ids=rehearse_ids)
    changes = {"seed": seed}
    if "lr_scale" in variant:  # the config comes with its recipe applied
        changes["lr"] = cfg.lr * variant["lr_scale"]
    cfg = dataclasses.replace(cfg, **changes)
    done = None
    if variant.get("old_warmup"):
        from unittest import mock

        from training import iter_training

        with mock.patch("training.setup.warmup_steps", lambda c, total: c.warmup_iters):
            events = list(iter_training(cfg, annotations=anns))
    else:
        events = iter_training_in_child(cfg, annotations=anns)
    for ev in events:
        if ev.kind == "done":
            done = ev
        elif ev.kind == "error":
            raise RuntimeError(ev.message)
    version = register_model(proj, done.model_dir, cfg.init, ids)
    activate_model(proj, version.name, force=True)
    return done.model_dir, version, time.perf_counter() - t


def corrected_project(path: Path, base: str, images: list):
    """A project holding ``images``, predicted by ``base`` and corrected to their reference labels, reviewed."""
    from cellcounter.inference import Predictor
    from cellcounter.project import Project
    from cellcounter.project.workflows import (
        Predicted,
        default_model,
        predict_jobs,
        prediction_jobs,
        review_image,
        store_prediction,
    )

    proj = Project.create(path, user="bench") if not path.exists() else Project.open(path)
    ids = [proj.add_image(a.image_path, "blood") for a in images]
    predictor = Predictor.load(base or default_model(proj, "blood"))  # none given: the project's active one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ev in predict_jobs(predictor, prediction_jobs(proj, ids)):
            if isinstance(ev, Predicted):
                store_prediction(ev.job, ev.annotation, ev.model_version, proj)
    for image_id, ref in zip(ids, images):  # the person corrects every image to the reference labels
        stored = proj.load(image_id)
        stored.boxes = ref.boxes
        proj.save(image_id, stored, origin="human")
        review_image(proj, image_id, "reviewed", 0.5)
    return proj


def plot(results: list[Path], out: Path, variants: tuple[str, ...] = ("recipe",)) -> None:
    """The curves of the given result files: count error on the new lab's unseen images (left) and mAP on the
    other labs' (right) against the corrected images, one line per lab and variant (of ``variants``; a file
    may serve only for its base model's point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    loaded = [json.loads(path.read_text()) for path in results]
    bases = {res["lab"]: p for res in loaded for p in res["points"] if p["images"] == 0}  # measured once a lab
    for res in loaded:
        base = bases[res["lab"]]
        lines: dict[str, list] = {}
        for p in res["points"]:
            if p["images"] and p["variant"].split(" round")[0] in variants:
                lines.setdefault(p["variant"].split(" round")[0] + (" (rounds of 5)" if "round" in p["variant"]
                                                                    else ""), []).append(p)
        for name, points in lines.items():
            x = [0] + sorted({p["images"] for p in points})
            by_n = {n: [p for p in [base] + points if p["images"] == n] for n in x}  # seeds averaged

            def mean(where: str, key: str) -> list[float]:
                return [float(np.mean([p[where][key] for p in by_n[n]])) for n in x]

            label = f"{res['lab']}: {PLOT_NAMES.get(name, name)}"
            left.plot(x, mean("lab", "count_error"), "o-", label=label)
            right.plot(x, mean("others", "map50"), "o-", label=label)
    left.set(xlabel="corrected images of the new lab", ylabel="count error per image (sum of classes)",
             title="the new lab's unseen smears")
    right.set(xlabel="corrected images of the new lab", ylabel="mAP@0.5", title="the other labs' smears")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="Raabin-WBC", choices=LABS)
    parser.add_argument("--images", default="0,5,10,20", help="corrected images per point of the curve")
    parser.add_argument("--rounds", type=int, default=0, help="a session of this many rounds of 5 images instead")
    parser.add_argument("--variants", default="recipe", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--measure", default="select", choices=("select", "holdout"))
    parser.add_argument("--base", default="", help="the base model (default: blood-default v3, BCCD only)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--no-base", action="store_true", help="do not score the base model (measured before)")
    parser.add_argument("--plot", nargs="+", type=Path, metavar="RESULT",
                        help="draw these result files' curves (of --variants) into docs/images/newlab_curve.png "
                             "instead")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if args.plot:
        plot(args.plot, ROOT / "docs" / "images" / "newlab_curve.png", tuple(variants))
        return 0
    if not TXL.is_dir():
        print(f"bench_newlab: skipped, {TXL} is absent (set CELLCOUNTER_DATA)")
        return 0
    import torch

    base = args.base or str(base_model_v3())
    pool = lab_images(None, "train")[args.lab]
    measured = lab_images(str(ROOT / "resources" / "splits" / "txl-pbc" / f"{args.measure}.txt"))
    lab_set = measured[args.lab]
    others = [a for lab in LABS if lab != args.lab for a in measured[lab]]
    seeds = [int(s) for s in args.seeds.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="cellcounter-newlab-"))
    res = {"lab": args.lab, "base": base, "measured": {"lab": len(lab_set), "others": len(others)},
           "split": args.measure, "threads": torch.get_num_threads(), "points": []}
    rows = [("corrected", "variant", "seed", "train to active", "lab mAP", "lab count err", "lab RBC err",
             "others mAP", "others count err")]

    def measure(model: str, n: int, name: str, seed, seconds, version=None) -> None:
        load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").is_file() else "?"
        lab, oth = _blood(score(model, "blood", lab_set)), _blood(score(model, "blood", others))
        point = {"images": n, "variant": name, "seed": seed, "train_to_active_s": seconds, "lab": lab,
                 "others": oth, "load": load}
        if version is not None:
            point["version"] = {k: version.metrics.get(k) for k in ("after", "before", "base", "calibration")}
        res["points"].append(point)
        rows.append((n, name, seed, f"{seconds:.0f} s" if seconds else "", f"{lab['map50']:.3f}",
                     f"{lab['count_error']:.2f}", f"{lab['rbc_count_error']:.2f}", f"{oth['map50']:.3f}",
                     f"{oth['count_error']:.2f}"))
        print(rows[-1], flush=True)
        (RESULTS / f"newlab_{args.lab}{args.tag}.partial.json").write_text(json.dumps(res, indent=1))

    if not args.no_base:
        measure(base, 0, "base model", "", 0.0)
    if args.rounds:
        for name in variants:
            for seed in seeds:
                path = tmp / f"rounds-{name}-{seed}.ccproj"
                for r in range(1, args.rounds + 1):
                    proj = corrected_project(path, None, pool[5 * (r - 1): 5 * r]) if r > 1 else \
                        corrected_project(path, base, pool[:5])
                    with proj:
                        init = base if r == 1 else None  # later rounds: the project's active version
                        model, version, secs = finetune(proj, init, VARIANTS[name], seed, tmp / f"r{name}{seed}-{r}")
                    measure(model, 5 * r, f"{name} round {r}", seed, secs, version)
    else:
        for n in [int(x) for x in args.images.split(",") if int(x) > 0]:
            for name in variants:
                for seed in seeds:
                    with corrected_project(tmp / f"{name}-{n}-{seed}.ccproj", base, pool[:n]) as proj:
                        model, version, secs = finetune(proj, base, VARIANTS[name], seed, tmp / f"{name}-{n}-{seed}")
                    measure(model, n, name, seed, secs, version)
    print(f"blood, new lab {args.lab}: base {base}; measured on {len(lab_set)} of its {args.measure} images and "
          f"{len(others)} of the other labs'")
    write(f"newlab_{args.lab}{args.tag}", rows, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
