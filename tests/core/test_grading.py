"""The grade panel's words: sure or uncertain between two grades, and the referral call (#31 point 9)."""

from cellcounter.grading import grade_call
from cellcounter.tasks import TASKS

NAMES = TASKS["retinopathy"].class_names


def test_a_flat_distribution_is_uncertain_not_a_bold_grade_0():
    call = grade_call([0.24, 0.17, 0.22, 0.17, 0.20])
    assert not call.sure and call.text(NAMES).startswith("uncertain: 0 or 2")
    assert abs(call.p_referable - 0.59) < 1e-9 and call.referable


def test_a_clear_grade_reads_as_such_with_its_referral():
    call = grade_call([0.02, 0.05, 0.81, 0.10, 0.02])
    assert call.sure and call.text(NAMES) == "grade 2 (Moderate), 81%"
    assert call.referral_text() == "referable (grade >= 2: 93%)"
    assert grade_call([0.7, 0.2, 0.05, 0.03, 0.02]).referral_text() == "not referable (grade >= 2: 10%)"
