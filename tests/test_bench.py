"""bench building blocks without models: statistics, frame reading, labelled folders, report writers, CLI errors."""
from __future__ import annotations

import itertools
import json

from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.benchmarks import cli
from liveness_edge.benchmarks.accuracy import AccuracyResult, AccuracyRun, ImageOutcome, scan_labelled
from liveness_edge.benchmarks.latency import BenchConfig, BenchRun, ConfigResult, measure, read_frames
from liveness_edge.benchmarks.report import (
    compare_runs,
    latency_table,
    speedup,
    write_accuracy_report,
    write_json,
    write_latency_report,
)
from liveness_edge.benchmarks.timer import StageRecorder, summarize
from liveness_edge.runtime.errors import SourceError
from liveness_edge.runtime.labels import label_from_parts
from liveness_edge.train.metrics import pad_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_summarize_known_samples():
    s = summarize(list(range(1, 101)))
    assert s.n == 100
    assert s.median == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)  # linear interpolation between the 90th and 91st values
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5)
    assert s.fps == pytest.approx(1000 / 50.5)
    one = summarize([4.0])
    assert (one.median, one.p90, one.p99, one.fps) == (4.0, 4.0, 4.0, 250.0)
    with pytest.raises(ValueError):
        summarize([])


def test_stage_recorder_keeps_stage_order_and_values():
    rec = StageRecorder()
    for ms in (1.0, 3.0, 2.0):
        rec.add("detect", ms)
        rec.add("total", ms * 2)
    stats = rec.stats()
    assert list(stats) == ["detect", "total"]
    assert stats["detect"].median == 2.0 and stats["total"].mean == pytest.approx(4.0)


def _fake_result(kind: str, total_ms: list[float], **config) -> ConfigResult:
    rec = StageRecorder()
    for t in total_ms:
        rec.add("capture", 1.0)
        rec.add("detect", t * 0.5)
        if kind != "detector":
            rec.add("crop", t * 0.1)
            rec.add("infer", t * 0.3)
            rec.add("decide", t * 0.05)
        rec.add("total", t)
    cfg = BenchConfig(kind=kind, **config)
    return ConfigResult(cfg, "ok", stages=rec.stats(), samples=rec.samples, load_ms=10.0, peak_rss_mb=80.0,
                        model_bytes=1000, detector_bytes=2000, faces_per_frame=1.0)


def _fake_run(scale: float = 1.0) -> BenchRun:
    rng = np.random.default_rng(0)
    results = [
        _fake_result("baseline", list(100 * scale + rng.random(20))),
        _fake_result("detector", list(2 * scale + rng.random(20)), backend="onnx"),
        _fake_result("pipeline", list(5 * scale + rng.random(20)), model="m", backend="onnx", precision="int8"),
        ConfigResult(BenchConfig(kind="pipeline", model="m", backend="bogus", precision="int8"), "failed", "no bogus"),
    ]
    return BenchRun({"cpu": "test cpu", "created": "now"}, {}, results)


def test_latency_report_files_table_and_json_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the shipped manifest's path is then outside the working folder: kept as is
    run = _fake_run()
    paths = write_latency_report(run, tmp_path)
    for key in ("stages", "distribution"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC
    table = paths["table"].read_text()
    assert "| m bogus int8 1t | failed: no bogus |" in table
    base, pipe = run.results[0], run.results[2]
    expected = base.stages["total"].mean / pipe.stages["total"].mean
    assert speedup(pipe, base) == pytest.approx(expected)
    assert f"{expected:.1f}x" in latency_table(run)
    loaded = BenchRun.from_dict(json.loads(paths["json"].read_text()))
    assert [r.config for r in loaded.results] == [r.config for r in run.results]
    assert loaded.results[2].stages["total"].median == pytest.approx(pipe.stages["total"].median)
    assert loaded.results[3].status == "failed" and loaded.results[3].error == "no bogus"


def test_compare_prints_ratios(tmp_path):
    a, b = _fake_run(1.0), _fake_run(2.0)
    text = compare_runs(a, b)
    pa, pb = a.results[2].stages["total"], b.results[2].stages["total"]
    assert f"| m onnx int8 1t | {pa.median:.2f} | {pb.median:.2f} | {pb.median / pa.median:.2f} |" in text
    assert "bogus" not in text  # failed rows have nothing to compare
    (tmp_path / "a.json").write_text(json.dumps(a.to_dict()))
    (tmp_path / "b.json").write_text(json.dumps(b.to_dict()))
    assert cli.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["--compare", str(tmp_path / "missing.json"), str(tmp_path / "missing.json")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("bench: error: no such file") and err.count("\n") == 1
    assert cli.main(["accuracy", str(tmp_path / "nowhere")]) == SourceError.exit_code
    assert "labelled folder not found" in capsys.readouterr().err


def test_unknown_configuration_kind_is_a_failed_row():
    result = measure(BenchConfig(kind="teleport", source="unused"))
    assert result.status == "failed" and "teleport" in result.error


def test_read_frames_cycles_a_video_and_an_image_folder(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * (i + 1), np.uint8))
    writer.release()
    frames = list(itertools.islice(read_frames(str(video)), 7))
    levels = [int(round(f.mean())) for f, _ in frames]
    assert levels[:3] == levels[3:6] and levels[6] == levels[0] and len(set(levels[:3])) == 3
    assert all(ms >= 0 for _, ms in frames)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i * 100, np.uint8))
    images = [f.mean() for f, _ in itertools.islice(read_frames(str(tmp_path)), 4)]
    assert images == [0.0, 100.0, 0.0, 100.0]
    with pytest.raises(SourceError):
        next(read_frames(str(tmp_path / "missing.mp4")))


def _touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))


def test_scan_labelled_any_depth_with_attack_types_as_gathering_reads_them(tmp_path):
    for rel in ("a/real/x.png", "a/b/real/deep/y.jpg", "spoof/print/p.png", "spoof/replay/phone/r.png",
                "spoof/s.png", "other/z.png", "b/live/l.png", "b/fake/mask/f.png"):
        _touch_image(tmp_path / rel)
    (tmp_path / "spoof" / "notes.txt").write_text("not an image")
    found = {str(i.path.relative_to(tmp_path)): (i.label, i.attack) for i in scan_labelled([tmp_path])}
    assert found == {
        "a/real/x.png": (1, "none"),
        "a/b/real/deep/y.jpg": (1, "none"),
        "spoof/print/p.png": (0, "print"),
        "spoof/replay/phone/r.png": (0, "replay"),
        "spoof/s.png": (0, "unknown"),
        "b/live/l.png": (1, "none"),
        "b/fake/mask/f.png": (0, "mask"),
    }
    for rel, (label, attack) in found.items():  # the parser gathering and calibration use (train.data re-exports it)
        parts = Path(rel).parts[:-1]
        assert label_from_parts(parts) == (("real" if label else "spoof"), attack)
    with pytest.raises(SourceError):
        scan_labelled([tmp_path / "other"])


def test_accuracy_report_files(tmp_path):
    outcomes = [
        ImageOutcome("r1", 1, "", 0.9, "real", None),
        ImageOutcome("r2", 1, "", None, "no face", None),
        ImageOutcome("s1", 0, "print", 0.2, "spoof", None),
        ImageOutcome("s2", 0, "replay", 0.7, "real", None),
    ]
    y = [o.label for o in outcomes]
    attacks = [o.attack for o in outcomes]
    result = AccuracyResult("m", "onnx", "int8", "ok", threshold=0.5, outcomes=outcomes,
                            metrics=pad_metrics(y, [o.score for o in outcomes], 0.5, attacks),
                            decision_metrics=pad_metrics(y, [1.0, 0.0, 0.0, 1.0], 0.5, attacks))
    failed = AccuracyResult("m", "bogus", "int8", "failed", "no such backend")
    run = AccuracyRun({}, {"data": ["somewhere"]}, [], [result, failed])
    paths = write_accuracy_report(run, tmp_path)
    assert paths["roc"].read_bytes()[:8] == PNG_MAGIC
    table = paths["table"].read_text()
    assert "print 0.0%, replay 100.0%" in table and "failed: no such backend" in table
    assert "50.0% / 100.0%" in table  # faces found: 1 of 2 real, 2 of 2 spoof
    data = json.loads(paths["json"].read_text())
    assert data["results"][0]["metrics"]["bpcer"] == 0.5 and data["results"][0]["decisions"]["real"]["no face"] == 1


def test_reports_name_no_folder_of_the_machine_that_made_them(tmp_path, monkeypatch):
    """Paths below the working folder are written relative to it (reference results are committed)."""
    monkeypatch.chdir(tmp_path)
    inside, outside = str(tmp_path / "artifacts" / "manifest.json"), "/elsewhere/clip.mp4"
    write_json({"manifest": inside, "runs": [{"source": outside, "n": 3}]}, "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == {"manifest": "artifacts/manifest.json", "runs": [{"source": outside, "n": 3}]}
