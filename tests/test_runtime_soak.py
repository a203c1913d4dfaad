"""Issue 11 item 5: a long run keeps flat memory. 25,000 frames of a face through the whole run loop
(pipeline, JSONL, end-of-run summary); RSS after a 2,000-frame warm-up and at the end differ by < 5 MB.
The old summary kept every frame's timings (about 335 bytes a frame: 7.7 MB over this run).

Run ``python -m pytest -s tests/test_runtime_soak.py`` to see the figures (frames, RSS start/end, FPS)."""
from __future__ import annotations

import os
import time

import cv2
import pytest

from liveness_edge.runtime import cli
from liveness_edge.runtime.sources import Frame, SourceSpec
from runtime_helpers import runtime_manifest  # noqa: F401

FRAMES = 25_000
WARM_UP = 2_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RepeatedFace:
    """A file-like source showing the sample face ``FRAMES`` times, noting RSS after warm-up and at the end."""

    live = False
    fps = 30.0
    length = FRAMES
    info = f"the sample face, {FRAMES} times"

    def __init__(self) -> None:
        face = cv2.imread(str(cli.SAMPLES_DIR / "real" / "image_T1.jpg"))
        self.image = cv2.resize(face, (320, int(320 * face.shape[0] / face.shape[1])))
        self.rss: dict[int, float] = {}

    def frames(self):
        for i in range(FRAMES):
            if i in (WARM_UP, FRAMES - 1):
                self.rss[i] = rss_mb()
            yield Frame(self.image.copy(), "soak", i, 0.0, f"frame_{i:06d}.jpg")

    def close(self) -> None:
        """Nothing to release."""


@pytest.mark.slow
def test_soak_memory_stays_flat(monkeypatch, runtime_manifest):
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to read the resident set size")
    source = RepeatedFace()
    monkeypatch.setattr(cli, "open_source", lambda spec: source)
    options = cli.RunOptions(SourceSpec("video", "soak"), manifest=runtime_manifest, jsonl=os.devnull,
                             display="off", quiet=True)
    start = time.perf_counter()
    summary = cli.run(options)
    wall = time.perf_counter() - start
    start_mb, end_mb = source.rss[WARM_UP], source.rss[FRAMES - 1]
    print(f"\nsoak: {summary.frames} frames, RSS {start_mb:.1f} MB after {WARM_UP} frames -> {end_mb:.1f} MB at "
          f"the end ({end_mb - start_mb:+.2f} MB), {summary.fps:.0f} FPS ({wall:.0f} s wall), "
          f"faces {summary.faces}")
    assert summary.frames == FRAMES and summary.frames_with_faces == FRAMES
    assert end_mb - start_mb < 5.0
