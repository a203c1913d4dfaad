"""Fail closed by construction, on a fake detector and a fake liveness model (no data, no model files).

Faces are textured squares drawn on a grey frame: a "real" face is red-tinted, a "spoof" blue-tinted, and each
identity has its own texture, so the appearance signature can tell them apart. The fake model reads the tint.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from liveness_edge.runtime.preprocessing import Preprocessing
from liveness_edge.runtime.smoothing import SmoothingOptions
from liveness_edge.runtime.types import Face, RunningMode

SIDE = 120
H, W = 480, 640


def texture(seed: int, tint: str) -> np.ndarray:
    """A face stand-in: smooth random blobs (a stable appearance per seed) plus a red or blue cast."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (6, 6, 3)).astype(np.float32)
    img = np.kron(coarse, np.ones((SIDE // 6, SIDE // 6, 1), np.float32))
    img += rng.normal(0, 12, img.shape)
    img[..., 2 if tint == "red" else 0] += 50  # BGR
    return np.clip(img, 0, 255).astype(np.uint8)


def frame_with(*faces: tuple[np.ndarray, tuple[int, int]]) -> np.ndarray:
    frame = np.full((H, W, 3), 128, np.uint8)
    for img, (x, y) in faces:
        frame[y : y + SIDE, x : x + SIDE] = img
    return frame


class ScriptedDetector:
    """Returns the boxes it is given for each frame, in order."""

    def __init__(self, boxes_per_frame: list[list[tuple[int, int]]]) -> None:
        self.frames = iter(boxes_per_frame)
        self.calls = 0

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        self.calls += 1
        return [Face((x, y, x + SIDE, y + SIDE), 0.9, np.zeros((6, 2), np.float32)) for x, y in next(self.frames)]


class TintModel:
    """P(real) from the centre of the crop (the face): ``real_p`` when redder than blue, else ``spoof_p``."""

    preprocessing = Preprocessing(size=48, context=1.5)

    def __init__(self, threshold: float = 0.5, real_p: float = 0.9, spoof_p: float = 0.1) -> None:
        self.threshold, self.real_p, self.spoof_p = threshold, real_p, spoof_p

    def predict(self, crop_bgr: np.ndarray) -> float:
        c = crop_bgr[16:32, 16:32].reshape(-1, 3).mean(axis=0)
        return self.real_p if c[2] > c[0] else self.spoof_p


def pipeline(boxes, model=None, **options) -> LivenessPipeline:
    return LivenessPipeline(ScriptedDetector(boxes), model or TintModel(), PipelineOptions(**options))


@pytest.mark.parametrize("same_texture", [False, True], ids=["other-face", "photo-of-the-same-face"])
def test_real_face_replaced_by_a_spoof_in_the_same_box_is_never_real_after(same_texture):
    """The door case: the spoof's own P(real) (0.42) sits under the threshold (0.46) but inside the band, so a
    smoothed score inherited from the real face would have stayed `real`."""
    real, spoof = texture(1, "red"), texture(1 if same_texture else 2, "blue")
    box = (260, 180)
    frames = [frame_with((real, box))] * 10 + [frame_with((spoof, box))] * 15
    model = TintModel(threshold=0.46, real_p=0.9, spoof_p=0.42)
    pipe = pipeline([[box]] * len(frames), model, running_mode=RunningMode.VIDEO)
    results = [pipe.process(f) for f in frames]
    before, after = [r.faces[0] for r in results[:10]], [r.faces[0] for r in results[10:]]
    assert before[-1].decision == "real"
    assert all(f.decision != "real" for f in after)
    assert (after[0].track != before[0].track) == (not same_texture)  # a different face is cut: new track
    if same_texture:  # not cut: the inherited smoothed score alone would have said real
        assert any(f.p_real_smoothed >= model.threshold for f in after)


def test_a_box_jump_cuts_the_track_even_with_the_same_face():
    face = texture(3, "red")
    small, big = (200, 150), (150, 100)
    pipe = pipeline([[small]] * 4 + [[big]], running_mode=RunningMode.VIDEO)
    for _ in range(4):
        first = pipe.process(frame_with((face, small))).faces[0]
    grown = frame_with((face, small))
    grown[100:100 + 2 * SIDE, 150:150 + 2 * SIDE] = np.kron(face, np.ones((2, 2, 1), np.uint8))
    pipe.detector.frames = iter([[]])
    pipe.detector.detect = lambda f: [Face((150, 100, 150 + 2 * SIDE, 100 + 2 * SIDE), 0.9, np.zeros((6, 2)))]
    jumped = pipe.process(grown).faces[0]
    assert first.decision == "real" and jumped.track != first.track
    assert jumped.decision == "uncertain" and jumped.reason.startswith("track warming up")


def test_two_faces_crossing_keep_their_own_tracks_and_decisions():
    """A real and a spoof face pass each other (56 px per frame, 112 px apart vertically, the front one hiding
    a strip of the other): each keeps one track id and its own decision on every frame. (A larger occlusion
    changes the hidden face's signature enough to cut its track: a fresh, fail-closed start.)"""
    real, spoof = texture(4, "red"), texture(5, "blue")
    a_pos = [(40 + 56 * k, 120) for k in range(9)]
    b_pos = [(40 + 56 * 8 - 56 * k, 232) for k in range(9)]
    frames = [frame_with((spoof, b), (real, a)) for a, b in zip(a_pos, b_pos)]
    pipe = pipeline([[a, b] for a, b in zip(a_pos, b_pos)], running_mode=RunningMode.VIDEO,
                    smoothing=SmoothingOptions(min_track_age=1))
    tracks: dict[str, set[int]] = {"real": set(), "spoof": set()}
    for k, frame in enumerate(frames):
        for face in pipe.process(frame).faces:
            who = "real" if face.box[:2] == a_pos[k] else "spoof"
            tracks[who].add(face.track)
            assert face.decision == who, (k, who, face)
    assert len(tracks["real"]) == 1 and len(tracks["spoof"]) == 1 and tracks["real"] != tracks["spoof"]


def test_still_images_through_the_api_stand_alone():
    """The reported reproduction: a real photo, then a printed-photo spoof (P(real) 0.039 on its own) in an
    overlapping box. Default options are image mode: no reset() to remember, no borrowed history."""
    model = TintModel(threshold=0.46, real_p=0.9, spoof_p=0.039)
    pipe = pipeline([[(250, 170)], [(262, 180)]], model)
    assert pipe.options.running_mode == RunningMode.IMAGE
    real = pipe.process(frame_with((texture(6, "red"), (250, 170)))).faces[0]
    spoof = pipe.process(frame_with((texture(7, "blue"), (262, 180)))).faces[0]
    assert (real.decision, spoof.decision) == ("real", "spoof")
    assert spoof.p_real_smoothed == spoof.p_real == pytest.approx(0.039) and spoof.track == 1


def test_image_mode_detects_every_call_and_ignores_detect_every():
    pipe = pipeline([[(100, 100)]] * 3, detect_every=5)
    for _ in range(3):
        assert pipe.process(frame_with((texture(8, "red"), (100, 100)))).faces[0].decision == "real"
    assert pipe.detector.calls == 3


@pytest.mark.parametrize("mode", [RunningMode.VIDEO, RunningMode.LIVE_STREAM])
def test_video_modes_need_increasing_frame_numbers(mode):
    pipe = pipeline([[]] * 4, running_mode=mode)
    pipe.process(frame_with(), frame_index=5)
    pipe.process(frame_with(), frame_index=9)  # gaps are fine (dropped frames)
    with pytest.raises(ValueError, match="increasing frame numbers"):
        pipe.process(frame_with(), frame_index=9)


def test_max_faces_keeps_the_largest_and_each_face_is_scored():
    pipe = pipeline([[(20, 20), (300, 200)]], max_faces=1)
    result = pipe.process(frame_with((texture(9, "blue"), (20, 20)), (texture(10, "red"), (300, 200))))
    assert len(result.faces) == 1
    assert replace(result.faces[0], p_real_smoothed=0).box[0] == 20  # equal sizes: the first stays (stable sort)


def test_threshold_comes_from_the_model():
    pipe = pipeline([[]], TintModel(threshold=0.3))
    assert pipe.threshold == 0.3 and pipe.band == pytest.approx((0.25, 0.35))


def test_several_faces_each_decided_on_its_own():
    boxes = [(20, 20), (200, 20), (380, 20), (20, 250), (200, 250)]
    tints = ["red", "blue", "red", "blue", "blue"]
    frame = frame_with(*((texture(20 + i, t), b) for i, (t, b) in enumerate(zip(tints, boxes))))
    result = pipeline([boxes]).process(frame)
    assert [f.decision for f in result.faces] == ["real" if t == "red" else "spoof" for t in tints]
    assert [f.track for f in result.faces] == [1, 2, 3, 4, 5]


def test_detect_every_carries_boxes_between_detections_in_video_mode():
    box = (200, 150)
    pipe = pipeline([[box]] * 3, running_mode=RunningMode.VIDEO, detect_every=3)
    results = [pipe.process(frame_with((texture(30, "red"), box))) for _ in range(9)]
    assert pipe.detector.calls == 3  # frames 0, 3, 6
    assert {f.track for r in results for f in r.faces} == {1}
    assert [r.faces[0].decision for r in results] == ["uncertain"] * 2 + ["real"] * 7


@pytest.mark.parametrize(
    "box, frame_change, quality, reason",
    [
        ((200, 150), None, {"min_face_px": 500.0}, "face too small"),
        ((-60, 150), None, {}, "face cut by the frame edge"),
        ((200, 150), lambda f: (f // 8), {}, "too dark"),
        ((200, 150), lambda f: np.full_like(f, 128), {}, "too blurred"),
    ],
)
def test_quality_checks_make_a_face_uncertain(box, frame_change, quality, reason):
    from liveness_edge.runtime.quality import QualityOptions

    x, y = box
    frame = frame_with((texture(40, "red"), (max(x, 0), y)))
    if x < 0:  # the face leaves the frame on the left: only part of it is in the picture
        frame = np.ascontiguousarray(frame[:, -x:])
        frame = np.pad(frame, ((0, 0), (0, -x), (0, 0)))
    frame = frame_change(frame) if frame_change else frame
    pipe = pipeline([[box]], quality=QualityOptions(**quality))
    (face,) = pipe.process(frame).faces
    assert face.decision == "uncertain" and face.reason.startswith(reason)
