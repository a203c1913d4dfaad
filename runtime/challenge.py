"""Active liveness: ask for random actions (blink, turn left/right, look up/down) and watch the landmarks.

Signals per frame, from the 468-point face mesh (``runtime/landmarks.py``):
- eye openness per eye: the eye aspect ratio (EAR, Soukupova & Cech 2016: the two lid-to-lid distances over
  twice the corner-to-corner distance) divided by that eye's own open baseline, the 90th percentile of its
  EAR over the track's recent frontal frames; ~1 open, ~0.2-0.4 shut, whatever the person's eye shape;
- yaw and pitch in degrees: the nose tip's offset between the two cheek contour points (yaw) or the forehead
  and chin points (pitch), measured along the face's own eye axis, as ``atan((a - b) / (a + b))`` (exact
  for points on a cylinder turning about its axis), divided by the gain that reading has when the face mesh
  of a frontal sample face is turned in 3D by known angles (yaw reads 1.35x, the nose stands out of the
  cylinder; pitch 0.43x, forehead and chin turn with the nose), minus the track's pose at the start.
Events come from these with hysteresis (closed below one level, open again above a higher one), and the
``Challenge`` state machine turns events into pass / fail. The passive path never runs any of this.
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from .landmarks import (CHIN, FOREHEAD, LEFT_CHEEK, LEFT_EYE, NOSE_TIP, RIGHT_CHEEK, RIGHT_EYE, LandmarkModel,
                        Landmarks)
from .types import FaceResult

ACTIONS = ("blink", "left", "right", "up", "down")
DEFAULT_ACTIONS = ("blink", "left", "right")
MAX_ACTIONS = 20
PROMPTS = {"blink": "blink", "left": "turn your head to your left", "right": "turn your head to your right",
           "up": "look up", "down": "look down"}

# Why a challenge failed.
TIMEOUT = "timeout"  # the current action was not done within the timeout (or no usable face at the start)
WRONG_ACTION = "wrong_action"  # another turn of the challenge's set than the one asked for (blinks and turns
# outside the set are never wrong: people blink and nod)
TRACK_LOST = "track_lost"  # another track replaced the one that started the challenge
MULTIPLE_FACES = "multiple_faces"  # more than one face in view after the challenge started
SPOOF = "spoof"  # the passive decision of the challenged face was spoof
ENDED = "ended"  # the source ended (or the run stopped) before the challenge was decided
NOT_REAL = "not_real"  # actions done, but the passive decision was not `real` on most frames or after the last one
REASONS = (TIMEOUT, WRONG_ACTION, TRACK_LOST, MULTIPLE_FACES, SPOOF, ENDED)
YAW_GAIN, PITCH_GAIN = 1.35, 0.43  # geometry reading / true angle, 10-40 degrees (tests/test_challenge.py)


@dataclass(frozen=True)
class SignalOptions:
    """Event thresholds. Openness is relative to the eye's own open baseline; angles are degrees from the pose
    at the start. Eyes are only judged (baseline and closing) within ``blink_max_yaw/pitch_deg`` of that pose:
    turned or lowered heads squint. How the values were chosen: README, "Active challenge"."""

    close_below: float = 0.5
    open_above: float = 0.75
    turn_on_deg: float = 15.0
    turn_off_deg: float = 7.0
    pitch_on_deg: float = 20.0
    pitch_off_deg: float = 10.0
    blink_max_yaw_deg: float = 10.0
    blink_max_pitch_deg: float = 20.0
    baseline_frames: int = 60
    calibration_frames: int = 5
    min_presence: float = 0.5


@dataclass(frozen=True)
class Signals:
    """One frame's signals for one face (openness None until the baseline exists)."""

    ear_right: float
    ear_left: float
    open_right: float | None
    open_left: float | None
    yaw_deg: float
    pitch_deg: float


def eye_aspect_ratio(points: np.ndarray, eye: tuple[int, ...]) -> float:
    """(|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) on the x, y of the six eye points."""
    p = points[list(eye), :2].astype(np.float64)
    width = np.linalg.norm(p[0] - p[3])
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * max(width, 1e-6)))


def _offset_angle(a: float, b: float) -> float:
    return math.degrees(math.atan((a - b) / max(a + b, 1e-6)))


def head_pose(points: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees; yaw > 0 turned to the person's left, pitch > 0 looking up (unmirrored image)."""
    p = points[:, :2].astype(np.float64)
    axis = p[LEFT_EYE[0]] - p[RIGHT_EYE[0]]
    u = axis / max(np.linalg.norm(axis), 1e-6)
    v = np.array([-u[1], u[0]])  # towards the chin
    nose = p[NOSE_TIP]
    yaw = _offset_angle(float((nose - p[RIGHT_CHEEK]) @ u), float((p[LEFT_CHEEK] - nose) @ u))
    pitch = _offset_angle(float((p[CHIN] - nose) @ v), float((nose - p[FOREHEAD]) @ v))
    return yaw / YAW_GAIN, pitch / PITCH_GAIN


class SignalTracker:
    """Per-track signals and events: open-eye baselines, start pose, and hysteresis states."""

    def __init__(self, options: SignalOptions = SignalOptions()) -> None:
        self.options = options
        self._ears: tuple[deque, deque] = (deque(maxlen=options.baseline_frames),
                                           deque(maxlen=options.baseline_frames))
        self._start_poses: list[tuple[float, float]] = []
        self.start_pose: tuple[float, float] | None = None
        self.eyes_closed = False
        self.turns: dict[str, str | None] = {"yaw": None, "pitch": None}  # held until the head comes back

    @property
    def calibrated(self) -> bool:
        return self.start_pose is not None

    def update(self, points: np.ndarray) -> tuple[Signals, list[str]]:
        """Signals of this frame and the events they complete (``blink``, ``left``, ...)."""
        o = self.options
        ears = (eye_aspect_ratio(points, RIGHT_EYE), eye_aspect_ratio(points, LEFT_EYE))
        yaw, pitch = head_pose(points)
        if self.start_pose is None:
            self._start_poses.append((yaw, pitch))
            if len(self._start_poses) >= o.calibration_frames:
                self.start_pose = tuple(np.median(np.array(self._start_poses), axis=0).tolist())
        y0, p0 = self.start_pose or (yaw, pitch)
        yaw, pitch = yaw - y0, pitch - p0
        frontal = abs(yaw) < o.blink_max_yaw_deg and abs(pitch) < o.blink_max_pitch_deg
        if frontal:
            for history, ear in zip(self._ears, ears):
                history.append(ear)
        ready = self.calibrated and len(self._ears[0]) >= o.calibration_frames
        opens = [ear / max(float(np.percentile(h, 90)), 1e-6) if ready else None for h, ear in zip(self._ears, ears)]
        signals = Signals(ears[0], ears[1], opens[0], opens[1], yaw, pitch)
        return signals, self._events(signals, frontal) if ready else []

    def _events(self, s: Signals, frontal: bool) -> list[str]:
        o = self.options
        events = []
        if not self.eyes_closed and frontal and max(s.open_right, s.open_left) < o.close_below:
            self.eyes_closed = True
        elif self.eyes_closed and (s.open_right + s.open_left) / 2.0 > o.open_above:
            self.eyes_closed = False
            events.append("blink")
        for axis, value, on, off, names in (("yaw", s.yaw_deg, o.turn_on_deg, o.turn_off_deg, ("left", "right")),
                                            ("pitch", s.pitch_deg, o.pitch_on_deg, o.pitch_off_deg, ("up", "down"))):
            if self.turns[axis] is None and abs(value) > on:
                self.turns[axis] = names[0] if value > 0 else names[1]
                events.append(self.turns[axis])
            elif self.turns[axis] is not None and abs(value) < off:
                self.turns[axis] = None
        return events


@dataclass(frozen=True)
class ChallengeOptions:
    """``count`` actions (default: as many as in ``actions``) drawn from ``actions``, no action twice in a
    row; each must be done within ``timeout_s`` of being asked (the first also includes finding the face)."""

    actions: tuple[str, ...] = DEFAULT_ACTIONS
    count: int | None = None
    timeout_s: float = 5.0
    seed: int | None = None
    signals: SignalOptions = field(default_factory=SignalOptions)

    def __post_init__(self) -> None:
        bad = [a for a in self.actions if a not in ACTIONS]
        if bad or not self.actions:
            raise ValueError(f"challenge actions must be from {','.join(ACTIONS)} (got {','.join(self.actions)})")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"challenge timeout must be a finite number of seconds > 0, not {self.timeout_s}")
        if self.count is not None and not 1 <= self.count <= MAX_ACTIONS:
            raise ValueError(f"challenge action count must be 1-{MAX_ACTIONS}, not {self.count}")

    def draw(self) -> tuple[str, ...]:
        """The random sequence: a shuffle of the set, continued without immediate repeats if longer."""
        rng = random.Random(self.seed)
        pool = list(dict.fromkeys(self.actions))
        n = self.count or len(pool)
        seq = rng.sample(pool, min(n, len(pool)))
        while len(seq) < n:
            seq.append(rng.choice([a for a in pool if a != seq[-1]] or pool))
        return tuple(seq)


@dataclass(frozen=True)
class ChallengeResult:
    """How the challenge ended. ``times_s``: seconds from each prompt to its action (None: not done)."""

    passed: bool
    reason: str | None
    actions: tuple[str, ...]
    times_s: tuple[float | None, ...]
    track: int | None
    duration_s: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["actions"], d["times_s"] = list(self.actions), [None if t is None else round(t, 3) for t in self.times_s]
        d["duration_s"] = round(self.duration_s, 3)
        return d


@dataclass(frozen=True)
class ChallengeStatus:
    """What the challenge says after one frame: ``state`` is waiting (no face yet), action, passed or
    failed; ``prompt`` is what to tell the person; ``events`` what the challenged face did this frame."""

    state: str
    prompt: str
    action: str | None
    index: int
    remaining_s: float | None
    events: tuple[str, ...] = ()
    signals: Signals | None = None
    result: ChallengeResult | None = None

    def to_dict(self) -> dict:
        d = {"state": self.state, "prompt": self.prompt, "action": self.action, "index": self.index,
             "remaining_s": None if self.remaining_s is None else round(self.remaining_s, 2),
             "events": list(self.events)}
        if self.signals is not None:
            d["signals"] = {k: None if v is None else round(v, 3) for k, v in asdict(self.signals).items()}
        if self.result is not None:
            d["result"] = self.result.to_dict()
        return d


class Challenge:
    """The state machine. Feed it every frame: ``update(t, faces, landmarks)`` with ``t`` in seconds,
    the pipeline's faces and the landmarks of the tracks that have them. The first face seen alone is the
    one challenged; it must do every action in order, stay the same track, stay alone, never be ``spoof``, and
    be ``real`` on at least half of its scored frames and on a frame after the last action (within the
    timeout): a face the passive model only ever called ``uncertain`` (a mask in dim light) does not pass."""

    def __init__(self, options: ChallengeOptions = ChallengeOptions()) -> None:
        self.options = options
        self.actions = options.draw()
        self.track: int | None = None
        self.signals = SignalTracker(options.signals)
        self.index = 0
        self.times: list[float | None] = [None] * len(self.actions)
        self.result: ChallengeResult | None = None
        self._t0: float | None = None
        self._asked: float | None = None
        self._scored = self._real = 0

    @property
    def done(self) -> bool:
        return self.result is not None

    def update(self, t: float, faces: list[FaceResult], landmarks: dict[int, Landmarks]) -> ChallengeStatus:
        if self.result is not None:
            return self._status(t)
        if self._t0 is None:
            self._t0 = self._asked = t
        if self.track is None:
            if len(faces) == 1:
                self.track = faces[0].track
            elif t - self._asked > self.options.timeout_s:
                return self._finish(t, TIMEOUT)
            else:
                return self._status(t, prompt="one face, please" if faces else "look at the camera")
        if len(faces) > 1:
            return self._finish(t, MULTIPLE_FACES)
        if faces and faces[0].track != self.track:
            return self._finish(t, TRACK_LOST)
        if faces and faces[0].decision == "spoof":
            return self._finish(t, SPOOF)
        if faces:
            self._scored += 1
            self._real += faces[0].decision == "real"
        if self.index == len(self.actions):  # every action done: waiting for the passive model to agree
            if faces and faces[0].decision == "real" and 2 * self._real >= self._scored:
                return self._finish(t, None)
            if t - self._asked > self.options.timeout_s:
                return self._finish(t, NOT_REAL)
            return self._status(t, prompt="hold still, facing the camera")
        signals, events = None, []
        marks = landmarks.get(self.track)
        if faces and marks is not None and marks.presence >= self.options.signals.min_presence:
            was_calibrated = self.signals.calibrated
            signals, events = self.signals.update(marks.points)
            if self.signals.calibrated and not was_calibrated:
                self._asked = t  # the first action's time starts once the face is measured
        for event in events:
            expected = self.actions[self.index]
            if event == expected:
                self.times[self.index] = t - self._asked
                self.index += 1
                self._asked = t
                if self.index == len(self.actions):
                    if faces[0].decision == "real" and 2 * self._real >= self._scored:
                        return self._finish(t, None, tuple(events), signals)
                    return self._status(t, tuple(events), signals, prompt="hold still, facing the camera")
            elif event != "blink" and event in self.options.actions:
                return self._finish(t, WRONG_ACTION, tuple(events), signals)
        if t - self._asked > self.options.timeout_s:
            return self._finish(t, TIMEOUT, tuple(events), signals)
        return self._status(t, tuple(events), signals)

    def stop(self, t: float) -> ChallengeStatus:
        """End an undecided challenge (the source ran out): failed, ``ended``."""
        return self._status(t) if self.result is not None else self._finish(t, ENDED)

    def _finish(self, t: float, reason: str | None, events: tuple[str, ...] = (),
                signals: Signals | None = None) -> ChallengeStatus:
        self.result = ChallengeResult(reason is None, reason, self.actions, tuple(self.times), self.track,
                                      t - (self._t0 if self._t0 is not None else t))
        return self._status(t, events, signals)

    def _status(self, t: float, events: tuple[str, ...] = (), signals: Signals | None = None,
                prompt: str | None = None) -> ChallengeStatus:
        if self.result is not None:
            r = self.result
            return ChallengeStatus("passed" if r.passed else "failed",
                                   "challenge passed" if r.passed else f"challenge failed: {r.reason}",
                                   None, self.index, None, events, signals, r)
        remaining = self.options.timeout_s - (t - self._asked)
        if self.track is None or not self.signals.calibrated or self.index == len(self.actions):
            return ChallengeStatus("waiting", prompt or "look at the camera", None, self.index, remaining, events,
                                   signals)
        action = self.actions[self.index]
        return ChallengeStatus("action", PROMPTS[action], action, self.index, remaining, events, signals)


class ActiveChallenge:
    """A ``Challenge`` plus the landmark models, run on the pipeline's tracked face while it is undecided."""

    def __init__(self, landmarks: LandmarkModel, options: ChallengeOptions = ChallengeOptions()) -> None:
        self.model = landmarks
        self.challenge = Challenge(options)

    @property
    def done(self) -> bool:
        return self.challenge.done

    @property
    def result(self) -> ChallengeResult | None:
        return self.challenge.result

    def update(self, frame_bgr: np.ndarray, faces: list[FaceResult], t: float) -> ChallengeStatus:
        """Landmarks of the one face in view (none with two: that fails anyway), then the state machine."""
        marks = {}
        if not self.challenge.done and len(faces) == 1:
            marks = {faces[0].track: self.model.predict(frame_bgr, faces[0].box)}
        return self.challenge.update(t, faces, marks)

    def stop(self, t: float) -> ChallengeStatus:
        return self.challenge.stop(t)
