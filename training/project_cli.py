"""``cellcounter project train``: registered through the ``cellcounter.project_commands`` entry point.

Light on purpose: registering the command imports neither torch nor the training loop; running it does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cellcounter.errors import CellCounterError
from cellcounter.tasks import TASKS
from training.recipes import RECIPES

# --- ``cellcounter project train`` (registered through the ``cellcounter.project_commands`` entry point) ----


def register_cli(ps: argparse._SubParsersAction) -> None:
    t = ps.add_parser("train", help="fine-tune on the project's reviewed images and register the new version",
                      description="Fine-tune from the project's active model (else the bundled one) on the "
                                  "reviewed images' labels, exactly as reviewed. The new version is registered, "
                                  "not made active unless --activate is given.")
    t.add_argument("project", type=Path)
    t.add_argument("--task", choices=list(TASKS), help="default: the task of the reviewed images")
    t.add_argument("--recipe", choices=list(RECIPES), help="default: the task's recipe")
    t.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default: the task's fine-tune plan, steps scaled to the number of "
                        "corrected images; from scratch, 10)")
    t.add_argument("--init", help="model to start from, or 'none' (default: the active version, else bundled)")
    t.add_argument("--out", type=Path, help="run folder (default: beside the project)")
    t.add_argument("--rehearsal", type=float, default=None,
                   help="share of the training images drawn from the start model's own training data, to keep "
                        "what it knew (0 to 0.9; default 0: none)")
    t.add_argument("--rehearse-from", default="", metavar="FOLDER",
                   help="with --rehearsal: rehearse this labelled folder instead of the start model's own training "
                        "data (e.g. the old labs' images labelled completely)")
    t.add_argument("--rehearse-ids", default="", metavar="SPLIT",
                   help="with --rehearse-from: only these of its images (a split name or a file of ids)")
    t.add_argument("--trunk-lr", type=float, default=None,
                   help="the backbone's learning rate as a fraction of the recipe's (e.g. 0.1 keeps more of the "
                        "start model; default: the recipe's, 1)")
    t.add_argument("--time-budget", type=float, default=0.0, metavar="MINUTES",
                   help="end training after this many minutes and register the best model so far (0: no limit)")
    t.add_argument("--activate", action="store_true",
                   help="make the new version active (refused when it is worse than its start model or forgot "
                        "what it knew; add --force to activate anyway)")
    t.add_argument("--force", action="store_true", help="with --activate: activate even a flagged version")
    t.add_argument("--resume", action="store_true",
                   help="go on with the project's newest stopped run of the task (or the run folder given by --out) "
                        "from its last checkpoint, then register it")
    t.set_defaults(func=cmd_train)


def _scores(m: dict) -> str:
    """A model's figures in a line: the key scores, then the count error per class."""
    parts = [f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float) and k != "step"]
    counts = m.get("count_mae") or {}
    if counts:
        parts.append("count error " + ", ".join(f"{c} {v:.2f}" for c, v in counts.items()))
    return "; ".join(parts) or "no scores"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def cmd_train(args) -> int:
    from cellcounter.flavour import needs_torch

    needs_torch("fine-tuning needs torch")
    from cellcounter.project.gate import verdict
    from cellcounter.project.store import Project
    from cellcounter.project.workflows import activate_model
    from training.project import Registered, project_run, project_task, resume_run, stopped_runs, train_project

    if args.epochs is not None and args.epochs < 1:
        raise CellCounterError(f"--epochs must be at least 1, got {args.epochs}")
    if args.rehearsal is not None and not 0 <= args.rehearsal <= 0.9:
        raise CellCounterError(f"--rehearsal must be between 0 and 0.9, got {args.rehearsal}")
    if args.time_budget < 0:
        raise CellCounterError(f"--time-budget must be at least 0 minutes, got {args.time_budget}")
    with Project.open(args.project) as proj:
        if args.resume:
            runs = [args.out] if args.out else stopped_runs(proj, args.task)
            if not runs:
                raise CellCounterError(f"{args.project}: no stopped run to resume"
                                       + (f" for {args.task}" if args.task else ""))
            cfg, anns, ids = resume_run(proj, runs[0])
            task = cfg.task
            print(f"resuming {task} in {cfg.out} on {len(anns)} reviewed image(s)", flush=True)
        else:
            task = project_task(proj, args.task)
            cfg, anns, ids = project_run(proj, task, args.recipe, args.epochs, args.init, args.out,
                                         args.rehearsal, args.trunk_lr, args.time_budget,
                                         rehearse_from=args.rehearse_from, rehearse_ids=args.rehearse_ids)
            print(f"training {task} on {len(anns)} reviewed image(s) from {cfg.init}; run in {cfg.out}",
                  flush=True)
        version = None
        said_at = 0.0
        for ev in train_project(proj, cfg, anns, ids):
            if isinstance(ev, Registered):
                version = ev.version
            elif ev.kind == "step":  # a line every 30 s at most: progress without flooding a log
                if time.monotonic() - said_at >= 30 or ev.step == ev.total_steps:
                    said_at = time.monotonic()
                    print(f"step {ev.step}/{ev.total_steps} (epoch {ev.epoch + 1}), loss "
                          f"{sum(ev.losses.values()):.3f}, about {_minutes(ev.eta_s)} left", flush=True)
            elif ev.kind in ("eval", "base_eval"):
                print(f"validation at step {ev.step}{' ' + ev.message if ev.message else ''}: "
                      f"{_scores(ev.metrics)}", flush=True)
            elif ev.kind in ("prepare", "start"):
                print(ev.message, flush=True)
            elif ev.kind == "stopped":
                print(f"stopped; resume with: cellcounter project train {args.project} --resume"
                      f"{' --out ' + str(cfg.out) if args.out else ''}")
                return 1
        if version is None:
            raise CellCounterError("training ended without a model")
        metrics = version.metrics
        print(f"registered {version.name}")
        print(f"  on its validation images: {_scores(metrics.get('after') or {})}")
        if metrics.get("before"):
            print(f"  its start model there:    {_scores(metrics['before'])}")
        if metrics.get("base"):
            base = metrics["base"]
            print(f"  on {base['images']} of {base['model']}'s own validation images: {_scores(base['after'])} "
                  f"(before: {_scores(base.get('before') or {})})")
        if metrics.get("calibration"):
            print(f"  {metrics['calibration']}")
        print(f"verdict: {verdict(metrics)}", flush=True)
        if args.activate:
            try:
                activate_model(proj, version.name, force=args.force)
            except CellCounterError as exc:
                raise CellCounterError(f"registered, but {exc}; or train with --rehearsal") from None
            print(f"{version.name} is now the active {task} model")
    return 0
