"""Issue 11 items 6 and 8 (manifest side): model files are read once, hashed and loaded from those bytes;
manifest paths stay inside the manifest's folder; a manifest that would decide wrongly is refused (exit 4)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from liveness_edge.runtime.errors import ManifestError
from liveness_edge.runtime.manifest import Manifest, resolve
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from runtime_helpers import build_tiny_manifest


@pytest.fixture
def tiny(tmp_path):
    pytest.importorskip("onnxruntime")
    return build_tiny_manifest(tmp_path / "artifacts")


def edited(manifest_path, change) -> None:
    data = json.loads(manifest_path.read_text())
    change(data)
    manifest_path.write_text(json.dumps(data))


def test_the_checked_bytes_are_the_loaded_bytes(tiny):
    """No check-then-open race: once resolved, swapping the file on disk changes nothing that is loaded."""
    options = PipelineOptions(backend="onnx", precision="fp32")
    files = resolve(Manifest.load(tiny), options)
    files.model_path.write_bytes(b"swapped after the check")
    pipeline = LivenessPipeline.from_resolved(files, options)
    assert 0.0 <= pipeline.model.predict(np.full((32, 32, 3), 120, np.uint8)) <= 1.0
    with pytest.raises(Exception, match="does not match the manifest"):  # a fresh resolve sees the swap
        resolve(Manifest.load(tiny), options)


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "../outside/evil.onnx", "/etc/hostname"])
def test_manifest_paths_must_stay_inside_its_folder(tiny, target):
    outside = tiny.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "evil.onnx").write_bytes((tiny.parent / "tiny" / "tiny.onnx").read_bytes())

    def point_outside(data):
        for m in data["models"]:
            m["file"] = target

    edited(tiny, point_outside)
    with pytest.raises(ManifestError, match="outside the manifest's folder") as e:
        LivenessPipeline.from_manifest(tiny, PipelineOptions(backend="onnx", precision="fp32"))
    assert e.value.exit_code == 4


def _set(key, value, where="models"):
    def change(data):
        for entry in data[where]:
            entry[key] = value
    return change


def _input_shape(shape):
    def change(data):
        for m in data["models"]:
            m["input"]["shape"] = shape
    return change


def _size(size):
    def change(data):
        for m in data["models"]:
            m["preprocessing"]["size"] = size
            m["input"]["shape"] = [1, size, size, 3]
    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("threshold", "0.5"), "threshold"),
        (_set("threshold", -0.2), "threshold"),
        (_set("threshold", 0), "threshold"),
        (_set("threshold", 1.0), "threshold"),
        (_set("threshold", float("nan")), "threshold"),
        (_set("labels", ["spoof", "live"]), "labels"),
        (_set("file", 7), "file"),
        (_set("file", 7, "detectors"), "file"),
        (_set("sha256", "abc"), "sha256"),
        (_set("format", "pickle"), "format"),
        (_set("variant", "huge", "detectors"), "variant"),
        (_input_shape([1, 64, 64, 3]), "input shape"),
        (_input_shape([1, 10**9, 10**9, 3]), "input shape"),
        (_size(10**6), "input size"),
    ],
    ids=["threshold-string", "threshold-negative", "threshold-zero", "threshold-one", "threshold-nan",
         "labels-without-real", "file-integer", "detector-file-integer", "bad-sha256", "bad-format",
         "bad-variant", "input-size-mismatch", "input-huge", "preprocessing-huge"],
)
def test_manifest_values_that_would_decide_wrongly_are_refused(tiny, change, message):
    edited(tiny, change)
    with pytest.raises(ManifestError, match=message) as e:
        Manifest.load(tiny)
    assert e.value.exit_code == 4
