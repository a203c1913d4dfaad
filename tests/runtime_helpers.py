"""Shared pieces for the runtime tests: a manifest to run (the shipped one, or a tiny one built here),
fake backends with scripted scores, fake cameras, and real frames from ../shared/data."""
from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.backends import TensorInfo
from liveness_edge.runtime.detector import FACE_DETECTOR_DIR, FaceDetector
from liveness_edge.runtime.errors import LivenessEdgeError
from liveness_edge.runtime.liveness import LivenessModel
from liveness_edge.runtime.manifest import (
    DEFAULT_MANIFEST,
    DetectorEntry,
    Manifest,
    ModelEntry,
    TensorSpec,
    sha256_of,
)
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from liveness_edge.runtime.preprocessing import Preprocessing

TINY_SIZE = 32
TINY_CONTEXT = 1.5


def shipped_manifest() -> Path | None:
    """``artifacts/manifest.json`` if it is there and every file it names is present."""
    if not DEFAULT_MANIFEST.is_file():
        return None
    try:
        m = Manifest.load(DEFAULT_MANIFEST)
    except LivenessEdgeError:
        return None
    files = [m.path_of(e) for e in [*m.models, *m.detectors]]
    return DEFAULT_MANIFEST if m.models and all(f.is_file() for f in files) else None


def require_shipped_manifest() -> Path:
    path = shipped_manifest()
    if path is None:
        pytest.skip(f"needs the exported models in {DEFAULT_MANIFEST.parent} (run export-models first)")
    return path


def write_tiny_onnx(path: Path, size: int = TINY_SIZE, gain: float = 0.05) -> None:
    """A real ONNX classifier: P(real) = softmax(gain * (mean R - mean B)) on 0-255 RGB input.

    Faces (skin is redder than blue) come out mostly real; a blue-tinted face comes out spoof.
    """
    onnx = pytest.importorskip("onnx", reason="building a tiny ONNX model needs the onnx package")
    from onnx import TensorProto, helper

    w = np.array([[0.0, gain], [0.0, 0.0], [0.0, -gain]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "tiny_liveness",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def build_tiny_manifest(root: Path) -> Path:
    """A manifest with a tiny ONNX liveness model (both names, both precisions) and the shipped BlazeFace."""
    model_file = root / "tiny" / "tiny.onnx"
    write_tiny_onnx(model_file)
    det_file = root / "detector" / "face_detection_short_range.tflite"
    det_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FACE_DETECTOR_DIR / "face_detection_short_range.tflite", det_file)
    pre = Preprocessing(size=TINY_SIZE, context=TINY_CONTEXT)
    models = [
        ModelEntry(
            name, "onnx", precision, "tiny/tiny.onnx", sha256_of(model_file), model_file.stat().st_size,
            TensorSpec([1, TINY_SIZE, TINY_SIZE, 3], "float32"), TensorSpec([1, 2], "float32"), pre,
            ["spoof", "real"], 0.5,
        )
        for name in ("livenessnet", "mobilenetv3", "minifasnet")
        for precision in ("fp32", "int8")
    ]
    detectors = [
        DetectorEntry("blazeface_short", "short", "tflite", "detector/face_detection_short_range.tflite",
                      sha256_of(det_file), det_file.stat().st_size)
    ]
    path = root / "manifest.json"
    Manifest(models, detectors, {"test": "tiny"}, "test", root).save(path)
    return path


def copy_manifest(src: Path, dst: Path) -> Path:
    """A private copy of a manifest and its files, safe to corrupt (files from outside its folder, such as
    the package's detectors, are copied into it and the entries renamed)."""
    m = Manifest.load(src)
    data = json.loads(Path(src).read_text())
    for entry in [*data["models"], *data["detectors"]]:
        original = (m.root / entry["file"]).resolve()
        if not original.is_relative_to(m.root.resolve()):
            entry["file"] = f"outside/{original.name}"
        target = dst / entry["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy(original, target)
    (dst / "manifest.json").write_text(json.dumps(data, indent=2))
    return dst / "manifest.json"


class ScriptedBackend:
    """A liveness 'model' whose P(real) comes from ``score(x)`` on its (1, s, s, 3) float input."""

    def __init__(self, score: Callable[[np.ndarray], float], size: int = TINY_SIZE) -> None:
        self.path = "scripted"
        self.inputs = [TensorInfo("x", (1, size, size, 3), np.dtype(np.float32))]
        self.outputs = [TensorInfo("y", (1, 2), np.dtype(np.float32))]
        self._score = score
        self.calls = 0

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls += 1
        p = float(self._score(x))
        return [np.array([[1.0 - p, p]], np.float32)]


class CountingBackend:
    """Wraps a real backend and counts runs (to see when detection is skipped)."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.path, self.inputs, self.outputs = inner.path, inner.inputs, inner.outputs
        self.calls = 0

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls += 1
        return self._inner.run(x)


def redness(x: np.ndarray) -> float:
    """P(real) = 1 when the crop is redder than blue (input is RGB), else 0."""
    mean = x.reshape(-1, 3).mean(axis=0)
    return 1.0 if mean[0] > mean[2] else 0.0


def scripted_pipeline(
    score: Callable[[np.ndarray], float] = redness,
    options: PipelineOptions = PipelineOptions(),
    threshold: float = 0.5,
) -> tuple[LivenessPipeline, ScriptedBackend, CountingBackend]:
    """The real BlazeFace (shipped .tflite) with a scripted liveness model."""
    det = FaceDetector.from_file()
    counting = CountingBackend(det.backend)
    detector = FaceDetector(counting, det.options)
    backend = ScriptedBackend(score)
    model = LivenessModel(backend, Preprocessing(size=TINY_SIZE, context=TINY_CONTEXT), ["spoof", "real"], threshold)
    return LivenessPipeline(detector, model, options), backend, counting


def nuaa_files(shared_data: Path, label: str, n: int, step: int = 97) -> list[Path]:
    return sorted((shared_data / "nuaa" / label).glob("*.jpg"))[::step][:n]


def face_tile(shared_data: Path, n: int = 4, tints: list[str] | None = None) -> np.ndarray:
    """Several faces in one frame: square crops around the face of ``n`` NUAA real frames, tiled 2 wide.

    ``tints`` ('red'/'blue'/None per face) lets a test give faces different scripted scores.
    """
    detector = FaceDetector.from_file()
    tiles = []
    for i, f in enumerate(nuaa_files(shared_data, "real", n)):
        img = cv2.imread(str(f))
        x1, y1, x2, y2 = detector.detect(img)[0].box
        side = int(max(x2 - x1, y2 - y1) * 1.6)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x0 = int(max(0, min(cx - side / 2, img.shape[1] - side)))
        y0 = int(max(0, min(cy - side / 2, img.shape[0] - side)))
        tile = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (240, 240)).astype(np.int16)
        tint = tints[i] if tints else None
        if tint:
            tile[..., 2 if tint == "red" else 0] += 80
        tiles.append(np.clip(tile, 0, 255).astype(np.uint8))
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles), 2)]
    return np.vstack(rows)


class FakeCapture:
    """Stands in for ``cv2.VideoCapture``: gives ``frames`` frames (None: forever) then reports failure."""

    def __init__(self, index=0, frames: int | None = None, opened: bool = True, size=(480, 640),
                 block_after: int | None = None) -> None:
        self.opened = opened
        self.left = frames
        self.size = size
        self.block_after = block_after
        self.reads = 0
        self.released = False
        self.props: dict[int, float] = {}
        self._blocker = threading.Event()

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: self.size[1],
                cv2.CAP_PROP_FRAME_HEIGHT: self.size[0]}.get(prop, 0.0)

    def read(self):
        if self.block_after is not None and self.reads >= self.block_after:
            self._blocker.wait(30)  # a driver that hangs instead of failing
        if self.left is not None:
            if self.left <= 0:
                return False, None
            self.left -= 1
        self.reads += 1
        frame = np.full(self.size + (3,), self.reads % 256, np.uint8)
        return True, frame

    def release(self) -> None:
        self.released = True
        self._blocker.set()


class MjpegServer:
    """A loopback HTTP MJPEG camera (like a phone's IP Webcam app) that streams ``per_connection`` frames per
    connection and accepts ``connections`` connections, then refuses (503): a camera that drops, then vanishes.

    ``hang``: a stalled camera instead; a stream goes silent after its frames with the connection held open,
    and further requests get no answer at all. ``image``: what to stream (default: grey levels).
    """

    def __init__(self, per_connection: int, connections: int, hang: bool = False,
                 image: np.ndarray | None = None, delay: float = 0.03) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.served += 1
                if server.served > connections:
                    if hang:
                        server.stop.wait(60)
                    else:
                        self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(per_connection):
                    frame = image if image is not None else np.full((120, 160, 3), 40 + 10 * (i % 20), np.uint8)
                    jpg = cv2.imencode(".jpg", frame)[1].tobytes()
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                    try:
                        self.wfile.write(head + jpg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    if server.stop.wait(delay):
                        return
                if hang:
                    server.stop.wait(60)

            def log_message(self, *args):
                pass

        self.served = 0
        self.stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/video"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def write_test_video(path: Path, frames: int = 20, size: tuple[int, int] = (240, 320)) -> Path:
    """A small noisy mp4 (no faces), made here so the test needs no data."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size[1], size[0]))
    for _ in range(frames):
        writer.write(rng.integers(0, 255, size + (3,), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="session")
def runtime_manifest(tmp_path_factory) -> Path:
    """The shipped manifest when the exported models are there, else a tiny one built for the session."""
    return shipped_manifest() or build_tiny_manifest(tmp_path_factory.mktemp("tiny_manifest"))
