"""Mask editing in the core: delete, merge, split along a line, fresh ids that never reuse a removed one."""

from __future__ import annotations

import numpy as np

from cellcounter.maskops import delete_instance, merge_instances, next_free_id, split_instance


def _two_blobs():
    lab = np.zeros((40, 60), np.int32)
    lab[5:15, 5:20] = 3
    lab[20:30, 30:50] = 7
    return lab


def test_delete_and_merge_touch_only_the_instances_named_and_leave_the_input_alone():
    lab = _two_blobs()
    before = lab.copy()
    gone = delete_instance(lab, 3)
    assert set(np.unique(gone)) == {0, 7} and (gone[lab == 7] == 7).all()
    merged = merge_instances(lab, 7, 3)
    assert set(np.unique(merged)) == {0, 7} and (merged[lab == 3] == 7).all()
    assert (lab == before).all()
    assert (merge_instances(lab, 0, 3) == lab).all()  # merging into the background is no merge


def test_a_line_across_an_instance_cuts_it_in_two_the_larger_piece_keeps_the_id():
    lab = _two_blobs()
    out, ids = split_instance(lab, 7, np.array([[15, 36], [35, 36]]))  # a vertical cut near the left end
    assert ids == [7, 8]
    sizes = {i: int((out == i).sum()) for i in ids}
    assert sizes[7] > sizes[8] > 0
    assert ((out == 7) | (out == 8))[lab == 7].sum() + (out[lab == 7] == 0).sum() == (lab == 7).sum()
    assert (out[lab == 3] == 3).all()  # the other instance is untouched
    left, right = np.nonzero(out == 8)[1].max(), np.nonzero(out == 7)[1].min()
    assert left < right  # the pieces lie on either side of the line


def test_a_line_that_does_not_cut_through_leaves_the_instance_whole():
    lab = _two_blobs()
    out, ids = split_instance(lab, 7, np.array([[15, 36], [24, 36]]))  # stops inside
    assert ids == [7] and (out == lab).all()
    assert split_instance(lab, 99, np.array([[0, 0], [39, 59]]))[1] == []


def test_a_new_id_is_above_every_id_now_and_in_the_saved_state():
    lab = _two_blobs()
    assert next_free_id(lab) == 8
    assert next_free_id(delete_instance(lab, 7), also_used=np.array([3, 7, 12])) == 13
    out, ids = split_instance(lab, 7, np.array([[15, 36], [35, 36]]), first_new_id=13)
    assert ids == [7, 13]
