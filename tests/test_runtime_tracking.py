"""IoU tracker: ids follow faces, new faces get new ids, lost faces end after max_missed detections."""
from __future__ import annotations

import numpy as np

from liveness_edge.runtime.tracking import IouTracker, TrackerOptions
from liveness_edge.runtime.types import Face


def face(x, y, s=100, score=0.9):
    return Face((x, y, x + s, y + s), score, np.zeros((6, 2), np.float32))


def test_ids_follow_moving_faces_in_any_order():
    tracker = IouTracker()
    seen, _ = tracker.update([face(0, 0), face(300, 0)])
    a, b = (t.id for t in seen)
    seen, _ = tracker.update([face(310, 5), face(10, 5)])  # both moved a little, order swapped
    assert [t.id for t in seen] == [b, a]
    assert seen[0].hits == 2 and seen[0].box == (310, 5, 410, 105)


def test_new_face_gets_new_id_and_lost_face_ends_after_max_missed():
    tracker = IouTracker(TrackerOptions(iou_threshold=0.3, max_missed=1))
    (first,), _ = tracker.update([face(0, 0)])
    seen, ended = tracker.update([face(500, 0)])
    assert seen[0].id != first.id and ended == []
    assert [t.id for t in tracker.visible()] == [seen[0].id]  # the missed one is not on screen
    _, ended = tracker.update([face(500, 0)])
    assert ended == [first.id]
    seen, _ = tracker.update([face(0, 0)])  # comes back after its track ended: a new id
    assert seen[0].id not in (first.id,)


def test_face_back_within_max_missed_keeps_its_id():
    tracker = IouTracker(TrackerOptions(max_missed=2))
    (first,), _ = tracker.update([face(0, 0)])
    tracker.update([])
    (again,), _ = tracker.update([face(5, 5)])
    assert again.id == first.id


def test_far_jump_is_a_new_track():
    tracker = IouTracker()
    (a,), _ = tracker.update([face(0, 0)])
    (b,), _ = tracker.update([face(200, 200)])
    assert a.id != b.id


def test_appearance_decides_when_boxes_are_ambiguous():
    """At a crossing each new box overlaps the other face's old box more than its own: IoU alone would swap
    the two histories; the appearance signatures keep each face on its own track."""
    sig_a, sig_b = np.eye(2, 768, 0, np.float32)[0], np.eye(2, 768, 1, np.float32)[1]
    tracker = IouTracker()
    (a, b), _ = tracker.update([face(100, 100), face(160, 130)], [sig_a, sig_b])
    seen, _ = tracker.update([face(140, 110), face(120, 122)], [sig_a, sig_b])  # a moved right, b left
    assert [t.id for t in seen] == [a.id, b.id]
    plain = IouTracker()
    (pa, pb), _ = plain.update([face(100, 100), face(160, 130)])
    swapped, _ = plain.update([face(140, 110), face(120, 122)])
    assert [t.id for t in swapped] == [pb.id, pa.id]  # what IoU alone does


def test_changed_appearance_in_the_same_box_cuts_the_track():
    sig_a, sig_b = np.eye(2, 768, 0, np.float32)[0], np.eye(2, 768, 1, np.float32)[1]
    tracker = IouTracker()
    (a,), _ = tracker.update([face(100, 100)], [sig_a])
    (same,), _ = tracker.update([face(102, 100)], [sig_a])
    (other,), ended = tracker.update([face(102, 100)], [sig_b])
    assert same.id == a.id and other.id != a.id and ended == []
