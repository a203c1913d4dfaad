"""The two reported ways a spoof came out `real`, replayed with the shipped models on the shipped samples."""
from __future__ import annotations

import cv2
import pytest

from liveness_edge.runtime.cli import SAMPLES_DIR
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from liveness_edge.runtime.types import RunningMode
from runtime_helpers import require_shipped_manifest


def sample(name: str, size=(480, 640)):
    return cv2.resize(cv2.imread(str(SAMPLES_DIR / name)), size, interpolation=cv2.INTER_AREA)


def test_api_still_images_real_photo_then_printed_spoof():
    """Was: with mobilenetv3, a real photo then a printed photo (P(real) 0.039 alone) gave smoothed 0.518, `real`."""
    manifest = require_shipped_manifest()
    pipeline = LivenessPipeline.from_manifest(manifest, PipelineOptions(model="mobilenetv3"))
    real = pipeline.process(sample("real/image_T1.jpg")).faces[0]
    spoof = pipeline.process(sample("spoof/image_F1.jpg")).faces[0]
    assert real.decision == "real"
    assert spoof.decision == "spoof" and spoof.p_real_smoothed == spoof.p_real < pipeline.threshold


def test_video_a_face_under_the_threshold_replacing_a_real_one_is_never_real():
    """Was: a different face in an overlapping box inherited track #1 and stayed `real` for 10 frames with its
    own P(real) under the threshold. Here: T1 (P(real) ~0.67) for 10 frames, then T2 (~0.43, under livenessnet's
    0.46 but inside its hysteresis band) for 10, as a hard cut in one clip."""
    manifest = require_shipped_manifest()
    pipeline = LivenessPipeline.from_manifest(
        manifest, PipelineOptions(running_mode=RunningMode.VIDEO, model="livenessnet")
    )
    first, second = sample("real/image_T1.jpg"), sample("real/image_T2.jpg")
    before = [pipeline.process(first).faces[0] for _ in range(10)]
    after = [pipeline.process(second).faces[0] for _ in range(10)]
    assert before[-1].decision == "real"
    if not all(f.p_real < pipeline.threshold for f in after):
        pytest.skip("this model build scores the second sample above its threshold: nothing to reproduce")
    assert all(f.decision != "real" for f in after)
