import json

import pytest

from liveness_edge.runtime.errors import ManifestError, ModelError
from liveness_edge.runtime.manifest import DetectorEntry, Manifest, ModelEntry, TensorSpec, sha256_of
from liveness_edge.runtime.preprocessing import Preprocessing


def small_manifest(root, payload: bytes = b"model bytes") -> Manifest:
    (root / "m").mkdir()
    f = root / "m" / "tiny.fp32.onnx"
    f.write_bytes(payload)
    entry = ModelEntry(
        name="tiny",
        format="onnx",
        precision="fp32",
        file="m/tiny.fp32.onnx",
        sha256=sha256_of(f),
        bytes=len(payload),
        input=TensorSpec([1, 32, 32, 3], "float32"),
        output=TensorSpec([1, 2], "float32"),
        preprocessing=Preprocessing(size=32, context=2.0),
        labels=["spoof", "real"],
        threshold=0.5,
    )
    det = DetectorEntry("blazeface_short", "short", "onnx", "d.onnx", "0" * 64, 1)
    return Manifest([entry], [det], {"onnxruntime": "x"}, "now", root)


def test_round_trip_and_lookup(tmp_path):
    m = small_manifest(tmp_path)
    m.save(tmp_path / "manifest.json")
    loaded = Manifest.load(tmp_path / "manifest.json")
    assert loaded.models == m.models and loaded.detectors == m.detectors
    assert loaded.model("tiny", "onnx", "fp32").preprocessing.size == 32
    assert loaded.verified_path(loaded.models[0]) == (tmp_path / "m" / "tiny.fp32.onnx").resolve()
    assert loaded.find_by_path(tmp_path / "m" / "tiny.fp32.onnx") == loaded.models[0]
    with pytest.raises(ManifestError, match="tiny/onnx/fp32"):
        loaded.model("tiny", "tflite", "int8")


def test_a_modified_model_file_is_refused(tmp_path):
    m = small_manifest(tmp_path)
    (tmp_path / "m" / "tiny.fp32.onnx").write_bytes(b"swapped model")
    with pytest.raises(ModelError, match="does not match the manifest"):
        m.verified_path(m.models[0])
    (tmp_path / "m" / "tiny.fp32.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        m.verified_path(m.models[0])


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "not found"),
        ("{not json", "not readable JSON"),
        (json.dumps({"schema_version": 99}), "schema_version"),
        (json.dumps({"schema_version": 1, "models": [{"name": "x"}], "detectors": []}), "malformed"),
    ],
)
def test_bad_manifests_give_one_clear_error(tmp_path, text, message):
    path = tmp_path / "manifest.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        Manifest.load(path)
