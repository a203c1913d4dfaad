"""The pipeline on real frames: 0, 1 and several faces, tracking with --detect-every, per-face decisions,
quality checks, model loading from a manifest (sha256), and both backends agreeing."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.cli import SAMPLES_DIR
from liveness_edge.runtime.errors import ManifestError, ModelError, UsageError
from liveness_edge.runtime.manifest import Manifest
from liveness_edge.runtime.manifest import choose_backend
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from liveness_edge.runtime.quality import QualityOptions
from liveness_edge.runtime.smoothing import SmoothingOptions
from liveness_edge.runtime.sources import VideoSource
from liveness_edge.runtime.types import RunningMode
from runtime_helpers import (  # noqa: F401  (runtime_manifest is a fixture)
    copy_manifest,
    face_tile,
    nuaa_files,
    runtime_manifest,
    scripted_pipeline,
    write_tiny_onnx,
)

STILL = PipelineOptions(running_mode=RunningMode.IMAGE)
VIDEO = "jomariya/videos/real/real_1.mp4"


def test_no_face_frame():
    pipeline, model, _ = scripted_pipeline()
    result = pipeline.process(np.full((480, 640, 3), 90, np.uint8), source="blank", frame_index=7, capture_ms=1.5)
    assert result.faces == [] and result.frame == 7 and result.source == "blank"
    assert model.calls == 0
    t = result.times
    assert t.capture == 1.5 and t.detect > 0 and t.total >= t.capture + t.detect


@pytest.mark.data
def test_one_face_on_a_real_frame(shared_data):
    pipeline, model, _ = scripted_pipeline(options=STILL)
    img = cv2.imread(str(nuaa_files(shared_data, "real", 1)[0]))
    result = pipeline.process(img)
    (face,) = result.faces
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and face.detector_score > 0.5
    assert face.decision == "real" and face.p_real == 1.0 and face.reason is None and face.track == 1
    assert model.calls == 1
    t = result.times
    assert t.liveness == pytest.approx(t.crop + t.infer + t.decide) and t.total >= t.detect + t.liveness


@pytest.mark.parametrize("name", ["real/image_T1.jpg", "real/image_T2.jpg", "spoof/image_F1.jpg", "spoof/image_F2.jpg"])
def test_one_face_on_each_shipped_sample(name):
    pipeline, _, _ = scripted_pipeline(score=lambda x: 0.9, options=STILL)
    img = cv2.imread(str(SAMPLES_DIR / name))
    (face,) = pipeline.process(img).faces
    x1, y1, x2, y2 = face.box
    assert img.shape[0] > img.shape[1]  # portrait: EXIF orientation applied on reading
    assert (x2 - x1) > img.shape[1] / 5 and face.decision == "real"


@pytest.mark.data
def test_several_faces_each_decided_on_its_own(shared_data):
    frame = face_tile(shared_data, 4, tints=["red", "blue", "blue", "red"])
    pipeline, model, _ = scripted_pipeline(options=STILL)
    result = pipeline.process(frame)
    assert len(result.faces) == 4 and model.calls == 4
    assert len({f.track for f in result.faces}) == 4
    by_tile = {(int(f.box[0] + f.box[2]) // 480, int(f.box[1] + f.box[3]) // 480): f.decision for f in result.faces}
    assert by_tile == {(0, 0): "real", (1, 0): "spoof", (0, 1): "spoof", (1, 1): "real"}


@pytest.mark.data
def test_max_faces_keeps_the_largest(shared_data):
    frame = face_tile(shared_data, 4)
    small = cv2.resize(frame[:240, :240], (120, 120))
    frame[:120, :120] = small  # the top-left face is now the smallest
    frame[120:240, :240] = 0
    frame[:120, 120:240] = 0
    pipeline, _, _ = scripted_pipeline(options=replace(STILL, max_faces=2))
    result = pipeline.process(frame)
    assert len(result.faces) == 2
    assert all(f.box[2] - f.box[0] > 100 for f in result.faces)


@pytest.mark.data
def test_detect_every_carries_boxes_and_keeps_track_ids(shared_data):
    options = PipelineOptions(
        running_mode=RunningMode.VIDEO, detect_every=3, smoothing=SmoothingOptions(method="window", window=4)
    )
    pipeline, model, detector = scripted_pipeline(options=options)
    source = VideoSource(str(shared_data / VIDEO))
    results = []
    for frame in source.frames():
        results.append(pipeline.process(frame.image, frame.source, frame.index, frame.capture_ms))
        if len(results) == 9:
            break
    source.close()
    assert detector.calls == 3  # frames 0, 3, 6
    assert model.calls == 9  # liveness still runs on every frame, on the carried box
    assert {f.track for r in results for f in r.faces} == {1}
    assert results[1].faces[0].box == results[0].faces[0].box  # carried unchanged between detections
    assert [r.faces[0].decision for r in results] == ["uncertain"] * 3 + ["real"] * 6
    assert results[0].faces[0].reason.startswith("track warming up")
    with pytest.raises(ValueError, match="increasing frame numbers"):
        pipeline.process(frame.image, frame.source, 0)  # a frame number that goes back: another stream


@pytest.mark.data
@pytest.mark.parametrize(
    "quality, reason",
    [
        (QualityOptions(min_face_px=1000), "face too small"),
        (QualityOptions(dark_mean=250), "too dark"),
        (QualityOptions(min_sharpness=1e9), "too blurred"),
    ],
)
def test_quality_checks_make_faces_uncertain(shared_data, quality, reason):
    pipeline, _, _ = scripted_pipeline(options=replace(STILL, quality=quality))
    (face,) = pipeline.process(cv2.imread(str(nuaa_files(shared_data, "real", 1)[0]))).faces
    assert face.decision == "uncertain" and face.reason.startswith(reason)


@pytest.mark.data
def test_default_quality_checks_catch_darkness_and_blur_not_normal_frames(shared_data):
    pipeline, _, _ = scripted_pipeline(options=STILL)
    img = cv2.imread(str(nuaa_files(shared_data, "real", 1)[0]))
    assert pipeline.process(img).faces[0].reason is None
    dark = (img * 0.12).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 12)
    for frame, reason in ((dark, "too dark"), (blurred, "too blurred")):
        faces = pipeline.process(frame).faces
        assert all(f.decision == "uncertain" and f.reason.startswith(reason) for f in faces)


@pytest.mark.data
def test_face_cut_by_the_frame_edge_is_uncertain(shared_data):
    img = cv2.imread(str(nuaa_files(shared_data, "real", 1)[0]))
    pipeline, _, _ = scripted_pipeline(options=STILL)
    x1, y1, x2, y2 = pipeline.process(img).faces[0].box
    cut = np.ascontiguousarray(img[:, int((x1 + x2) / 2) - 20 :])  # left part of the face (and context) gone
    faces = pipeline.process(cut).faces
    assert faces and all(f.decision == "uncertain" for f in faces)
    assert any("cut by the frame edge" in f.reason for f in faces)


def test_from_manifest_loads_and_describes(runtime_manifest):
    pipeline = LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(threads=2))
    assert f"{PipelineOptions().model} int8" in pipeline.description and "2 threads" in pipeline.description
    assert pipeline.band[0] < pipeline.threshold < pipeline.band[1]
    assert pipeline.process(np.zeros((240, 320, 3), np.uint8)).faces == []


def test_corrupted_model_file_is_refused(runtime_manifest, tmp_path):
    manifest = copy_manifest(runtime_manifest, tmp_path)
    entry = Manifest.load(manifest).model(PipelineOptions().model, "onnx", "fp32")
    target = tmp_path / entry.file
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest") as e:
        LivenessPipeline.from_manifest(manifest, PipelineOptions(backend="onnx", precision="fp32"))
    assert e.value.exit_code == 3


def test_missing_model_and_unknown_entries(runtime_manifest, tmp_path):
    manifest = copy_manifest(runtime_manifest, tmp_path)
    (tmp_path / Manifest.load(manifest).model(PipelineOptions().model, "onnx", "fp32").file).unlink()
    with pytest.raises(ModelError, match="model file missing"):
        LivenessPipeline.from_manifest(manifest, PipelineOptions(backend="onnx", precision="fp32"))
    data = json.loads(manifest.read_text())
    data["models"] = [m for m in data["models"] if m["name"] != "mobilenetv3"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="no mobilenetv3"):
        LivenessPipeline.from_manifest(manifest, PipelineOptions(model="mobilenetv3"))


def test_explicit_model_path_trusted_by_digest_or_run_with_a_warning(runtime_manifest, tmp_path, caplog):
    src = Manifest.load(runtime_manifest)
    entry = src.model(PipelineOptions().model, "onnx", "fp32")
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(src.path_of(entry).read_bytes())
    with caplog.at_level(logging.WARNING, logger="liveness_edge"):
        LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(model_path=str(renamed)))
    assert "not in the manifest" not in caplog.text  # same sha256 as a manifest entry: trusted
    retrained = tmp_path / "retrained.onnx"
    write_tiny_onnx(retrained, entry.preprocessing.size, gain=0.07)
    with pytest.raises(UsageError, match="--sha256, or --allow-unverified"):
        LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(model_path=str(retrained)))
    with caplog.at_level(logging.WARNING, logger="liveness_edge"):
        pipeline = LivenessPipeline.from_manifest(
            runtime_manifest, PipelineOptions(model_path=str(retrained), allow_unverified=True)
        )
    assert "retrained.onnx is not in the manifest" in caplog.text and not pipeline.verified
    assert pipeline.preprocessing == entry.preprocessing and pipeline.threshold == entry.threshold
    digest = hashlib.sha256(retrained.read_bytes()).hexdigest()
    assert LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(model_path=str(retrained), model_sha256=digest)).verified
    with pytest.raises(ModelError, match="does not match --sha256"):
        LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(model_path=str(renamed), model_sha256=digest))
    with pytest.raises(ModelError, match="missing"):
        LivenessPipeline.from_manifest(runtime_manifest, PipelineOptions(model_path=str(tmp_path / "nope.onnx")))


def test_auto_backend_follows_manifest_latency(runtime_manifest):
    m = Manifest.load(runtime_manifest)
    base = m.models[0]
    fast_onnx = [replace(base, format="onnx", verification={"latency_ms_median": 0.4}),
                 replace(base, format="tflite", verification={"latency_ms_median": 0.9})]
    assert choose_backend(Manifest(fast_onnx, []), base.name, base.precision) == "onnx"
    fast_lite = [replace(base, format="onnx", verification={"latency_ms": 0.9}),
                 replace(base, format="tflite", verification={"latency_ms": 0.4})]
    assert choose_backend(Manifest(fast_lite, []), base.name, base.precision) == "tflite"
    unknown = [replace(base, format="onnx", verification={}), replace(base, format="tflite", verification={})]
    assert choose_backend(Manifest(unknown, []), base.name, base.precision) == "tflite"
    only_onnx = [replace(base, format="onnx", verification={})]
    assert choose_backend(Manifest(only_onnx, []), base.name, base.precision) == "onnx"
