"""bench end to end on the shipped models: a tiny latency matrix, the baseline row, and accuracy with a known answer."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from liveness_edge.benchmarks import baseline, cli
from liveness_edge.benchmarks.latency import SAMPLES_DIR, BenchConfig, default_clip, measure_isolated
from liveness_edge.runtime.manifest import DEFAULT_MANIFEST, Manifest


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    if not DEFAULT_MANIFEST.is_file() or not SAMPLES_DIR.is_dir():
        pytest.skip(f"needs the exported models ({DEFAULT_MANIFEST}) and sample images ({SAMPLES_DIR})")
    return Manifest.load(DEFAULT_MANIFEST)


def test_tiny_matrix_runs_end_to_end_and_failures_become_rows(manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(baseline, "tensorflow_available", lambda: False)
    out = tmp_path / "out"
    argv = ["--models", "livenessnet", "--backends", "onnx,bogus", "--precision", "int8", "--threads", "1",
            "--frames", "4", "--warmup", "1", "--out", str(out)]
    assert cli.main(argv) == 1  # the bogus backend fails, the others still run
    rows = {r["name"]: r for r in json.loads((out / "latency.json").read_text())["results"]}
    assert set(rows) == {"baseline: OpenCV SSD + Keras predict", "detector only onnx 1t", "detector only bogus 1t",
                         "livenessnet onnx int8 1t", "livenessnet bogus int8 1t",
                         "livenessnet onnx int8 1t + challenge", "livenessnet bogus int8 1t + challenge"}
    assert rows["baseline: OpenCV SSD + Keras predict"]["status"] == "skipped"
    assert "TensorFlow" in rows["baseline: OpenCV SSD + Keras predict"]["error"]
    for name in ("detector only bogus 1t", "livenessnet bogus int8 1t", "livenessnet bogus int8 1t + challenge"):
        assert rows[name]["status"] == "failed" and "bogus" in rows[name]["error"]
    pipe, det = rows["livenessnet onnx int8 1t"], rows["detector only onnx 1t"]
    assert pipe["status"] == det["status"] == "ok"
    assert set(pipe["stages"]) == {"capture", "detect", "crop", "infer", "decide", "landmarks", "total"}
    assert pipe["stages"]["landmarks"]["median"] == 0.0  # no challenge: the landmark models never run
    active = rows["livenessnet onnx int8 1t + challenge"]
    assert active["status"] == "ok" and active["stages"]["landmarks"]["median"] > 0
    assert set(det["stages"]) == {"capture", "detect", "total"}
    assert all(len(v) == 4 for v in pipe["samples"].values())
    assert pipe["faces_per_frame"] == 1.0  # the generated clip shows one face
    assert pipe["model_bytes"] == manifest.model("livenessnet", "onnx", "int8").bytes
    assert pipe["peak_rss_mb"] > 0 and pipe["load_ms"] > 0
    table = capsys.readouterr().out
    assert "| livenessnet bogus int8 1t | failed:" in table and "| livenessnet onnx int8 1t | ok |" in table
    assert (out / "latency_stages.png").stat().st_size > 0 and (out / "latency_distribution.png").stat().st_size > 0


@pytest.mark.slow
def test_baseline_row_measures_the_classic_pipeline(manifest):
    if not baseline.tensorflow_available():
        pytest.skip("the baseline needs TensorFlow ([train] extra)")
    result = measure_isolated(BenchConfig(kind="baseline", frames=3, warmup=1))
    assert result.status == "ok", result.error
    assert result.faces_per_frame == 1.0
    assert result.stages["infer"].n == 3 and result.stages["detect"].median > 0


def test_accuracy_on_a_generated_folder_with_a_known_answer(manifest, tmp_path):
    data = tmp_path / "data"
    for sub in ("real", "spoof/print", "spoof/replay"):
        (data / sub).mkdir(parents=True)
    faces = default_clip(length=2)
    for i, frame in enumerate(faces):
        cv2.imwrite(str(data / "real" / f"face{i}.jpg"), frame)
    blank = np.full((480, 640, 3), 128, np.uint8)
    cv2.imwrite(str(data / "real" / "no_face.png"), blank)
    cv2.imwrite(str(data / "spoof" / "print" / "blank.png"), blank)
    cv2.imwrite(str(data / "spoof" / "replay" / "noise.png"),
                np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    (data / "real" / "corrupt.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    argv = ["accuracy", str(data), "--models", "livenessnet", "--backends", "onnx,bogus", "--precision", "int8",
            "--out", str(out)]
    assert cli.main(argv) == 1  # the bogus backend is a failed row; the onnx one is measured
    report = json.loads((out / "accuracy.json").read_text())
    ok, failed = report["results"]
    assert failed["status"] == "failed" and "bogus" in failed["error"]
    assert report["data"] == {"n_real": 4, "n_spoof": 2, "spoof_per_attack": {"print": 1, "replay": 1}}
    assert len(ok["images"]) == 5  # the corrupt file is reported and skipped
    assert ok["face_found_rate"] == {"real": pytest.approx(2 / 3), "spoof": 0.0}
    assert ok["decisions"]["real"]["no face"] == 1 and ok["decisions"]["spoof"]["no face"] == 2
    m = ok["metrics"]
    assert m["apcer_per_attack"] == {"print": 0.0, "replay": 0.0}  # spoofs without a face are rejected
    scores = [img["p_real"] for img in ok["images"] if img["p_real"] is not None]
    assert len(scores) == 2 and all(0.0 < p <= 1.0 for p in scores)
    rejected_faces = sum(p < ok["threshold"] for p in scores)
    assert m["bpcer"] == pytest.approx((1 + rejected_faces) / 3)  # the real without a face counts against BPCER
    assert m["auc"] == pytest.approx(5 / 6)  # 2 faces beat both spoofs; the faceless real ties them at 0
    assert (out / "accuracy_roc_det.png").stat().st_size > 0
