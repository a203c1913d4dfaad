"""Per-stage latency samples and their statistics: the numbers every bench table and plot is made of."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


def ms_since(t0: float) -> float:
    """Milliseconds elapsed since ``t0`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - t0) * 1000.0


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one stage's per-frame milliseconds.

    ``fps`` is ``1000 / mean``: throughput counts every frame, so it uses the mean, while the median tells the
    typical frame and p90/p99 the stalls a user notices.
    """

    n: int
    median: float
    p90: float
    p99: float
    mean: float
    fps: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    """Statistics of a non-empty series of milliseconds (linear-interpolated percentiles, as numpy does)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    median, p90, p99 = np.percentile(x, [50, 90, 99])
    mean = float(x.mean())
    return LatencyStats(int(x.size), float(median), float(p90), float(p99), mean, 1000.0 / mean if mean > 0 else 0.0)


class StageRecorder:
    """Collects milliseconds per named stage, frame after frame, in the order stages are first seen."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, stage: str, ms: float) -> None:
        self.samples.setdefault(stage, []).append(float(ms))

    def stats(self) -> dict[str, LatencyStats]:
        return {stage: summarize(values) for stage, values in self.samples.items() if values}
