"""Login decision latency: a burst of 640x480 JPEG frames through decode, liveness, embeddings and the match.

The frames are the shipped live sample (``artifacts/samples/real/image_T1.jpg``) filling a 640x480 frame,
so the liveness check passes and the embeddings run, as in a successful login (the slowest path).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, process_time

import cv2
import numpy as np

from ..runtime.manifest import ARTIFACTS_DIR
from .verify import FrameLimits, Verifier, decode_frame, match_distance

LIVE_SAMPLE = ARTIFACTS_DIR / "samples" / "real" / "image_T1.jpg"


@dataclass(frozen=True)
class LatencyResult:
    frames: int
    repeats: int
    embedded: int
    median_ms: float
    p90_ms: float
    cpu_median_ms: float
    liveness_median_ms: float
    embed_median_ms: float
    decision: str


def webcam_frame(image: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """``image`` scaled to cover ``width`` x ``height`` and centre-cropped, as a webcam fills its frame. Not
    letterboxed: black bars beside a face are what a phone or monitor shows, a cue the liveness crop can see."""
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    big = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y : y + height, x : x + width]


def jpeg_burst(path: str | Path, frames: int, width: int = 640, height: int = 480) -> list[bytes]:
    """``frames`` JPEG encodings of one still image, as the browser would post them."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ok, data = cv2.imencode(".jpg", webcam_frame(image, width, height), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return [data.tobytes()] * frames


def measure_latency(frames: int = 10, repeats: int = 20, verifier: Verifier | None = None) -> LatencyResult:
    """Median and 90th percentile of one full login decision, after one warm-up run. The CPU time (this
    process, all threads) is what the decision costs on an idle machine; wall time includes waiting for a
    busy CPU."""
    v = verifier or Verifier.load()
    limits = FrameLimits()
    burst = jpeg_burst(LIVE_SAMPLE, frames)
    enrolled = v.check([decode_frame(b, limits) for b in burst], limits.embed_enrol).embeddings
    box = v.pipeline.detector.detect(decode_frame(burst[-1], limits))[0].box
    totals, cpu, liveness, embeds, decision = [], [], [], [], "refused"
    for _ in range(repeats + 1):
        c0, t0 = process_time(), perf_counter()
        images = [decode_frame(b, limits) for b in burst]
        result = v.check(images, limits.embed_login)
        if result.live:
            decision = "accepted" if match_distance(result.embeddings, enrolled) <= v.threshold else "refused"
        totals.append((perf_counter() - t0) * 1e3)
        cpu.append((process_time() - c0) * 1e3)
        t1 = perf_counter()
        v.check(images, 0)
        liveness.append((perf_counter() - t1) * 1e3)
        t2 = perf_counter()
        v.embedder.embed(images[-1], box)
        embeds.append((perf_counter() - t2) * 1e3)
    totals, cpu, liveness, embeds = totals[1:], cpu[1:], liveness[1:], embeds[1:]
    return LatencyResult(frames, repeats, limits.embed_login, float(np.median(totals)),
                         float(np.percentile(totals, 90)), float(np.median(cpu)), float(np.median(liveness)),
                         float(np.median(embeds)), decision)
