"""How sure a grader is, in words a clinician reads: the grade, or the two grades it hesitates between, and the
referral call (grade 2 or more: moderate non-proliferative retinopathy or worse is referable)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERABLE_FROM = 2  # ICDR: moderate NPDR or worse is referred to an ophthalmologist
SURE_TOP = 0.6  # the top grade must hold this much probability ...
SURE_MARGIN = 0.2  # ... and lead the next by this much, else the model is "uncertain"


@dataclass(frozen=True)
class GradeCall:
    grade: int
    sure: bool
    runner_up: int  # the next most likely grade
    p_grade: float
    p_runner_up: float
    p_referable: float

    @property
    def referable(self) -> bool:
        return self.p_referable >= 0.5

    def text(self, names) -> str:
        if self.sure:
            return f"grade {self.grade} ({names[self.grade]}), {self.p_grade:.0%}"
        a, b = sorted((self.grade, self.runner_up))
        return f"uncertain: {a} or {b} ({self.p_grade:.0%} / {self.p_runner_up:.0%})"

    def referral_text(self) -> str:
        verdict = "referable" if self.referable else "not referable"
        return f"{verdict} (grade >= {REFERABLE_FROM}: {self.p_referable:.0%})"


def grade_call(probabilities) -> GradeCall:
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(-p, kind="stable")
    top, second = int(order[0]), int(order[1]) if len(p) > 1 else int(order[0])
    sure = p[top] >= SURE_TOP and p[top] - p[second] >= SURE_MARGIN
    return GradeCall(top, bool(sure), second, float(p[top]), float(p[second]), float(p[REFERABLE_FROM:].sum()))
