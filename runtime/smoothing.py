"""Per-track temporal smoothing of P(real) and the hysteresis decision.

One noisy frame must not flip a door lock: scores are averaged over time (EMA or a sliding window) and the
decision only changes when the smoothed score crosses a band around the model's threshold. A track starts
undecided, so nothing is ``real`` before the evidence says so (fail closed).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

REAL, SPOOF, UNCERTAIN = "real", "spoof", "uncertain"
DECISIONS = (REAL, SPOOF, UNCERTAIN)


@dataclass(frozen=True)
class SmoothingOptions:
    """``method`` ``ema`` (weight ``alpha`` on the newest score) or ``window`` (mean of the last ``window``).

    The hysteresis band is ``threshold ± margin`` unless ``real_above``/``spoof_below`` are given.
    ``min_track_age`` frames of a track are ``uncertain`` while the average fills (None: 3 for EMA,
    ``window`` for a window; independent still images use 1).
    """

    method: str = "ema"
    alpha: float = 0.5
    window: int = 5
    margin: float = 0.05
    real_above: float | None = None
    spoof_below: float | None = None
    min_track_age: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("ema", "window"):
            raise ValueError(f"smoothing method must be ema or window, not {self.method!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {self.alpha}")
        if self.window < 1 or self.margin < 0.0:
            raise ValueError(f"bad smoothing window={self.window} margin={self.margin}")

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
            return max(1, self.min_track_age)
        return 3 if self.method == "ema" else self.window


class ScoreSmoother:
    """The running average of one track's scores."""

    def __init__(self, options: SmoothingOptions) -> None:
        self.options = options
        self._value: float | None = None
        self._recent: deque[float] = deque(maxlen=options.window)

    def update(self, p: float) -> float:
        if self.options.method == "window":
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
class Decision:
    p_smoothed: float
    decision: str
    reason: str | None


class TrackDecider:
    """Smoothing, hysteresis and the warm-up rule for one track. Frames failing a quality check are not
    averaged in (their score is unreliable) and are ``uncertain`` whatever the history says."""

    def __init__(self, options: SmoothingOptions, threshold: float) -> None:
        self.options = options
        self.low, self.high = options.band(threshold)
        self.smoother = ScoreSmoother(options)
        self.state = UNCERTAIN
        self.scored = 0

    def update(self, p_real: float, quality_problem: str | None = None) -> Decision:
        if quality_problem is not None:
            current = self.smoother.value
            return Decision(p_real if current is None else current, UNCERTAIN, quality_problem)
        s = self.smoother.update(p_real)
        self.scored += 1
        if s >= self.high:
            self.state = REAL
        elif s <= self.low:
            self.state = SPOOF
        if self.scored < self.options.warmup:
            return Decision(s, UNCERTAIN, f"track warming up ({self.scored}/{self.options.warmup} frames)")
        if self.state == UNCERTAIN:
            return Decision(s, UNCERTAIN, f"score in the undecided band {self.low:.2f}-{self.high:.2f}")
        return Decision(s, self.state, None)
