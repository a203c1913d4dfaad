"""Per-track temporal smoothing of P(real), the hysteresis decision and the fail-closed rule.

One noisy frame must not flip a door lock: scores are averaged over time (EMA or a sliding window) and the
decision only changes when the smoothed score crosses a band around the model's threshold. A track starts
undecided, so nothing is ``real`` before the evidence says so. History can only hold a decision back, never
carry one: ``real`` also needs the current frame's own P(real) at or above the model's threshold, so a face
that inherits a track (a spoof held up where a real face was) is not ``real`` on the strength of the past.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .types import Decision, SmoothingMethod

REAL, SPOOF, UNCERTAIN = Decision.REAL, Decision.SPOOF, Decision.UNCERTAIN
DECISIONS = tuple(Decision)
MAX_WINDOW = 1000  # frames: over half a minute at 30 FPS; longer averages would hide a change of face


def _probability(value: float | None, name: str) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must be a probability strictly between 0 and 1, not {value}")


@dataclass(frozen=True)
class SmoothingOptions:
    """``method`` ``ema`` (weight ``alpha`` on the newest score) or ``window`` (mean of the last ``window``).

    The hysteresis band is ``threshold ± margin`` unless ``real_above``/``spoof_below`` are given.
    ``min_track_age`` frames of a track are ``uncertain`` while the average fills (None: 3 for EMA,
    ``window`` for a window). Values that would switch the safeguards off raise ``ValueError``.
    """

    method: SmoothingMethod = SmoothingMethod.EMA
    alpha: float = 0.5
    window: int = 5
    margin: float = 0.05
    real_above: float | None = None
    spoof_below: float | None = None
    min_track_age: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", SmoothingMethod.parse(self.method, "smoothing method"))
        if not (math.isfinite(self.alpha) and 0.0 < self.alpha <= 1.0):
            raise ValueError(f"EMA alpha must be in (0, 1], got {self.alpha}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"smoothing window must be 1-{MAX_WINDOW} frames, got {self.window}")
        if not (math.isfinite(self.margin) and 0.0 <= self.margin < 0.5):
            raise ValueError(f"hysteresis margin must be in [0, 0.5), got {self.margin}")
        _probability(self.real_above, "real_above")
        _probability(self.spoof_below, "spoof_below")
        if self.real_above is not None and self.spoof_below is not None and self.spoof_below > self.real_above:
            raise ValueError(f"hysteresis band is inverted: spoof below {self.spoof_below} > real above {self.real_above}")
        if self.min_track_age is not None and not 1 <= self.min_track_age <= MAX_WINDOW:
            raise ValueError(f"min_track_age must be 1-{MAX_WINDOW} frames, got {self.min_track_age}")

    def band(self, threshold: float) -> tuple[float, float]:
        """(spoof_below, real_above) for a model whose decision threshold is ``threshold``."""
        high = self.real_above if self.real_above is not None else min(threshold + self.margin, 1.0)
        low = self.spoof_below if self.spoof_below is not None else max(threshold - self.margin, 0.0)
        if low > high:
            raise ValueError(f"hysteresis band is inverted: spoof below {low} > real above {high}")
        return low, high

    @property
    def warmup(self) -> int:
        if self.min_track_age is not None:
            return self.min_track_age
        return 3 if self.method == SmoothingMethod.EMA else self.window


class ScoreSmoother:
    """The running average of one track's scores."""

    def __init__(self, options: SmoothingOptions) -> None:
        self.options = options
        self._value: float | None = None
        self._recent: deque[float] = deque(maxlen=options.window)

    def update(self, p: float) -> float:
        if self.options.method == SmoothingMethod.WINDOW:
            self._recent.append(p)
            self._value = sum(self._recent) / len(self._recent)
        elif self._value is None:
            self._value = p
        else:
            self._value += self.options.alpha * (p - self._value)
        return self._value

    @property
    def value(self) -> float | None:
        return self._value


@dataclass(frozen=True)
class TrackDecision:
    p_smoothed: float
    decision: Decision
    reason: str | None


class TrackDecider:
    """Smoothing, hysteresis, the warm-up rule and the fail-closed rule for one track. Frames failing a quality
    check are not averaged in (their score is unreliable) and are ``uncertain`` whatever the history says."""

    def __init__(self, options: SmoothingOptions, threshold: float) -> None:
        self.options = options
        self.threshold = threshold
        self.low, self.high = options.band(threshold)
        self.smoother = ScoreSmoother(options)
        self.state = UNCERTAIN
        self.scored = 0

    def update(self, p_real: float, quality_problem: str | None = None) -> TrackDecision:
        if quality_problem is not None:
            current = self.smoother.value
            return TrackDecision(p_real if current is None else current, UNCERTAIN, quality_problem)
        s = self.smoother.update(p_real)
        self.scored += 1
        if s >= self.high:
            self.state = REAL
        elif s <= self.low:
            self.state = SPOOF
        if self.scored < self.options.warmup:
            return TrackDecision(s, UNCERTAIN, f"track warming up ({self.scored}/{self.options.warmup} frames)")
        if self.state == UNCERTAIN:
            return TrackDecision(s, UNCERTAIN, f"score in the undecided band {self.low:.2f}-{self.high:.2f}")
        if self.state == REAL and p_real < self.threshold:
            return TrackDecision(s, UNCERTAIN, f"this frame's P(real) {p_real:.2f} is below {self.threshold:.2f}")
        return TrackDecision(s, self.state, None)
