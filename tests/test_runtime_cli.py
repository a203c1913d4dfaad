"""The liveness-edge command: JSONL schema, outputs, the demo, and every error as one line + exit code."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from liveness_edge.runtime import cli
from liveness_edge.runtime.errors import SourceLost
from liveness_edge.runtime.manifest import Manifest
from liveness_edge.runtime.output import display_problem
from liveness_edge.runtime.sources import CameraSource
from runtime_helpers import FakeCapture, copy_manifest, nuaa_files, runtime_manifest, write_tiny_onnx  # noqa: F401

VIDEO = "jomariya/videos/real/real_1.mp4"
FACE_KEYS = {"track", "box", "detector_score", "p_real", "p_real_smoothed", "decision", "reason"}


@pytest.fixture(autouse=True)
def restore_logging():
    """``cli.main`` configures the package logger for its process; undo that after in-process calls."""
    logger = logging.getLogger("liveness_edge")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def liveness_edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed command in a fresh process, as a user runs it."""
    cmd = [sys.executable, "-m", "liveness_edge.runtime.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": ""})


def check_schema(record: dict) -> None:
    assert set(record) == {"source", "frame", "time_ms", "faces"}
    assert isinstance(record["source"], str) and isinstance(record["frame"], int)
    assert set(record["time_ms"]) == {"capture", "detect", "liveness", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in record["time_ms"].values())
    for face in record["faces"]:
        assert set(face) == FACE_KEYS
        assert isinstance(face["track"], int) and len(face["box"]) == 4
        assert all(isinstance(v, float) for v in face["box"])
        for key in ("detector_score", "p_real", "p_real_smoothed"):
            assert isinstance(face[key], float) and 0.0 <= face[key] <= 1.0
        assert face["decision"] in ("real", "spoof", "uncertain")
        assert face["reason"] is None or isinstance(face["reason"], str)
        assert (face["reason"] is None) == (face["decision"] != "uncertain")


def one_error_line(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("liveness-edge: error: ") and text in lines[-1], proc.stderr
    assert all(ln.startswith(("liveness-edge: ", "  ")) for ln in lines), proc.stderr  # no raw native lines


@pytest.mark.data
def test_video_jsonl_schema_and_annotated_video(shared_data, runtime_manifest, tmp_path):
    jsonl, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    proc = liveness_edge("--video", str(shared_data / VIDEO), "--manifest", str(runtime_manifest),
                         "--max-frames", "12", "--jsonl", str(jsonl), "--output", str(video))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 12 and [r["frame"] for r in records] == list(range(12))
    for r in records:
        check_schema(r)
        assert r["source"] == str(shared_data / VIDEO) and len(r["faces"]) == 1
    assert records[0]["faces"][0]["decision"] == "uncertain"  # the track is warming up
    assert len({r["faces"][0]["track"] for r in records}) == 1
    assert "12 frames (12 with a face)" in proc.stderr and "median" in proc.stderr
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 12


@pytest.mark.data
def test_image_folder_to_stdout_skips_unreadable_and_saves(shared_data, runtime_manifest, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in nuaa_files(shared_data, "real", 2):
        (folder / f.name).write_bytes(f.read_bytes())
    cv2.imwrite(str(folder / "zz_no_face.png"), np.full((120, 160, 3), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    proc = liveness_edge("--image", str(folder), "--manifest", str(runtime_manifest), "--jsonl", "-",
                         "--save-dir", str(tmp_path / "annotated"))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3 and all(r["source"].startswith(str(folder)) for r in records)
    for r in records:
        check_schema(r)
    assert [len(r["faces"]) for r in records] == [1, 1, 0]
    assert all(r["faces"][0]["track"] == 1 for r in records[:2])  # each image is independent
    assert "skipping image" in proc.stderr and "broken.jpg" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == sorted(p.name for p in folder.iterdir()
                                                                                 if p.name != "broken.jpg")


def test_demo_runs_on_the_shipped_samples(runtime_manifest):
    proc = liveness_edge("--demo", "--manifest", str(runtime_manifest))
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "[sample of a" in ln]
    models = {m.name for m in Manifest.load(runtime_manifest).models}
    assert len(lines) == 4 * len(models)  # 4 images x every shipped model, results on stdout
    assert all("no face found" not in ln for ln in lines)
    assert "NOTICE.md" in proc.stderr
    assert "INFO: Created TensorFlow Lite" not in proc.stderr  # LiteRT's native chatter is hidden


def test_model_path_outside_the_manifest_needs_a_digest_or_a_loud_opt_in(runtime_manifest, tmp_path):
    size = Manifest.load(runtime_manifest).model("livenessnet", "onnx", "fp32").preprocessing.size
    own = tmp_path / "retrained.onnx"
    write_tiny_onnx(own, size, gain=0.03)
    image = str(cli.SAMPLES_DIR / "real" / "image_T1.jpg")
    base = ("--image", image, "--manifest", str(runtime_manifest), "--model", "livenessnet", "--model-path", str(own))
    one_error_line(liveness_edge(*base), 2, "--sha256, or --allow-unverified")
    proc = liveness_edge(*base, "--allow-unverified", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: " in proc.stderr and "unverified" in proc.stderr  # loud even under --quiet
    flipped = bytearray(own.read_bytes())
    digest = hashlib.sha256(flipped).hexdigest()
    flipped[len(flipped) // 2] ^= 0xFF
    own.write_bytes(bytes(flipped))
    one_error_line(liveness_edge(*base, "--sha256", digest), 3, "does not match --sha256")


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["--video", "missing.mp4"], 5, "video not found"),
        (["--camera", "63"], 5, "no camera at index 63"),
        (["--url", "http://127.0.0.1:9/video"], 5, "cannot open stream"),
        (["--image", "missing.png"], 5, "image not found"),
        (["--camera", "picam"], 5, "picamera2"),
    ],
)
def test_source_errors(args, code, text, runtime_manifest):
    one_error_line(liveness_edge(*args, "--manifest", str(runtime_manifest)), code, text)


def test_corrupt_video_and_image(tmp_path, runtime_manifest):
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 5000)
    one_error_line(liveness_edge("--video", str(tmp_path / "bad.mp4"), "--manifest", str(runtime_manifest)),
                   5, "not a video, or corrupt")
    (tmp_path / "bad.jpg").write_bytes(b"\0" * 50)
    one_error_line(liveness_edge("--image", str(tmp_path / "bad.jpg"), "--manifest", str(runtime_manifest)),
                   5, "cannot read image")


def test_model_and_manifest_errors(tmp_path, runtime_manifest):
    image = str(cli.SAMPLES_DIR / "real" / "image_T1.jpg")
    one_error_line(liveness_edge("--image", image, "--manifest", str(tmp_path / "none.json")), 4, "manifest not found")
    (tmp_path / "junk.json").write_text("{not json")
    one_error_line(liveness_edge("--image", image, "--manifest", str(tmp_path / "junk.json")), 4, "not readable JSON")
    manifest = copy_manifest(runtime_manifest, tmp_path / "copy")
    data = json.loads(manifest.read_text())
    model_file = manifest.parent / data["models"][0]["file"]
    model_file.write_bytes(model_file.read_bytes()[:100])  # truncated model
    first = data["models"][0]
    args = ["--model", first["name"], "--backend", first["format"], "--precision", first["precision"]]
    one_error_line(liveness_edge("--image", image, "--manifest", str(manifest), *args), 3, "does not match")
    data["models"][0]["sha256"] = __import__("hashlib").sha256(model_file.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))  # a matching digest, but the file is broken: the backend refuses it
    one_error_line(liveness_edge("--image", image, "--manifest", str(manifest), *args), 3, "cannot load")
    data["schema_version"] = 99
    manifest.write_text(json.dumps(data))
    one_error_line(liveness_edge("--image", image, "--manifest", str(manifest)), 4, "schema_version")


def test_output_display_and_usage_errors(tmp_path, runtime_manifest):
    image = str(cli.SAMPLES_DIR / "real" / "image_T1.jpg")
    m = ["--manifest", str(runtime_manifest)]
    one_error_line(liveness_edge("--image", image, *m, "--jsonl", str(tmp_path / "no" / "dir.jsonl")), 9,
                   "cannot write JSONL")
    one_error_line(liveness_edge("--image", image, *m, "--output", str(tmp_path / "out.gif")), 9, "use one of")
    if display_problem() is not None:
        one_error_line(liveness_edge("--image", image, *m, "--display"), 8, "cannot open a window")
    proc = liveness_edge("--video", "x.mp4", "--every", "0", *m)
    one_error_line(proc, 2, "--every must be >= 1")
    proc = liveness_edge("--video", "x.mp4", "--image", "y.png")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr and "Traceback" not in proc.stderr


def fake_camera_source(monkeypatch, capture: FakeCapture) -> None:
    monkeypatch.setattr(cli, "open_source", lambda spec: CameraSource(0, capture_factory=lambda i: capture))


def test_camera_unplugged_mid_run_exit_7_and_outputs_complete(monkeypatch, capsys, tmp_path, runtime_manifest):
    fake_camera_source(monkeypatch, FakeCapture(frames=5))
    jsonl = tmp_path / "cam.jsonl"
    code = cli.main(["--camera", "0", "--manifest", str(runtime_manifest), "--jsonl", str(jsonl)])
    err = capsys.readouterr().err
    assert code == SourceLost.exit_code == 7
    assert err.strip().splitlines()[-1] == "liveness-edge: error: camera 0 disconnected (no more frames)"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert 1 <= len(records) <= 4 and all(r["source"] == "camera:0" for r in records)
    assert "Traceback" not in err and "frames" in err  # the summary still printed


class _FilesLike:
    """A file-like source over a capture, so Ctrl-C arrives in the main thread as it does for files."""

    live = False
    fps = 25.0
    length = None
    info = "fake video"

    def __init__(self, cap: FakeCapture) -> None:
        self.cap = cap

    def frames(self):
        from liveness_edge.runtime.sources import Frame

        i = 0
        while True:
            ok, image = self.cap.read()
            if not ok:
                return
            yield Frame(image, "fake", i, 0.1, f"frame_{i:06d}.jpg")
            i += 1

    def close(self) -> None:
        self.cap.release()


def test_ctrl_c_closes_outputs_and_exits_130(monkeypatch, capsys, tmp_path, runtime_manifest):
    class Interrupting(FakeCapture):
        def read(self):
            if self.reads == 4:
                raise KeyboardInterrupt
            return super().read()

    cap = Interrupting()
    monkeypatch.setattr(cli, "open_source", lambda spec: _FilesLike(cap))
    jsonl = tmp_path / "ctrl_c.jsonl"
    video = tmp_path / "ctrl_c.avi"
    code = cli.main(["--video", "x.mp4", "--manifest", str(runtime_manifest), "--jsonl", str(jsonl),
                     "--output", str(video)])
    assert code == 130 and capsys.readouterr().err.strip().endswith("liveness-edge: interrupted")
    assert len(jsonl.read_text().splitlines()) == 4
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4  # a playable, finished file
    assert cap.released


def test_help_lists_exit_codes():
    proc = liveness_edge("--help")
    assert proc.returncode == 0
    for code in cli.EXIT_CODES:
        assert f"\n  {code:>3}  " in proc.stdout
