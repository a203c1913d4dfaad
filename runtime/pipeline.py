"""``LivenessPipeline``: one frame in, one ``FrameResult`` out. The CLI and the bench both call this.

A frame's way: detector (every ``detect_every`` frames, boxes carried and matched to tracks by IoU in
between) -> context crop with the manifest's preprocessing -> quality checks -> liveness model ->
per-track smoothing and hysteresis -> ``FaceResult``. Each face is decided on its own scores only.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from .backends import backend_name, open_model
from .crop import context_crop
from .detector import DetectorOptions, FaceDetector
from .errors import BackendUnavailable, ManifestError, ModelError, UsageError
from .liveness import LivenessModel
from .manifest import DEFAULT_MANIFEST, DetectorEntry, Manifest, ModelEntry, sha256_of
from .smoothing import SmoothingOptions, TrackDecider
from .tracking import IouTracker, Track, TrackerOptions
from .types import FaceResult, FrameResult, StageTimes

log = logging.getLogger("liveness_edge")

MODELS = ("livenessnet", "mobilenetv3")
BACKEND_CHOICES = ("auto", "onnx", "tflite")
PRECISIONS = ("int8", "fp32")
BACKEND_MODULES = {"onnx": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime")}
QUALITY_SIZE = 64  # faces are judged for darkness and blur at one scale, whatever their size in the frame


@dataclass(frozen=True)
class QualityOptions:
    """Cheap checks that make a face ``uncertain`` instead of trusting the model on bad input.

    ``min_face_px`` is the face box's shorter side (None: the size at which the crop would be upscaled more
    than 2x for the model, at least 24 px). ``min_inside`` is the share of the face box inside the frame: the
    context square around it routinely leaves the frame for close faces (a 2.7x context) and the models were
    trained on such black-padded crops, but a face cut by the frame edge is not judged. ``dark_mean`` is the
    mean grey level (0-255) and ``min_sharpness`` the variance of the Laplacian of the face at 64x64 grey.
    """

    min_face_px: float | None = None
    min_inside: float = 0.8
    dark_mean: float = 40.0
    min_sharpness: float = 30.0


@dataclass(frozen=True)
class PipelineOptions:
    """Which model runs where, and how faces are tracked, checked and decided.

    ``backend`` ``auto`` picks the faster backend per the manifest's verification latency (LiteRT when the
    manifest has none), among the libraries installed. ``max_faces`` 0 keeps all faces, else the largest.
    ``model_path`` runs a file outside the manifest (preprocessing from the manifest entry of ``model``).
    """

    model: str = "livenessnet"
    backend: str = "auto"
    precision: str = "int8"
    threads: int = 1
    detector: str = "short"
    min_detector_score: float = 0.5
    detect_every: int = 1
    max_faces: int = 0
    model_path: str | None = None
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise UsageError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be int8 or fp32, not {self.precision!r}")
        if self.detector not in ("short", "full"):
            raise UsageError(f"detector must be short or full, not {self.detector!r}")
        if self.threads < 1 or self.detect_every < 1 or self.max_faces < 0:
            raise UsageError("threads and detect_every must be >= 1, max_faces >= 0")

    def for_still_images(self) -> "PipelineOptions":
        """Independent images have no history: decide on the one frame (no warm-up), detect every time."""
        return replace(self, detect_every=1, smoothing=replace(self.smoothing, min_track_age=1))


def installed_backends() -> list[str]:
    """Backends whose inference library can be imported here (checked without importing it)."""
    return [b for b, mods in BACKEND_MODULES.items() if any(importlib.util.find_spec(m) for m in mods)]


LATENCY_KEYS = ("latency_ms_median", "latency_ms")  # what export's verification records, per model file


def _verified_latency(entry: ModelEntry) -> float | None:
    value = next((entry.verification[k] for k in LATENCY_KEYS if k in entry.verification), None)
    return float(value) if isinstance(value, (int, float)) else None


def choose_backend(manifest: Manifest, name: str, precision: str) -> str:
    """The backend ``auto`` means: lowest verified latency in the manifest, else LiteRT (fastest in trials)."""
    installed = installed_backends()
    if not installed:
        raise BackendUnavailable("neither onnxruntime nor ai-edge-litert is installed: pip install liveness-edge")
    entries = [m for m in manifest.models if m.name == name and m.precision == precision and m.format in installed]
    if not entries:
        manifest.model(name, installed[0], precision)  # raises the ManifestError that lists what exists
    latencies = {m.format: _verified_latency(m) for m in entries}
    if all(v is not None for v in latencies.values()):
        return min(latencies, key=latencies.get)
    return "tflite" if "tflite" in latencies else entries[0].format


def _detector_entry(manifest: Manifest, variant: str, backend: str) -> DetectorEntry:
    """The detector on the model's backend if the manifest has it, else on any installed backend."""
    for b in [backend] + [x for x in installed_backends() if x != backend]:
        try:
            return manifest.detector(variant, b)
        except ManifestError:
            continue
    return manifest.detector(variant, backend)


def _explicit_model(manifest: Manifest, options: PipelineOptions) -> tuple[ModelEntry, Path]:
    """``--model-path``: trusted if its sha256 is in the manifest, else run with a warning."""
    path = Path(options.model_path)
    fmt = backend_name(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    digest = sha256_of(path)
    for m in manifest.models:
        if m.sha256 == digest:
            return m, path
    same_name = [m for m in manifest.models if m.name == options.model]
    if not same_name:
        raise ManifestError(
            f"--model-path {path}: the manifest has no {options.model!r} entry to take its preprocessing from"
        )
    entry = next((m for m in same_name if m.format == fmt and m.precision == options.precision), same_name[0])
    log.warning("%s is not in the manifest: its sha256 is not checked (preprocessing of %s)", path, entry.file)
    return replace(entry, format=fmt, file=str(path)), path


class LivenessPipeline:
    """Detector + liveness model + tracker + per-track deciders. Not thread-safe: one per video stream."""

    def __init__(
        self,
        detector: FaceDetector,
        model: LivenessModel,
        threshold: float,
        options: PipelineOptions = PipelineOptions(),
        description: str = "",
    ) -> None:
        self.detector = detector
        self.model = model
        self.threshold = threshold
        self.options = options
        self.description = description
        self.preprocessing = model.preprocessing
        self.band = options.smoothing.band(threshold)
        q = options.quality
        auto_min = max(24.0, self.preprocessing.size / (2.0 * self.preprocessing.context))
        self.min_face_px = q.min_face_px if q.min_face_px is not None else auto_min
        self.tracker = IouTracker(options.tracker)
        self._deciders: dict[int, TrackDecider] = {}
        self._count = 0
        self._small = np.zeros((QUALITY_SIZE, QUALITY_SIZE, 3), np.uint8)
        self._gray = np.zeros((QUALITY_SIZE, QUALITY_SIZE), np.uint8)

    @classmethod
    def from_manifest(
        cls, manifest_path: str | Path = DEFAULT_MANIFEST, options: PipelineOptions = PipelineOptions()
    ) -> "LivenessPipeline":
        """Load the model and detector the manifest describes, refusing files whose sha256 does not match."""
        manifest = Manifest.load(manifest_path)
        if options.model_path:
            entry, path = _explicit_model(manifest, options)
        else:
            backend = options.backend
            if backend == "auto":
                backend = choose_backend(manifest, options.model, options.precision)
            entry = manifest.model(options.model, backend, options.precision)
            path = manifest.verified_path(entry)
        det_entry = _detector_entry(manifest, options.detector, entry.format)
        det_path = manifest.verified_path(det_entry)
        det_options = DetectorOptions(variant=options.detector, min_score=options.min_detector_score)
        detector = FaceDetector(open_model(det_path, options.threads), det_options)
        model = LivenessModel(open_model(path, options.threads), entry.preprocessing, entry.labels)
        description = (
            f"{entry.name} {entry.precision} on {entry.format} ({path.name}), detector {det_path.name}, "
            f"{options.threads} thread{'s' if options.threads > 1 else ''}, threshold {entry.threshold:.3f}"
        )
        return cls(detector, model, entry.threshold, options, description)

    def reset(self) -> None:
        """Forget all tracks and their history (between independent images or streams)."""
        self.tracker.reset()
        self._deciders.clear()
        self._count = 0

    def process(
        self, frame_bgr: np.ndarray, source: str = "", frame_index: int | None = None, capture_ms: float = 0.0
    ) -> FrameResult:
        """Detect (or carry) faces, score each, update its track's decision. ``times.total`` includes
        ``capture_ms`` (the caller's read/decode time) so it is the frame's whole cost."""
        t0 = perf_counter()
        index = self._count if frame_index is None else frame_index
        if self._count % self.options.detect_every == 0:
            tracks, ended = self.tracker.update(self.detector.detect(frame_bgr))
            for track_id in ended:
                self._deciders.pop(track_id, None)
        else:
            tracks = self.tracker.visible()
        self._count += 1
        t_detect = perf_counter()
        if self.options.max_faces:
            tracks = sorted(tracks, key=lambda t: -t.area)[: self.options.max_faces]
        crop_s = infer_s = decide_s = 0.0
        faces: list[FaceResult] = []
        pre = self.preprocessing
        for track in tracks:
            a = perf_counter()
            crop = context_crop(frame_bgr, track.box, pre.context, pre.size)
            problem = self._quality_problem(frame_bgr, track)
            b = perf_counter()
            p_real = self.model.predict(crop.image)
            c = perf_counter()
            decider = self._deciders.get(track.id)
            if decider is None:
                decider = self._deciders[track.id] = TrackDecider(self.options.smoothing, self.threshold)
            d = decider.update(p_real, problem)
            faces.append(FaceResult(track.id, track.box, track.score, p_real, d.p_smoothed, d.decision, d.reason))
            crop_s += b - a
            infer_s += c - b
            decide_s += perf_counter() - c
        end = perf_counter()
        times = StageTimes(
            capture=capture_ms,
            detect=(t_detect - t0) * 1e3,
            crop=crop_s * 1e3,
            infer=infer_s * 1e3,
            decide=decide_s * 1e3,
            total=capture_ms + (end - t0) * 1e3,
        )
        return FrameResult(source, index, faces, times)

    def _quality_problem(self, frame: np.ndarray, track: Track) -> str | None:
        """Why this face's score cannot be trusted, or None. Darkness and blur are judged on the face box only."""
        x1, y1, x2, y2 = track.box
        short = min(x2 - x1, y2 - y1)
        if short < self.min_face_px:
            return f"face too small ({short:.0f} px < {self.min_face_px:.0f} px)"
        h, w = frame.shape[:2]
        ix1, iy1 = max(int(x1), 0), max(int(y1), 0)
        ix2, iy2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        inside = max(ix2 - ix1, 0) * max(iy2 - iy1, 0) / max(track.area, 1.0)
        if inside < self.options.quality.min_inside or ix2 - ix1 < 2 or iy2 - iy1 < 2:
            return f"face cut by the frame edge ({min(inside, 1.0):.0%} inside)"
        cv2.resize(frame[iy1:iy2, ix1:ix2], (QUALITY_SIZE, QUALITY_SIZE), self._small, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2GRAY, self._gray)
        q = self.options.quality
        brightness = float(self._gray.mean())
        if brightness < q.dark_mean:
            return f"too dark (mean {brightness:.0f} < {q.dark_mean:.0f})"
        sharpness = float(cv2.Laplacian(self._gray, cv2.CV_32F).var())
        if sharpness < q.min_sharpness:
            return f"too blurred (sharpness {sharpness:.1f} < {q.min_sharpness:.1f})"
        return None
