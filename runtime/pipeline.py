"""``LivenessPipeline``: one frame in, one ``FrameResult`` out. The CLI and the bench both call this.

A frame's way: detector (every ``detect_every`` frames in video modes, boxes carried between) -> tracks
(cut on a box jump or a change of face, see ``tracking``) -> context crop with the manifest's preprocessing
-> quality checks (``quality``) -> liveness model -> per-track smoothing, hysteresis and the fail-closed rule
(``smoothing``) -> ``FaceResult``. In ``RunningMode.IMAGE`` every call stands alone. Each face is decided on
its own scores only. Model and detector resolution live with the manifest (``manifest.resolve``).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import Protocol

import numpy as np

from .backends import open_model
from .challenge import ActiveChallenge, ChallengeOptions
from .detector import DetectorOptions, FaceDetector
from .liveness import LivenessModel
from .landmarks import LandmarkModel, landmarks_from_manifest
from .manifest import DEFAULT_MANIFEST, Manifest, Resolved, installed_backends, resolve
from .preprocessing import Preprocessing
from .quality import QualityChecker, QualityOptions
from .smoothing import SmoothingOptions, TrackDecider
from .tracking import IouTracker, Track, TrackerOptions, appearance_signature
from .types import (
    AUTO,
    BACKEND_CHOICES,
    DetectorVariant,
    Face,
    FaceResult,
    FrameResult,
    ModelFormat,
    Precision,
    RunningMode,
    StageTimes,
)

log = logging.getLogger("liveness_edge")

MAX_THREADS_PER_CPU = 4  # beyond this, threads only contend (2000 threads: 526 ms detection; 100000: a crash)
MIN_DETECTOR_SCORE = 0.1  # below this BlazeFace returns background boxes, which the liveness model then judges


def max_threads() -> int:
    return (os.cpu_count() or 1) * MAX_THREADS_PER_CPU


@dataclass(frozen=True)
class PipelineOptions:
    """Which model runs where, how ``process`` calls relate, and how faces are tracked, checked and decided.

    ``running_mode`` ``image`` (default) decides every call on its own; ``video``/``live_stream`` keep tracks
    across calls, which must then come from one stream with increasing frame numbers. ``backend`` ``auto`` picks
    the faster backend per the manifest's verification latency (LiteRT when the manifest has none), among the
    libraries installed. ``max_faces`` 0 keeps all faces, else the largest. ``model_path`` runs a file outside
    the manifest (preprocessing and threshold from the manifest entry of ``model``); it must match
    ``model_sha256`` or be allowed with ``allow_unverified``. Impossible values raise ``ValueError``.
    """

    running_mode: RunningMode = RunningMode.IMAGE
    model: str = "minifasnet"  # best leave-one-source-out ACER (README, Models)
    backend: str = AUTO
    precision: Precision = Precision.INT8
    threads: int = 1
    detector: DetectorVariant = DetectorVariant.SHORT
    min_detector_score: float = 0.5
    detect_every: int = 1
    max_faces: int = 0
    model_path: str | None = None
    model_sha256: str | None = None
    allow_unverified: bool = False
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "running_mode", RunningMode.parse(self.running_mode, "running mode"))
        set_(self, "precision", Precision.parse(self.precision, "precision"))
        set_(self, "detector", DetectorVariant.parse(self.detector, "detector"))
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, not {self.backend!r}")
        if not 1 <= self.threads <= max_threads():
            raise ValueError(f"threads must be 1-{max_threads()} ({MAX_THREADS_PER_CPU} per CPU), not {self.threads}")
        if not 1 <= self.detect_every <= 1000 or self.max_faces < 0:
            raise ValueError("detect_every must be 1-1000 and max_faces >= 0")
        s = self.min_detector_score
        if not (math.isfinite(s) and MIN_DETECTOR_SCORE <= s < 1.0):
            raise ValueError(f"min_detector_score must be in [{MIN_DETECTOR_SCORE}, 1), not {s}")
        if self.model_sha256 is not None:
            from .manifest import check_sha256

            set_(self, "model_sha256", check_sha256(self.model_sha256, "sha256"))


class Detector(Protocol):
    """What the pipeline needs of a face detector (``FaceDetector``, or a fake in tests)."""

    def detect(self, frame_bgr: np.ndarray) -> list[Face]: ...


class Model(Protocol):
    """What the pipeline needs of a liveness model (``LivenessModel``, or a fake in tests)."""

    preprocessing: Preprocessing
    threshold: float

    def predict(self, crop_bgr: np.ndarray) -> float: ...


class LivenessPipeline:
    """Detector + liveness model + tracker + per-track deciders. Not thread-safe: one per stream.

    Any ``detector`` and ``model`` with the shapes above can be injected; ``from_manifest`` loads the shipped ones.
    """

    def __init__(
        self, detector: Detector, model: Model, options: PipelineOptions = PipelineOptions(), description: str = ""
    ) -> None:
        self.detector = detector
        self.model = model
        self.options = options
        self.description = description
        self.verified = True
        self.preprocessing = model.preprocessing
        self.band = options.smoothing.band(model.threshold)
        self.quality = QualityChecker(options.quality, model.preprocessing)
        self.tracker = IouTracker(options.tracker)
        self._deciders: dict[int, TrackDecider] = {}
        self._still = replace(options.smoothing, min_track_age=1)  # image mode: each face decided on its own
        self._count = 0
        self._last_frame: int | None = None
        self._last_detection: int | None = None
        self.manifest: Manifest | None = None  # set by from_manifest: where the landmark models come from
        self.challenge: ActiveChallenge | None = None
        self._landmarks: LandmarkModel | None = None

    @property
    def threshold(self) -> float:
        """The model's decision threshold (carried by the model, not chosen here)."""
        return self.model.threshold

    @classmethod
    def from_manifest(
        cls, manifest_path: str | Path = DEFAULT_MANIFEST, options: PipelineOptions = PipelineOptions()
    ) -> "LivenessPipeline":
        """Load the model and detector the manifest describes, from bytes whose sha256 was checked.

        Raises ``ManifestError``, ``ModelError``, ``BackendUnavailable`` or ``UsageError`` (see ``manifest.resolve``).
        """
        manifest = Manifest.load(manifest_path)
        pipeline = cls.from_resolved(resolve(manifest, options), options)
        pipeline.manifest = manifest
        return pipeline

    @classmethod
    def from_resolved(cls, r: Resolved, options: PipelineOptions = PipelineOptions()) -> "LivenessPipeline":
        """Load already resolved and checked files (``manifest.resolve``), e.g. when the caller needs the entries."""
        det_options = DetectorOptions(variant=options.detector, min_score=options.min_detector_score)
        detector = FaceDetector(open_model(r.detector_path, options.threads, r.detector_bytes), det_options)
        e = r.model
        band = e.extra.get("band")  # chosen with the threshold on out-of-source predictions (export records it)
        if band and options.smoothing.real_above is None and options.smoothing.spoof_below is None:
            options = replace(options, smoothing=replace(options.smoothing, spoof_below=band[0], real_above=band[1]))
        model = LivenessModel(open_model(r.model_path, options.threads, r.model_bytes), e.preprocessing, e.labels, e.threshold)
        description = (
            f"{e.name} {e.precision} on {e.format} ({r.model_path.name}{'' if r.verified else ', UNVERIFIED'}), "
            f"detector {r.detector_path.name}, {options.threads} thread{'s' if options.threads > 1 else ''}, "
            f"threshold {e.threshold:.3f}"
        )
        pipeline = cls(detector, model, options, description)
        pipeline.verified = r.verified
        return pipeline

    def _frame_number(self, frame_index: int | None) -> int:
        """The frame's number; in video modes it must grow from call to call (one stream per pipeline)."""
        index = self._count if frame_index is None else int(frame_index)
        if self.options.running_mode != RunningMode.IMAGE and self._last_frame is not None and index <= self._last_frame:
            raise ValueError(
                f"{self.options.running_mode} mode needs increasing frame numbers: got {index} after {self._last_frame} "
                "(use a new pipeline for a new stream, or RunningMode.IMAGE for unrelated images)"
            )
        self._last_frame = index
        return index

    def _tracks(self, frame_bgr: np.ndarray, index: int) -> list[Track]:
        """Faces to judge now, with track ids: fresh ones in image mode, continued or cut ones otherwise."""
        if self.options.running_mode == RunningMode.IMAGE:
            return [Track(i + 1, f.box, f.score) for i, f in enumerate(self.detector.detect(frame_bgr))]
        if self._count % self.options.detect_every:
            return self.tracker.visible()
        faces = self.detector.detect(frame_bgr)
        apart = 1 if self._last_detection is None else index - self._last_detection
        self._last_detection = index
        signatures = [appearance_signature(frame_bgr, f.box) for f in faces]
        tracks, ended = self.tracker.update(faces, signatures, apart)
        for track_id in ended:
            self._deciders.pop(track_id, None)
        return tracks

    def _decider(self, track_id: int) -> TrackDecider:
        if self.options.running_mode == RunningMode.IMAGE:
            return TrackDecider(self._still, self.model.threshold)
        decider = self._deciders.get(track_id)
        if decider is None:
            decider = self._deciders[track_id] = TrackDecider(self.options.smoothing, self.model.threshold)
        return decider

    def start_challenge(
        self, options: ChallengeOptions = ChallengeOptions(), landmarks: LandmarkModel | None = None
    ) -> ActiveChallenge:
        """Start an active challenge (``runtime/challenge.py``) on the coming frames of this stream: until it is
        decided, the landmark models run on the tracked face and ``FrameResult.challenge`` says what to do next.
        ``landmarks`` defaults to the manifest's files on LiteRT when it is installed, whatever ``backend`` says
        (4-5x faster than ONNX Runtime for these two models on x86, see face_detector/README.md), else ONNX.
        Raises ``ValueError`` in image mode: one picture cannot blink."""
        if self.options.running_mode == RunningMode.IMAGE:
            raise ValueError("a challenge needs the video or live_stream running mode: one picture cannot blink")
        if landmarks is None:
            if self.manifest is None:
                raise ValueError("pass landmarks=...: this pipeline was not loaded from a manifest")
            if self._landmarks is None:
                order = [ModelFormat.TFLITE, ModelFormat.ONNX]
                usable = [b for b in order if b in installed_backends()] or order
                self._landmarks = landmarks_from_manifest(self.manifest, usable, self.options.threads)
            landmarks = self._landmarks
        self.challenge = ActiveChallenge(landmarks, options)
        return self.challenge

    def process(
        self, frame_bgr: np.ndarray, source: str = "", frame_index: int | None = None, capture_ms: float = 0.0,
        timestamp_s: float | None = None,
    ) -> FrameResult:
        """Detect (or carry) faces, score each, decide each on its own track. ``times.total`` includes
        ``capture_ms`` (the caller's read/decode time) so it is the frame's whole cost. ``timestamp_s`` is the
        frame's time for an active challenge's timeouts (default: the clock now; give video time for files).

        Raises ``ValueError`` in video modes when ``frame_index`` does not increase.
        """
        t0 = perf_counter()
        index = self._frame_number(frame_index)
        tracks = self._tracks(frame_bgr, index)
        self._count += 1
        t_detect = perf_counter()
        if self.options.max_faces:
            tracks = sorted(tracks, key=lambda t: -t.area)[: self.options.max_faces]
        crop_s = infer_s = decide_s = 0.0
        faces: list[FaceResult] = []
        pre = self.preprocessing
        for track in tracks:
            a = perf_counter()
            crop = pre.cut(frame_bgr, track.box)
            problem = self.quality.problem(frame_bgr, track.box)
            b = perf_counter()
            p_real = self.model.predict(crop.image)
            c = perf_counter()
            d = self._decider(track.id).update(p_real, problem)
            faces.append(FaceResult(track.id, track.box, track.score, p_real, d.p_smoothed, d.decision, d.reason))
            crop_s += b - a
            infer_s += c - b
            decide_s += perf_counter() - c
        status, challenge_s = None, 0.0
        if self.challenge is not None and not self.challenge.done:
            c = perf_counter()
            status = self.challenge.update(frame_bgr, faces, c if timestamp_s is None else timestamp_s)
            challenge_s = perf_counter() - c
        times = StageTimes.measured(
            capture_ms, (perf_counter() - t0) * 1e3, (t_detect - t0) * 1e3, crop_s * 1e3, infer_s * 1e3,
            decide_s * 1e3, challenge_s * 1e3,
        )
        return FrameResult(source, index, faces, times, status)
