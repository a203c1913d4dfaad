"""Signals, events and the challenge state machine on synthetic landmark sequences.

The sequences are made from one real face mesh (a shipped sample face), turned in 3D with its own depth and
with its eyelids pulled towards the eye's corner line, so the geometry is a face's, the motion scripted.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.challenge import (ENDED, MULTIPLE_FACES, NOT_REAL, SPOOF, TIMEOUT, TRACK_LOST, WRONG_ACTION, Challenge,
                                             ChallengeOptions, SignalTracker, eye_aspect_ratio, head_pose)
from liveness_edge.runtime.detector import FaceDetector
from liveness_edge.runtime.landmarks import EYE_CONTOURS, EYE_CORNERS, LEFT_EYE, RIGHT_EYE, LandmarkModel, Landmarks
from liveness_edge.runtime.types import FaceResult

REPO = Path(__file__).resolve().parent.parent
FPS = 30.0


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    image = cv2.imread(str(REPO / "artifacts" / "samples" / "real" / "image_T2.jpg"))  # a frontal face
    face = FaceDetector.from_file().detect(image)[0]
    points = LandmarkModel.from_file().predict(image, face.box, face.keypoints).points
    return points - points.mean(axis=0)


def pose(template: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, openness: float = 1.0,
         rng: np.random.Generator | None = None) -> np.ndarray:
    """The template with eyelids at ``openness`` of their opening, turned by yaw/pitch degrees (orthographic)."""
    p = template.copy()
    for contour, (a, b) in zip(EYE_CONTOURS, EYE_CORNERS):
        u = (p[b, :2] - p[a, :2]) / np.linalg.norm(p[b, :2] - p[a, :2])
        n = np.array([-u[1], u[0]])
        idx = list(contour)
        offset = (p[idx, :2] - p[a, :2]) @ n
        p[idx, :2] -= np.outer(offset * (1.0 - openness), n)
    y, t = np.radians(yaw), np.radians(pitch)
    x, yy, z = p[:, 0].copy(), p[:, 1].copy(), p[:, 2].copy()
    x, z = x * np.cos(y) - z * np.sin(y), x * np.sin(y) + z * np.cos(y)
    yy, z = yy * np.cos(t) + z * np.sin(t), -yy * np.sin(t) + z * np.cos(t)
    out = np.stack([x + 320.0, yy + 240.0, z], axis=1)
    if rng is not None:
        out[:, :2] += rng.normal(0.0, 0.3, (len(out), 2))
    return out.astype(np.float32)


class Script:
    """A timed sequence of frames; each frame: landmarks plus who is in view and the passive decision."""

    def __init__(self, template: np.ndarray, seed: int = 0) -> None:
        self.template = template
        self.rng = np.random.default_rng(seed)
        self.frames: list[dict] = []

    def _add(self, **kw) -> None:
        pose_kw = {k: kw.pop(k) for k in ("yaw", "pitch", "openness") if k in kw}
        self.frames.append({"points": pose(self.template, rng=self.rng, **pose_kw), **kw})

    def hold(self, seconds: float, **kw) -> "Script":
        for _ in range(int(round(seconds * FPS))):
            self._add(**kw)
        return self

    def blink(self, **kw) -> "Script":
        for openness in (0.7, 0.4, 0.15, 0.1, 0.15, 0.4, 0.7, 0.9, 1.0):
            self._add(openness=openness, **kw)
        return self

    def turn(self, action: str, peak: float = 30.0, **kw) -> "Script":
        axis, sign = {"left": ("yaw", 1), "right": ("yaw", -1), "up": ("pitch", 1), "down": ("pitch", -1)}[action]
        ramp = np.concatenate([np.linspace(0, peak, 10), np.full(6, peak), np.linspace(peak, 0, 10)])
        for a in ramp:
            self._add(**{axis: sign * a}, **kw)
        return self

    def act(self, action: str, **kw) -> "Script":
        return self.blink(**kw) if action == "blink" else self.turn(action, **kw)


def run(challenge: Challenge, frames: list[dict]):
    """Feed the frames; returns the last status and every event the challenged face produced."""
    status, events = None, []
    for i, f in enumerate(frames):
        track = f.get("track", 1)
        box = (220.0, 120.0, 420.0, 360.0)
        faces = [FaceResult(track, box, 0.9, 0.9, 0.9, f.get("decision", "real"))]
        faces += [FaceResult(track + 100 + k, (0.0, 0.0, 90.0, 90.0), 0.8, 0.9, 0.9, "real")
                  for k in range(f.get("others", 0))]
        status = challenge.update(i / FPS, faces, {track: Landmarks(f["points"], 1.0)})
        events += status.events
        if challenge.done:
            break
    return status, events


def test_eye_aspect_ratio_and_pose_of_the_template(template):
    frontal = pose(template)
    assert 0.2 < eye_aspect_ratio(frontal, RIGHT_EYE) < 0.45 and 0.2 < eye_aspect_ratio(frontal, LEFT_EYE) < 0.45
    closed = pose(template, openness=0.1)
    assert eye_aspect_ratio(closed, RIGHT_EYE) < 0.4 * eye_aspect_ratio(frontal, RIGHT_EYE)
    yaw0, pitch0 = head_pose(frontal)
    for angle in (10, 20, 30, 40):  # the gains map the geometry's reading back to degrees within 25 %
        assert head_pose(pose(template, yaw=angle))[0] - yaw0 == pytest.approx(angle, rel=0.25)  # to the left
        assert head_pose(pose(template, yaw=-angle))[0] - yaw0 == pytest.approx(-angle, rel=0.25)
        assert head_pose(pose(template, pitch=angle))[1] - pitch0 == pytest.approx(angle, rel=0.25)  # up
        assert head_pose(pose(template, pitch=-angle))[1] - pitch0 == pytest.approx(-angle, rel=0.25)


def test_open_closed_open_is_one_blink_whatever_the_eye_size(template):
    for squint in (1.0, 0.6):  # a person with narrower eyes: the baseline is their own
        narrow = pose(template, openness=squint) - [320.0, 240.0, 0.0]
        script = Script(narrow).hold(0.5).blink().hold(0.3).blink().hold(0.3)
        tracker = SignalTracker()
        events = [e for f in script.frames for e in tracker.update(f["points"])[1]]
        assert events == ["blink", "blink"], squint


def test_half_closed_eyes_and_jitter_are_no_blink(template):
    tracker = SignalTracker()
    script = Script(template).hold(0.5)
    for openness in (0.9, 0.8, 0.7, 0.6, 0.6, 0.7, 0.8, 0.9, 1.0):  # never below close_below (0.5)
        script._add(openness=openness)
    script.hold(1.0)
    assert [e for f in script.frames for e in tracker.update(f["points"])[1]] == []


def test_yaw_ramps_give_one_event_each_with_hysteresis(template):
    tracker = SignalTracker()
    script = Script(template).hold(0.3).turn("left").hold(0.2).turn("right").hold(0.2)
    for yaw in (25, 15, 25, 15, 25, 0):  # wobbling around the on-level without coming back: still one turn
        script._add(yaw=yaw)
    events = [e for f in script.frames for e in tracker.update(f["points"])[1]]
    assert events == ["left", "right", "left"]


def test_all_actions_in_order_pass_with_per_action_times(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    script = Script(template).hold(0.4)
    for action in challenge.actions:
        script.hold(0.5).act(action)
    status, events = run(challenge, script.frames + Script(template).hold(0.5).frames)
    assert sorted(challenge.actions) == ["blink", "left", "right"]
    assert status.state == "passed" and status.result.passed and status.result.reason is None
    assert list(status.result.actions) == [e for e in events if e in challenge.actions][:3]
    assert all(0.4 < t < 2.0 for t in status.result.times_s)
    assert status.result.track == 1


def test_natural_blinks_and_nods_while_asked_to_turn_are_not_wrong(template):
    challenge = Challenge(ChallengeOptions(actions=("left", "right"), seed=1))
    script = Script(template).hold(0.4)
    for action in challenge.actions:
        script.blink().turn("down").hold(0.3).act(action)
    status, _ = run(challenge, script.frames + Script(template).hold(0.3).frames)
    assert status.result.passed


def test_too_slow_fails_with_timeout(template):
    challenge = Challenge(ChallengeOptions(timeout_s=2.0, seed=3))
    script = Script(template).hold(0.4).hold(2.5).act(challenge.actions[0])
    status, _ = run(challenge, script.frames)
    assert not status.result.passed and status.result.reason == TIMEOUT
    assert status.result.times_s == (None, None, None)


def test_wrong_order_fails(template):
    challenge = Challenge(ChallengeOptions(actions=("left", "right"), seed=0))
    first, second = challenge.actions
    status, _ = run(challenge, Script(template).hold(0.4).act(second).act(first).frames)
    assert status.result.reason == WRONG_ACTION


def test_track_cut_fails(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    script = Script(template).hold(0.4).act(challenge.actions[0]).hold(0.3, track=2).act(challenge.actions[1],
                                                                                         track=2)
    status, _ = run(challenge, script.frames)
    assert status.result.reason == TRACK_LOST and status.result.times_s[0] is not None


def test_second_face_fails(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    script = Script(template).hold(0.4).act(challenge.actions[0]).hold(0.1, others=1).act(challenge.actions[1])
    status, _ = run(challenge, script.frames)
    assert status.result.reason == MULTIPLE_FACES


def test_passive_spoof_in_the_middle_fails(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    script = Script(template).hold(0.4).act(challenge.actions[0]).hold(0.1, decision="spoof")
    for action in challenge.actions[1:]:
        script.act(action)
    status, _ = run(challenge, script.frames)
    assert status.result.reason == SPOOF


def test_a_face_never_called_real_does_not_pass(template):
    """A mask in dim light stays `uncertain` (quality checks) and never `spoof`: doing every action is not enough."""
    challenge = Challenge(ChallengeOptions(seed=3, timeout_s=2.0))
    script = Script(template).hold(0.4, decision="uncertain")
    for action in challenge.actions:
        script.hold(0.5, decision="uncertain").act(action, decision="uncertain")
    status, _ = run(challenge, script.frames + Script(template).hold(3.0, decision="uncertain").frames)
    assert not status.result.passed and status.result.reason == NOT_REAL
    assert all(t is not None for t in status.result.times_s)  # every action was done


def test_uncertain_on_the_last_turn_passes_once_the_face_is_real_again(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    script = Script(template).hold(0.4)
    for action in challenge.actions[:-1]:
        script.hold(0.5).act(action)
    script.hold(0.5).act(challenge.actions[-1], decision="uncertain")  # turned away: the model is unsure
    status, _ = run(challenge, script.frames + Script(template).hold(0.5).frames)
    assert status.result.passed


def test_a_still_photo_never_blinks(template):
    challenge = Challenge(ChallengeOptions(actions=("blink",), timeout_s=3.0))
    status, events = run(challenge, Script(template).hold(5.0).frames)  # jitter only
    assert events == [] and status.result.reason == TIMEOUT


def test_waiting_for_one_face_then_prompting(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    status, _ = run(challenge, Script(template).hold(0.1, others=1).frames)
    assert status.state == "waiting" and status.prompt == "one face, please" and not challenge.done
    status, _ = run(challenge, Script(template).hold(0.3).frames)
    assert status.state == "action" and status.action == challenge.actions[0]


def test_draw_and_option_checks():
    seqs = {ChallengeOptions(seed=s).draw() for s in range(30)}
    assert all(sorted(s) == ["blink", "left", "right"] for s in seqs) and len(seqs) > 3
    long = ChallengeOptions(actions=("left", "right"), count=6, seed=2).draw()
    assert len(long) == 6 and all(a != b for a, b in zip(long, long[1:]))
    with pytest.raises(ValueError):
        ChallengeOptions(actions=("wink",))
    for bad in (dict(timeout_s=0), dict(timeout_s=float("nan")), dict(count=0), dict(count=10**6)):
        with pytest.raises(ValueError):
            ChallengeOptions(**bad)


def test_a_source_that_ends_first_fails_with_ended(template):
    challenge = Challenge(ChallengeOptions(seed=3))
    run(challenge, Script(template).hold(0.5).frames)
    status = challenge.stop(0.5)
    assert status.state == "failed" and status.result.reason == ENDED
    assert challenge.stop(0.6).result is status.result  # a decided challenge stays decided
