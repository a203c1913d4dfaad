"""``overlay.draw`` on a blank frame: boxes in the decision's colour, labels, the status line, in place."""
from __future__ import annotations

import numpy as np

from liveness_edge.runtime.overlay import COLOURS, UNCERTAIN_COLOUR, draw
from liveness_edge.runtime.types import FaceResult, FrameResult, StageTimes


def frame_result(*faces: FaceResult) -> FrameResult:
    return FrameResult("test", 0, list(faces), StageTimes.measured(1.0, 5.0, detect=2.0))


def face(decision: str, box=(100.0, 100.0, 200.0, 220.0), reason=None) -> FaceResult:
    return FaceResult(1, box, 0.9, 0.8, 0.7, decision, reason)


def has_colour(image: np.ndarray, colour) -> bool:
    return bool((image == np.array(colour, np.uint8)).all(axis=-1).any())


def test_draws_in_place_with_the_decision_colour():
    for decision, colour in (("real", COLOURS["real"]), ("spoof", COLOURS["spoof"]), ("uncertain", UNCERTAIN_COLOUR)):
        image = np.zeros((360, 480, 3), np.uint8)
        out = draw(image, frame_result(face(decision, reason="too dark" if decision == "uncertain" else None)), 25.0)
        assert out is image and has_colour(image, colour)
        assert (image[160, 100] == colour).all()  # on the box's left edge
        assert image[160, 150].sum() == 0  # the face itself is not painted over


def test_no_face_draws_only_the_status_line():
    image = np.zeros((240, 320, 3), np.uint8)
    draw(image, frame_result())
    rows = np.flatnonzero(image.any(axis=(1, 2)))
    assert rows.size and rows.max() < 40  # the status line at the top, nothing else


def test_boxes_partly_outside_the_frame_do_not_fail():
    image = np.zeros((120, 160, 3), np.uint8)
    draw(image, frame_result(face("real", box=(-50.0, -40.0, 90.0, 400.0))), None)
    assert has_colour(image, COLOURS["real"])
