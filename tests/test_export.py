"""export-models on a tiny Keras model built here: every format through the runtime's backends against Keras,
the manifest it writes, sha256 refusal, broken files and the int8 byte input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.export.calibration import CropSet
from liveness_edge.export.cli import main
from liveness_edge.export.exporter import export_models
from liveness_edge.export.options import ExportError, ExportOptions
from liveness_edge.runtime.backends import open_model
from liveness_edge.runtime.errors import ModelError
from liveness_edge.runtime.liveness import LivenessModel
from liveness_edge.runtime.manifest import ARTIFACTS_DIR, Manifest
from liveness_edge.runtime.preprocessing import Preprocessing
from liveness_edge.train.data import write_index_rows
from liveness_edge.train.models import numpy2_deprecations_hushed

SIZE = 16
PREPROCESSING = Preprocessing(size=SIZE, context=2.7)
FAST = dict(calibration_size=40, heldout_size=40, latency_rounds=1, detector=False)


def synthetic_crop(rng: np.random.Generator, real: bool) -> np.ndarray:
    """A 128 px BGR "crop": smooth warm blobs for real, hard stripes for spoof, both using the full 0..255."""
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = cv2.resize(base, (128, 128), interpolation=cv2.INTER_CUBIC if real else cv2.INTER_NEAREST)
    if not real:
        image[::4] = 255 - image[::4]
    return image


def write_crops(root: Path, n: int, seed: int) -> list[dict]:
    """Crops as a gathered folder would hold them: real/ and spoof/ images plus index.csv rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "real" if i % 2 else "spoof"
        rel = f"{label}/s{seed}_{i:03d}.png"
        (root / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), synthetic_crop(rng, label == "real"))
        rows.append({"file": rel, "label": label, "attack": "none" if label == "real" else "print",
                     "source": "syn", "group": f"syn:{'train' if seed == 0 else 'test'}{i % 4}", "context": 2.7})
    return rows


def tiny_model(x: np.ndarray, y: np.ndarray):
    """Rescaling inside the graph (the project convention) + conv/BN/pool + softmax over [spoof, real]."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    h = layers.Rescaling(1.0 / 255.0)(inputs)
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    outputs = layers.Dense(2, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run dir (model.keras + config.json) whose data and split point at synthetic crops."""
    root = tmp_path_factory.mktemp("tiny")
    data = root / "gathered"
    rows = write_crops(data, 80, seed=0) + write_crops(data, 60, seed=1)
    write_index_rows(data, rows)
    train = [r for r in rows if "train" in r["group"]]
    x = np.stack([PREPROCESSING.apply(cv2.imread(str(data / r["file"]))) for r in train])
    y = np.array([r["label"] == "real" for r in train], np.int64)
    run = root / "tiny"
    run.mkdir()
    with numpy2_deprecations_hushed():  # Keras reads each variable with np.array when saving
        tiny_model(x, y).save(run / "model.keras")
    config = {
        "name": "tiny", "preprocessing": PREPROCESSING.to_dict(), "labels": ["spoof", "real"], "threshold": 0.5,
        "input_shape": [SIZE, SIZE, 3], "seed": 0, "data": {"path": str(data)},
        "split": {side: {"groups": sorted({r["group"] for r in rows if side in r["group"]})}
                  for side in ("train", "test")},
    }
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory) -> Path:
    """The output folder of one full export (4 files, manifest, verification.md)."""
    out = tmp_path_factory.mktemp("artifacts")
    export_models([tiny_run], ExportOptions(out=out, **FAST))
    return out


def keras_p_real(run: Path, crops: list[np.ndarray]) -> np.ndarray:
    import keras

    model = keras.models.load_model(run / "model.keras")
    return model.predict(np.stack([PREPROCESSING.apply(c) for c in crops]), verbose=0)[:, 1]


@pytest.mark.slow
def test_every_format_round_trips_through_the_runtime(tiny_run, exported):
    manifest = Manifest.load(exported / "manifest.json")
    assert {(m.format, m.precision) for m in manifest.models} == {
        ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")}
    rng = np.random.default_rng(7)
    crops = [synthetic_crop(rng, bool(i % 2)) for i in range(20)]
    expected = keras_p_real(tiny_run, crops)
    assert expected.std() > 0.05, "the tiny model should not be constant"
    for entry in manifest.models:
        model = LivenessModel(open_model(manifest.verified_path(entry)), entry.preprocessing, entry.labels)
        got = np.array([model.predict(c) for c in crops])
        if entry.precision == "fp32":
            np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=entry.file)
        else:
            assert np.abs(got - expected).mean() < 0.05, entry.file
            assert ((got >= 0.5) == (expected >= 0.5)).mean() >= 0.9, entry.file


@pytest.mark.slow
def test_manifest_describes_each_file(exported):
    manifest = Manifest.load(exported / "manifest.json")
    assert manifest.versions["tensorflow"] and manifest.versions["onnxruntime"] and manifest.versions["tf2onnx"]
    for entry in manifest.models:
        assert entry.file == f"tiny/tiny.{entry.precision}.{entry.format}"
        assert entry.preprocessing == PREPROCESSING and entry.labels == ["spoof", "real"]
        assert entry.bytes == (exported / entry.file).stat().st_size
        assert entry.input.shape == [1, SIZE, SIZE, 3]
        v = entry.verification
        assert v["n"] == 40 and 0.0 <= v["agreement"] <= 1.0 and v["latency_ms_median"] > 0
        assert "accuracy" in v and "d_acer" in v and "test" in v["heldout"]
        if entry.precision == "fp32":
            assert v["max_abs_dp"] < 1e-4
        if entry.format == "onnx":
            assert entry.extra["opset"] == 17
    tflite_fp32 = manifest.model("tiny", "tflite", "fp32")
    assert manifest.model("tiny", "tflite", "int8").bytes < tflite_fp32.bytes
    assert "tiny/tiny.int8.tflite" in (exported / "verification.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_edge_pixels(tiny_run, exported, fmt):
    """All-black and all-white crops give Keras' answer (calibration covered the full 0..255 range). A uint8
    input (TFLite; ONNX only with float_convs=0) has scale 1 / zero point 0: pixels 0 and 255 go in as
    they are, so the runtime passes the camera's bytes straight through."""
    manifest = Manifest.load(exported / "manifest.json")
    entry = manifest.model("tiny", fmt, "int8")
    backend = open_model(manifest.verified_path(entry))
    model = LivenessModel(backend, entry.preprocessing, entry.labels)
    if fmt == "tflite" or not entry.extra["quantization"]["float_convs"]:
        assert (entry.input.dtype, entry.input.scale, entry.input.zero_point) == ("uint8", 1.0, 0)
        edges = np.array([0.0, 255.0], np.float32)
        np.testing.assert_array_equal(backend.inputs[0].quantize(edges), np.array([0, 255], np.uint8))
        assert fmt == "onnx" or model._uint8_passthrough
    else:
        assert entry.input.dtype == "float32"
    crops = [np.zeros((128, 128, 3), np.uint8), np.full((128, 128, 3), 255, np.uint8)]
    got = np.array([model.predict(c) for c in crops])
    np.testing.assert_allclose(got, keras_p_real(tiny_run, crops), atol=0.05)


@pytest.mark.slow
def test_onnx_int8_with_a_uint8_input(tiny_run, tmp_path):
    """With no float convolutions the ONNX int8 input is uint8 bytes (the identity QuantizeLinear removed)."""
    from liveness_edge.export.calibration import representative_inputs
    from liveness_edge.export.exporter import load_run
    from liveness_edge.export.options import OnnxQuantOptions
    from liveness_edge.export.to_onnx import keras_to_onnx, quantize_onnx

    run = load_run(tiny_run)
    crops = [synthetic_crop(np.random.default_rng(i), bool(i % 2)) for i in range(30)]
    inputs = representative_inputs(CropSet(crops, np.zeros(30), ["none"] * 30, "syn"), PREPROCESSING)
    keras_to_onnx(run.model, tmp_path / "f.onnx", 17)
    quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", inputs, OnnxQuantOptions(float_convs=0))
    backend = open_model(tmp_path / "q.onnx")
    assert backend.inputs[0].dtype == np.uint8
    model = LivenessModel(backend, PREPROCESSING, ["spoof", "real"])
    got = np.array([model.predict(c) for c in crops])
    assert np.abs(got - keras_p_real(tiny_run, crops)).mean() < 0.05


@pytest.mark.slow
def test_int8_settings_are_chosen_by_measurement(exported):
    """The ONNX float prefix is the cheapest measured candidate within the drift limit; TFLite keeps
    per-tensor weights only if they drift at most 10 % more than per-channel ones."""
    manifest = Manifest.load(exported / "manifest.json")
    onnx_tuning = manifest.model("tiny", "onnx", "int8").extra["tuning"]
    allowed = [t for t in onnx_tuning["trials"] if t["drift"] <= 0.05]
    assert allowed and onnx_tuning["chosen"] == min(allowed, key=lambda t: t["cost"])["setting"]
    assert all(t["cost"] > 0 for t in onnx_tuning["trials"])
    entry = manifest.model("tiny", "tflite", "int8")
    channel, tensor = entry.extra["tuning"]["trials"]
    per_tensor = tensor["drift"] <= min(0.05, 1.1 * channel["drift"])
    assert entry.extra["tuning"]["chosen"] == ("per_tensor" if per_tensor else "per_channel")
    assert entry.extra["quantization"]["per_channel"] is not per_tensor


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_verify_is_read_only_and_reports_to_out(tiny_run, exported, tmp_path, capsys):
    shipped = tmp_path / "shipped"
    shutil.copytree(exported, shipped)
    before = _snapshot(shipped)
    report = tmp_path / "report"
    argv = [str(tiny_run), "--verify", "--manifest", str(shipped / "manifest.json")]
    assert main([*argv, "--out", str(report)]) == 0
    assert "tiny.int8.onnx" in (report / "verification.md").read_text()
    checked = Manifest.load(report / "manifest.verified.json")
    assert {m.file for m in checked.models} == {m.file for m in Manifest.load(shipped / "manifest.json").models}
    assert all(m.verification.get("n") for m in checked.models)
    code, err = _cli_error([*argv, "--out", str(shipped)], capsys)
    assert code == 2 and "only reads" in err
    assert _snapshot(shipped) == before


def test_verify_never_writes_beside_the_shipped_manifest(capsys):
    tracked = [ARTIFACTS_DIR / "manifest.json", ARTIFACTS_DIR / "verification.md"]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in tracked]
    code, err = _cli_error(["--verify", "--out", str(ARTIFACTS_DIR)], capsys)
    assert code == 2 and "only reads" in err
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in tracked] == before


@pytest.mark.slow
def test_a_modified_file_is_refused_by_verify(tiny_run, exported, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    target = out / "tiny" / "tiny.fp32.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    before = _snapshot(out)
    report = tmp_path / "report"
    code, err = _cli_error([str(tiny_run), "--manifest", str(out / "manifest.json"), "--out", str(report),
                            "--verify"], capsys)
    assert code == ModelError.exit_code and "does not match the manifest" in err
    assert "## Failed" in (report / "verification.md").read_text()
    assert _snapshot(out) == before


@pytest.mark.slow
def test_truncated_model_files_give_a_clear_error(exported, tmp_path):
    for name in ("tiny.fp32.onnx", "tiny.int8.tflite"):
        broken = tmp_path / name
        broken.write_bytes((exported / "tiny" / name).read_bytes()[:200])
        with pytest.raises(ModelError, match="cannot load"):
            open_model(broken)


@pytest.mark.slow
def test_a_broken_conversion_is_not_shipped(tiny_run, exported, tmp_path):
    """With an impossible float32 tolerance the export fails and the previous files and manifest stay."""
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = (out / "manifest.json").read_text()
    options = ExportOptions(out=out, formats=("onnx",), precisions=("fp32",), fp32_tolerance=-1.0, **FAST)
    with pytest.raises(ExportError, match="disagrees with Keras"):
        export_models([tiny_run], options)
    assert (out / "manifest.json").read_text() == before
    Manifest.load(out / "manifest.json").verified_path(Manifest.load(out / "manifest.json").models[0])
    assert not (out / ".export-staging").exists()


def _cli_error(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return code, err


def test_a_missing_run_dir_is_one_line(tmp_path, capsys):
    code, err = _cli_error([str(tmp_path / "nope"), "--out", str(tmp_path)], capsys)
    assert code == ModelError.exit_code and "run directory not found" in err
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.slow
def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_run, corrupt)
    (corrupt / "model.keras").write_bytes(b"not a keras file")
    code, err = _cli_error([str(corrupt), "--out", str(tmp_path / "o1")], capsys)
    assert code == ModelError.exit_code and "cannot load" in err

    no_data = tmp_path / "no_data"
    shutil.copytree(tiny_run, no_data)
    config = json.loads((no_data / "config.json").read_text())
    config["data"]["path"] = str(tmp_path / "missing")
    (no_data / "config.json").write_text(json.dumps(config))
    code, err = _cli_error([str(no_data), "--out", str(tmp_path / "o2")], capsys)
    assert code == 5 and "--calibration" in err
    assert not (tmp_path / "o2" / "manifest.json").exists()


@pytest.mark.data
@pytest.mark.parametrize("variant", ["short", "full"])
def test_detector_onnx_matches_the_tflite_on_real_frames(shared_data, tmp_path, variant):
    from liveness_edge.export.to_onnx import tflite_to_onnx
    from liveness_edge.export.verify import check_detector
    from liveness_edge.runtime.detector import FACE_DETECTOR_DIR, MODEL_FILES

    frames = [cv2.imread(str(p)) for p in sorted((shared_data / "silentface_samples").rglob("*.jpg"))]
    assert frames and all(f is not None for f in frames)
    onnx_path = tmp_path / f"blazeface_{variant}.onnx"
    tflite_to_onnx(FACE_DETECTOR_DIR / MODEL_FILES[variant], onnx_path, 17)
    check = check_detector(FACE_DETECTOR_DIR / MODEL_FILES[variant], onnx_path, frames, variant, onnx_path.name)
    assert check.max_rel_diff < 1e-4 and check.same_faces
