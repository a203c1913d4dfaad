"""Cheap checks that make a face ``uncertain`` instead of trusting the model on input it was not made for."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .boxes import Box, clipped, inside_fraction
from .preprocessing import Preprocessing

QUALITY_SIZE = 64  # faces are judged for darkness and blur at one scale, whatever their size in the frame
MIN_AUTO_FACE_PX = 24.0


def _non_negative(value: float | None, name: str, upper: float = math.inf) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= upper):
        raise ValueError(f"{name} must be a finite number in [0, {upper:g}], not {value}")


@dataclass(frozen=True)
class QualityOptions:
    """``min_face_px`` is the face box's shorter side (None: the size at which the crop would be upscaled more
    than 2x for the model, at least 24 px). ``min_inside`` is the share of the face box inside the frame: the
    context square around it routinely leaves the frame for close faces (a 2.7x context) and the models were
    trained on such black-padded crops, but a face cut by the frame edge is not judged. ``dark_mean`` is the
    mean grey level (0-255) and ``min_sharpness`` the variance of the Laplacian of the face at 64x64 grey.
    NaN, negative or out-of-range values would switch a check off silently, so they raise ``ValueError``.
    """

    min_face_px: float | None = None
    min_inside: float = 0.8
    dark_mean: float = 40.0
    min_sharpness: float = 30.0

    def __post_init__(self) -> None:
        _non_negative(self.min_face_px, "min_face_px")
        _non_negative(self.min_inside, "min_inside", 1.0)
        _non_negative(self.dark_mean, "dark_mean", 255.0)
        _non_negative(self.min_sharpness, "min_sharpness")


class QualityChecker:
    """``problem(frame, box)``: why this face's score cannot be trusted, or None. Buffers are reused."""

    def __init__(self, options: QualityOptions, preprocessing: Preprocessing) -> None:
        self.options = options
        auto = max(MIN_AUTO_FACE_PX, preprocessing.size / (2.0 * preprocessing.context))
        self.min_face_px = options.min_face_px if options.min_face_px is not None else auto
        self._small = np.zeros((QUALITY_SIZE, QUALITY_SIZE, 3), np.uint8)
        self._gray = np.zeros((QUALITY_SIZE, QUALITY_SIZE), np.uint8)

    def problem(self, frame: np.ndarray, box: Box) -> str | None:
        """Size, then cut by the frame edge, then darkness and blur (judged on the face box only)."""
        x1, y1, x2, y2 = box
        short = min(x2 - x1, y2 - y1)
        if short < self.min_face_px:
            return f"face too small ({short:.0f} px < {self.min_face_px:.0f} px)"
        h, w = frame.shape[:2]
        ix1, iy1, ix2, iy2 = clipped(box, w, h)
        inside = inside_fraction(box, w, h)
        if inside < self.options.min_inside or ix2 - ix1 < 2 or iy2 - iy1 < 2:
            return f"face cut by the frame edge ({inside:.0%} inside)"
        cv2.resize(frame[iy1:iy2, ix1:ix2], (QUALITY_SIZE, QUALITY_SIZE), self._small, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2GRAY, self._gray)
        q = self.options
        brightness = float(self._gray.mean())
        if brightness < q.dark_mean:
            return f"too dark (mean {brightness:.0f} < {q.dark_mean:.0f})"
        sharpness = float(cv2.Laplacian(self._gray, cv2.CV_32F).var())
        if sharpness < q.min_sharpness:
            return f"too blurred (sharpness {sharpness:.1f} < {q.min_sharpness:.1f})"
        return None
