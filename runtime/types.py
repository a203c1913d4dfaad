"""Typed results shared by the detector, the liveness model, the pipeline and the writers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    ``crop`` (context crop and preprocessing), ``infer`` (liveness model) and ``decide`` (smoothing and
    decision) are the detail the bench plots; the JSONL output reports their sum as ``liveness``.
    """

    capture: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    infer: float = 0.0
    decide: float = 0.0
    total: float = 0.0

    @property
    def liveness(self) -> float:
        return self.crop + self.infer + self.decide


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
