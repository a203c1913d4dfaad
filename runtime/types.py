"""Typed results and the fixed vocabularies (enumerations) shared by the detector, the liveness model, the
pipeline, the writers, the CLIs and the bench. Each set of names is defined here once; everything else imports it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .challenge import ChallengeStatus


class _Names(enum.StrEnum):
    """A fixed set of names that still compares, prints and serialises as the plain string."""

    @classmethod
    def parse(cls, value: object, what: str) -> "_Names":
        """``value`` as a member, or a ``ValueError`` that lists the allowed names."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} must be one of {', '.join(cls)}, not {value!r}") from None


class RunningMode(_Names):
    """How ``process`` calls relate, as in MediaPipe's Tasks API.

    ``image``: every call stands alone (no tracks, no smoothing, no warm-up). ``video``: consecutive frames of
    one clip, frame numbers strictly increasing. ``live_stream``: like video, frames may be skipped.
    """

    IMAGE = "image"
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


class ModelFormat(_Names):
    """A model file's format, which is also the backend that runs it."""

    ONNX = "onnx"
    TFLITE = "tflite"


AUTO = "auto"
BACKEND_CHOICES = (AUTO, *ModelFormat)


class Precision(_Names):
    FP32 = "fp32"
    INT8 = "int8"


class DetectorVariant(_Names):
    """BlazeFace short range (faces within ~2 m) or full range (further away)."""

    SHORT = "short"
    FULL = "full"


class LandmarkVariant(_Names):
    """Landmark models listed beside the detectors in the manifest: the face mesh and the iris model that
    refines its eyelids (active challenge only, ``runtime/landmarks.py``)."""

    MESH = "landmarks"
    IRIS = "iris"


class SmoothingMethod(_Names):
    EMA = "ema"
    WINDOW = "window"


class Decision(_Names):
    """Anything but ``real`` is not real (fail closed)."""

    REAL = "real"
    SPOOF = "spoof"
    UNCERTAIN = "uncertain"


class Stage(_Names):
    """The per-frame stages, in order. ``capture`` is reading/decoding the frame (the bench's ``read``)."""

    CAPTURE = "capture"
    DETECT = "detect"
    CROP = "crop"
    INFER = "infer"
    DECIDE = "decide"
    LANDMARKS = "landmarks"
    TOTAL = "total"


@dataclass(frozen=True)
class Face:
    """One detected face. ``box`` is (x1, y1, x2, y2) and ``keypoints`` (6, 2), both in frame pixels."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(repr=False, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Crop:
    """A square context crop: the pixels, where it came from, and how much of it lay inside the frame."""

    image: np.ndarray
    square: tuple[int, int, int, int]
    inside_fraction: float


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent per stage of one frame (all faces together).

    ``crop`` (context crop, preprocessing and quality checks), ``infer`` (liveness model) and ``decide``
    (smoothing and decision) are the detail the bench plots; the JSONL output reports their sum as ``liveness``.
    ``total`` is always ``capture`` plus the pipeline's own time: build it with ``measured``.
    """

    capture: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    infer: float = 0.0
    decide: float = 0.0
    total: float = 0.0
    landmarks: float = 0.0  # face landmarks + challenge state machine, only while a challenge is undecided

    @classmethod
    def measured(
        cls, capture: float, pipeline_ms: float, detect: float = 0.0, crop: float = 0.0, infer: float = 0.0,
        decide: float = 0.0, landmarks: float = 0.0,
    ) -> "StageTimes":
        """The one place ``total`` is computed: the caller's capture time plus the pipeline's wall time."""
        return cls(capture, detect, crop, infer, decide, capture + pipeline_ms, landmarks)

    @property
    def liveness(self) -> float:
        return self.crop + self.infer + self.decide

    @property
    def processing(self) -> float:
        """The frame's cost once it is read/decoded (``total`` without ``capture``): what the bench times."""
        return self.total - self.capture


@dataclass(frozen=True)
class FaceResult:
    """The decision for one tracked face; anything but ``real`` is not real (fail closed)."""

    track: int
    box: tuple[float, float, float, float]
    detector_score: float
    p_real: float
    p_real_smoothed: float
    decision: str
    reason: str | None = None


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline says about one frame."""

    source: str
    frame: int
    faces: list[FaceResult]
    times: StageTimes
    challenge: ChallengeStatus | None = None  # while an active challenge runs, up to the frame that decides it
