"""End to end: ``liveness-edge --video ... --challenge`` on a real clip and on a printed photo moved in front
of a synthetic camera, plus the signals on every frame of both."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.challenge import (SPOOF, TIMEOUT, WRONG_ACTION, Challenge, ChallengeOptions,
                                             SignalTracker)
from liveness_edge.runtime.cli import CHALLENGE_FAILED_EXIT, main
from liveness_edge.runtime.detector import FaceDetector
from liveness_edge.runtime.landmarks import LandmarkModel
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from liveness_edge.runtime.types import FaceResult

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "artifacts" / "samples" / "spoof" / "image_F1.jpg"  # a printed photo, photographed
CLIP = Path("jomariya") / "videos" / "real" / "real_1.mp4"
pytestmark = pytest.mark.usefixtures("restore_logging")  # these tests call the CLI's main in-process


def printed_photo_video(photo: np.ndarray, path: Path, seconds: float = 6.0, fps: float = 30.0,
                        size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """The photo held in front of a camera: moved around, scaled, rolled +-8 degrees and turned +-25 degrees
    about its vertical axis (perspective), over a plain room, with sensor noise and light flicker."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    room = np.stack([90 + 60 * xx / w, 110 + 40 * yy / h, 130 - 30 * xx / w], axis=2).astype(np.uint8)
    cv2.rectangle(room, (40, 300), (200, 470), (60, 80, 100), -1)
    ph, pw = photo.shape[:2]
    corners = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(int(seconds * fps)):
        t = i / fps
        s = 300.0 / max(ph, pw) * (1.0 + 0.1 * math.sin(2 * math.pi * t / 3.0))
        cx, cy = w / 2 + 60 * math.sin(2 * math.pi * t / 4.0), h / 2 + 25 * math.sin(2 * math.pi * t / 2.5)
        roll, tilt = math.radians(8 * math.sin(2 * math.pi * t / 5.0)), math.radians(25 * math.sin(math.pi * t))
        x, y = ((corners - [pw / 2, ph / 2]) * s).T
        depth = 700.0 / (700.0 + x * math.sin(tilt))
        x, y = x * math.cos(tilt) * depth, y * depth
        x, y = x * math.cos(roll) - y * math.sin(roll), x * math.sin(roll) + y * math.cos(roll)
        H = cv2.getPerspectiveTransform(corners, np.float32(np.stack([x + cx, y + cy], axis=1)))
        frame = room.copy()
        inside = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), H, size) > 0
        frame[inside] = cv2.warpPerspective(photo, H, size)[inside]
        noisy = frame * (1.0 + 0.03 * math.sin(2 * math.pi * t)) + rng.normal(0, 3, frame.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return path


def frame_signals(video: Path, challenges: tuple[Challenge, ...] = ()) -> list[tuple[int, list[str], float]]:
    """(frame, events, lower eye openness) of the largest face on every frame, detector + landmarks only;
    ``challenges`` are fed the same landmarks as if the passive decision were always ``real``."""
    detector, landmarks, tracker = FaceDetector.from_file(), LandmarkModel.from_file(), SignalTracker()
    capture = cv2.VideoCapture(str(video))
    out, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        faces = detector.detect(frame)
        if faces:
            face = max(faces, key=lambda f: f.width)
            marks = landmarks.predict(frame, face.box, face.keypoints)
            signals, events = tracker.update(marks.points)
            out.append((index, events, min(signals.open_right or 1.0, signals.open_left or 1.0)))
            seen = FaceResult(1, face.box, face.score, 0.9, 0.9, "real")
            for challenge in challenges:
                if not challenge.done:
                    challenge.update(index / capture.get(cv2.CAP_PROP_FPS), [seen], {1: marks})
        index += 1
    capture.release()
    return out


def challenge_lines(jsonl: Path) -> list[dict]:
    return [r["challenge"] for r in map(json.loads, jsonl.read_text().splitlines()) if r.get("challenge")]


def test_a_printed_photo_never_passes_a_blink(tmp_path):
    video = printed_photo_video(cv2.imread(str(PHOTO)), tmp_path / "photo.mp4")
    fooled = Challenge(ChallengeOptions(actions=("blink",), timeout_s=4.0))  # as if the passive model said real
    signals = frame_signals(video, (fooled,))
    assert len(signals) == 180  # the photo's face is found in every frame
    assert [e for _, events, _ in signals for e in events] == []  # no blink, and no turn from the tilting
    assert min(o for _, _, o in signals) > 0.8
    assert fooled.result.reason == TIMEOUT
    jsonl = tmp_path / "photo.jsonl"
    code = main(["--video", str(video), "--challenge", "blink", "--challenge-timeout", "4", "--jsonl", str(jsonl),
                 "--no-display", "--quiet"])
    assert code == CHALLENGE_FAILED_EXIT
    lines = challenge_lines(jsonl)
    result = lines[-1]["result"]
    assert not result["passed"] and result["reason"] in (TIMEOUT, SPOOF)
    assert not any("blink" in line["events"] for line in lines)


def test_without_a_challenge_the_passive_path_is_unchanged():
    pipeline = LivenessPipeline.from_manifest(options=PipelineOptions(running_mode="video"))
    frame = cv2.resize(cv2.imread(str(PHOTO)), (480, 640))
    result = pipeline.process(frame, frame_index=0)
    assert result.faces and result.challenge is None and result.times.landmarks == 0.0
    assert pipeline._landmarks is None  # the landmark models were never even loaded
    pipeline.start_challenge(ChallengeOptions(actions=("blink",), timeout_s=1.0))
    result = pipeline.process(frame, frame_index=1, timestamp_s=0.0)
    assert result.challenge.state == "waiting" and result.times.landmarks > 0
    assert pipeline.process(frame, frame_index=2, timestamp_s=5.0).challenge.result.reason in (TIMEOUT, SPOOF)
    assert pipeline.process(frame, frame_index=3, timestamp_s=5.1).challenge is None  # decided: landmarks stop


def test_a_challenge_needs_a_video_mode():
    pipeline = LivenessPipeline.from_manifest()
    with pytest.raises(ValueError, match="one picture cannot blink"):
        pipeline.start_challenge()


def test_challenge_with_image_is_a_usage_error(capsys):
    assert main(["--image", str(PHOTO), "--challenge"]) == 2
    assert "challenge" in capsys.readouterr().err


@pytest.mark.slow
def test_jomariya_real_clip(shared_data, tmp_path):
    """A hand-held selfie video of one young man: the signals see his turns and his blink, and the recording,
    which turns when it turns, fails every order of a blink/left/right challenge."""
    clip = shared_data / CLIP
    orders = {}
    for seed in range(100):  # one challenge per order of the three actions
        orders.setdefault(ChallengeOptions(timeout_s=10.0, seed=seed).draw(), seed)
    fooled = tuple(Challenge(ChallengeOptions(timeout_s=10.0, seed=seed)) for seed in orders.values())
    signals = frame_signals(clip, fooled)  # as if the passive model said real throughout
    events = {e: [i for i, ev, _ in signals if e in ev] for e in ("blink", "left", "right")}
    assert len(signals) == 800
    assert any(595 <= i <= 610 for i in events["blink"])  # the one clearly visible blink (frames 598-600)
    assert events["left"] and events["right"]
    assert len(fooled) == 6 and all(c.result.reason == WRONG_ACTION for c in fooled)
    jsonl = tmp_path / "clip.jsonl"
    code = main(["--video", str(clip), "--challenge", "blink,left,right", "--challenge-timeout", "10",
                 "--challenge-seed", "0", "--jsonl", str(jsonl), "--no-display", "--quiet"])
    assert code == CHALLENGE_FAILED_EXIT
    lines = challenge_lines(jsonl)
    assert lines[-1]["result"]["reason"] == WRONG_ACTION
    assert {line["result"]["track"] for line in lines if "result" in line} == {1}


def test_a_camera_with_nobody_in_front_times_out_on_the_clock(monkeypatch, capsys, tmp_path):
    from runtime_helpers import FakeCapture

    from liveness_edge.runtime import cli
    from liveness_edge.runtime.sources import CameraSource

    monkeypatch.setattr(cli, "open_source", lambda spec: CameraSource(0, capture_factory=lambda i: FakeCapture()))
    jsonl = tmp_path / "cam.jsonl"
    code = main(["--camera", "0", "--challenge", "--challenge-timeout", "0.3", "--jsonl", str(jsonl), "--no-display"])
    assert code == CHALLENGE_FAILED_EXIT  # the live source never ends: only the wall-clock timeout stops it
    assert "challenge failed: timeout (asked" in capsys.readouterr().err
    lines = challenge_lines(jsonl)
    assert [line["state"] for line in lines[:-1]] == ["waiting"] * (len(lines) - 1)
    assert lines[0]["prompt"] == "look at the camera" and lines[-1]["result"]["reason"] == TIMEOUT
