"""The grade panel's words: sure or uncertain between two grades, and the referral call (#31 point 9)."""

import numpy as np

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


def test_a_grade_changed_by_a_person_keeps_who_gave_it_first():
    """The provenance rule lives in the core (#33 point 5): a model's grade changed becomes corrected, with the
    model's probabilities kept; changed again it stays corrected; a person's grade stays a person's."""
    from cellcounter.annotations import Grade, Origin

    model = Grade(3, np.array([0.1, 0.1, 0.2, 0.5, 0.1]), Origin.MODEL)
    fixed = model.set_by_person(2)
    assert (fixed.value, fixed.origin) == (2, Origin.CORRECTED)
    assert np.allclose(fixed.probabilities, model.probabilities)
    again = fixed.set_by_person(1)
    assert (again.value, again.origin) == (1, Origin.CORRECTED)
    person = Grade(0, None, Origin.HUMAN).set_by_person(4)
    assert (person.value, person.origin, person.probabilities) == (4, Origin.HUMAN, None)
