"""``cellcounter-train``: every flag is a field of :class:`training.config.TrainConfig`, one to one.

Runs under ``torchrun`` too (DistributedDataParallel across the processes it starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence

from cellcounter.errors import REPORTED_ERRORS, error_line
from training.config import TrainConfig, field_help
from training.loop import TrainEvent, iter_training
from training.recipes import RECIPES, apply_recipe


def _tuple_of(kind):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cellcounter-train",
        description="Fine-tune a detector, instance segmenter or grader from labelled images. Recipes: "
                    + "; ".join(RECIPES) + ". A recipe fills every setting you do not give.",
        argument_default=argparse.SUPPRESS)
    helps = field_help()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("recipe_applied", "plan"):
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = str(hints[f.name])
        text = helps.get(f.name, "") + f" (default: {f.default})"
        if hints[f.name] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif "tuple" in hint:
            p.add_argument(flag, type=_tuple_of(float if "float" in hint else int), help=text + "; comma-separated")
        else:
            p.add_argument(flag, type=hints[f.name], help=text)
    p.add_argument("--seeds", type=_tuple_of(int), help="train once per seed and report mean and std (e.g. 0,1,2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if k not in ("seeds", "quiet")}
    cfg = TrainConfig(**given)
    return apply_recipe(cfg, explicit=set(given))


def _bar(ev: TrainEvent) -> str:
    frac = ev.step / max(1, ev.total_steps)
    filled = int(frac * 24)
    losses = " ".join(f"{k} {v:.3f}" for k, v in ev.losses.items())
    eta = f"{int(ev.eta_s // 60)}:{int(ev.eta_s % 60):02d}"
    return (f"\r[{'#' * filled}{'.' * (24 - filled)}] step {ev.step}/{ev.total_steps} epoch {ev.epoch + 1}/"
            f"{ev.epochs} {losses} lr {ev.lr:.2e} eta {eta} ")


def print_event(ev: TrainEvent, quiet: bool = False) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if ev.kind == "step":
        if not quiet:
            print(_bar(ev), end="", file=sys.stderr, flush=True)
        return
    if not quiet:
        print(file=sys.stderr)
    if ev.kind == "eval":
        shown = {k: v for k, v in ev.metrics.items() if k not in ("confusion", "task")}
        print(f"validation at step {ev.step}: {json.dumps(shown)}", file=sys.stderr)
    elif ev.kind in ("prepare", "start", "stopped", "done", "checkpoint") and (ev.kind != "checkpoint" or not quiet):
        print(f"{ev.kind}: {ev.message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if getattr(args, "seeds", None):
            from training.seeds import run_seeds

            summary = run_seeds(cfg, args.seeds, on_event=lambda e: print_event(e, args.quiet))
            print(json.dumps({"mean": summary["mean"], "std": summary["std"]}))
            return 0
        last = None
        for ev in iter_training(cfg):
            print_event(ev, getattr(args, "quiet", False))
            last = ev
        if last is not None and last.kind == "done":
            print(json.dumps({"model": last.model_dir, "metrics": {k: v for k, v in last.metrics.items()
                                                                   if k != "confusion"}}))
        return 0
    except REPORTED_ERRORS as exc:
        print(f"\nerror: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
