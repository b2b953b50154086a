"""Repeated runs with different seeds, reported as mean and standard deviation (as the blood-cell study did)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cellcounter.fileutil import atomic_write_text
from training.config import TrainConfig
from training.loop import TrainEvent, run_training


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "images"):
            out[key] = float(v)
    return out


def run_seeds(cfg: TrainConfig, seeds: Sequence[int], on_event: Callable[[TrainEvent], None] | None = None) -> dict:
    """Train once per seed into ``out/seed_N`` and write ``out/seeds_summary.json`` with mean and std per metric."""
    per_seed = {}
    for s in seeds:
        run = dataclasses.replace(cfg, seed=s, out=str(Path(cfg.out) / f"seed_{s}"))
        last = run_training(run, on_event=on_event)
        per_seed[s] = _flatten(last.metrics)
    keys = sorted(set().union(*per_seed.values())) if per_seed else []
    summary = {"seeds": list(seeds), "per_seed": per_seed, "mean": {}, "std": {}}
    for k in keys:
        vals = np.array([per_seed[s].get(k, np.nan) for s in seeds], float)
        summary["mean"][k] = float(np.nanmean(vals))
        summary["std"][k] = float(np.nanstd(vals, ddof=1)) if np.sum(~np.isnan(vals)) > 1 else 0.0
    atomic_write_text(Path(cfg.out) / "seeds_summary.json", json.dumps(summary, indent=2))
    return summary
