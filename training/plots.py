"""Plots saved beside a training run: loss and learning rate, precision-recall per class, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window (and never Qt from the training package)
import matplotlib.pyplot as plt
import numpy as np

from cellcounter.metrics import confusion_matrix, precision_recall
from cellcounter.tasks import get_task


def save_plots(out: Path, history: list[dict], card, pairs) -> list[Path]:
    written = []
    if history:
        steps = [h["step"] for h in history]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(steps, [h["loss"] for h in history], lw=1, label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        ax2.plot(steps, [h["lr"] for h in history], color="tab:orange", lw=1, label="learning rate")
        ax2.set_ylabel("learning rate")
        fig.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(out / "loss_lr.png", dpi=100)
        plt.close(fig)
        written.append(out / "loss_lr.png")
    if pairs is None:
        return written
    gts, preds = pairs
    kind = get_task(card.task).kind
    if kind == "boxes":
        fig, ax = plt.subplots(figsize=(5, 5))
        for c, name in enumerate(card.class_names):
            precision, recall, n = precision_recall(gts, preds, c)
            if n:
                ax.plot(recall, precision, label=name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend()
        ax.set_title("precision-recall at IoU 0.5 (validation)")
        fig.tight_layout()
        fig.savefig(out / "pr_curves.png", dpi=100)
        plt.close(fig)
        written.append(out / "pr_curves.png")
    elif kind == "grade":
        n = len(card.class_names)
        cm = confusion_matrix([g.grade.value for g in gts], [p.grade.value for p in preds], n).astype(float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xlabel("predicted grade")
        ax.set_ylabel("true grade")
        ax.set_title("normalised confusion matrix (validation)")
        fig.tight_layout()
        fig.savefig(out / "confusion.png", dpi=100)
        plt.close(fig)
        written.append(out / "confusion.png")
    return written
