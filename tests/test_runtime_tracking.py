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


def test_far_jump_is_a_new_track_and_reset_restarts_ids():
    tracker = IouTracker()
    (a,), _ = tracker.update([face(0, 0)])
    (b,), _ = tracker.update([face(200, 200)])
    assert a.id != b.id
    tracker.reset()
    (c,), _ = tracker.update([face(0, 0)])
    assert c.id == 1 and tracker.tracks == [c]
