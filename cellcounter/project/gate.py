"""Is a fine-tuned version better? The one gate every door to "make active" uses (the Fine-tune panel, ``project
train --activate``, ``project models --activate``), and the line that says so.

A version is judged on the user's own held-back corrections against the model it started from (count error
first, then the key score of :func:`cellcounter.evaluate.key_metric`), and on the start model's own
validation images (what it kept).
"""

from __future__ import annotations

from cellcounter.evaluate import KEY_METRIC


def calibration_words(card) -> str:
    """Which score calibration a model counts with, in a line: checked (which classes), its parent's, or none."""
    cal = card.metrics.get("score_calibration") or {}
    if "kept_from" in cal:
        return f"score calibration: {cal['kept_from']} ({cal.get('why', '')})"
    if "decision" in cal:
        return f"score calibration: {cal['decision'].split('.')[0]}"
    per_class = cal.get("per_class") or {}
    if not card.score_calibration:
        return ("score calibration: none (raw scores count better on held-back images)" if per_class
                else "score calibration: none")
    return ("score calibration for " + ", ".join(sorted(card.score_calibration)) + ", checked on "
            f"{cal.get('images', '?')} validation images it was not fitted on")


# the score a version is judged by (the first one its metrics hold): each kind's key score, then mask AP@0.5 for
# versions whose cards were written before AJI was scored
KEY_METRICS = (*dict.fromkeys(KEY_METRIC.values()), "mask_ap50")


def _drop(after: dict, before: dict, tolerance: float = 0.0, count_slack: float = 0.0) -> str | None:
    """The first key score both hold, as ``"key after (was before)"``, when it fell by more than ``tolerance``;
    else the count error (summed over classes, per image), when it rose by more than ``count_slack`` of itself
    plus 0.1 (what a person reads is the count: a doubled count error must not pass a steady mAP)."""
    for key in KEY_METRICS:
        a, b = after.get(key), before.get(key)
        if isinstance(a, float) and isinstance(b, float):
            if a < b - tolerance:
                return f"{key} {a:.3f} (was {b:.3f})"
            break
    from cellcounter.evaluate import total_count_error

    a, b = total_count_error(after), total_count_error(before)
    if a is not None and b is not None and a > b * (1 + count_slack) + 0.1:
        return f"count error {a:.2f} per image (was {b:.2f})"
    return None


def worse_than_parent(metrics: dict) -> str | None:
    """The key validation score (or the count error) on which a new version is below its parent on the same
    images, if any."""
    return _drop(metrics.get("after") or {}, metrics.get("before") or {})


FORGETTING_TOLERANCE = 0.02  # a drop this small on the start model's own images is noise, not forgetting
FORGETTING_COUNT_SLACK = 0.2  # nor is a count error 20% higher


def forgot(metrics: dict, tolerance: float = FORGETTING_TOLERANCE) -> str | None:
    """What a new version lost on its start model's own validation images (by more than ``tolerance``, or a
    count error more than 20% higher), if anything: the skills of the base model a fine-tune on a few images
    can overwrite."""
    base = metrics.get("base") or {}
    lost = _drop(base.get("after") or {}, base.get("before") or {}, tolerance, FORGETTING_COUNT_SLACK)
    return f"{lost} on {base.get('images')} of {base.get('model')}'s own validation images" if lost else None


def verdict(metrics: dict) -> str:
    """A fine-tuned version against its start model in one line, as a person decides on it: on the corrected
    images held back from training (the user's own) first, then on the start model's own validation images.

    ``"better on your images: count error 10.3 -> 2.1 per image (map50 0.46 -> 0.85); nothing lost on 30 of
    M's own validation images"``; ``"better on your images: ...; but it lost ... on 30 of M's own validation
    images"`` (a new lab gained, the old one's skills went: the person decides, rehearsal keeps more);
    ``"worse: keep the current model; ..."`` when it is worse on the user's own images.
    """
    from cellcounter.evaluate import total_count_error

    after, before = metrics.get("after") or {}, metrics.get("before") or {}
    a, b = total_count_error(after), total_count_error(before)
    worse = worse_than_parent(metrics)
    if worse:
        counts = (f" (count error {b:.2f} -> {a:.2f} per image)"
                  if a is not None and b is not None and not worse.startswith("count error") else "")
        return f"worse: keep the current model; {worse} on your held-back images{counts}"
    key = next((k for k in KEY_METRICS if isinstance(after.get(k), float) and isinstance(before.get(k), float)),
               None)
    if key is None and (a is None or b is None):
        return "not compared: the start model was not scored on the same images"
    parts = []
    if a is not None and b is not None:
        parts.append(f"count error {b:.2f} -> {a:.2f} per image")
    if key is not None:
        parts.append(f"{key} {before[key]:.3f} -> {after[key]:.3f}")
    figures = parts[0] + (f" ({parts[1]})" if len(parts) > 1 else "")
    better = (a < b - 0.05) if a is not None and b is not None else after[key] > before[key] + 0.005
    base, lost = metrics.get("base") or {}, forgot(metrics)
    if lost:
        kept = f"but it lost {lost} (rehearsal keeps more of what it knew)"
    elif base.get("after") and base.get("before"):
        kept = f"nothing lost on {base.get('images')} of {base.get('model')}'s own validation images"
    else:
        kept = "not checked on the start model's own images"
    if better:
        return f"better on your images: {figures}; {kept}"
    return f"no better on your images: {figures}; {kept}"


def activation_warning(metrics: dict) -> str | None:
    """Why a version should not be made active without a second thought (worse than its parent on the same
    images, or it forgot what its start model knew), the same at every door: the panel asks, the CLI needs
    ``--force``."""
    worse, lost = worse_than_parent(metrics), forgot(metrics)
    parts = ([f"{worse} is worse than the model it started from on the same validation images"] if worse else []) \
        + ([f"it forgot what its start model knew: {lost}"] if lost else [])
    return "; ".join(parts) or None


# --- an image's task ------------------------------------------------------------------
