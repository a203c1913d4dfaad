"""Writers and summary: the JSONL record, drawing, and the end-of-run numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from liveness_edge.runtime.output import JsonlWriter, RunSummary, frame_record
from liveness_edge.runtime.overlay import COLOURS, draw
from liveness_edge.runtime.types import FaceResult, FrameResult, StageTimes


def result(frame=0, decisions=("real", "spoof"), total=10.0):
    faces = [
        FaceResult(i + 1, (10.0 + 100 * i, 20.0, 90.0 + 100 * i, 100.0), 0.9, 0.8, 0.75, d,
                   None if d != "uncertain" else "too dark (mean 12 < 40)")
        for i, d in enumerate(decisions)
    ]
    times = StageTimes(capture=1.0, detect=2.0, crop=0.5, infer=1.0, decide=0.25, total=total)
    return FrameResult("cam", frame, faces, times)


def test_frame_record_is_the_documented_schema():
    rec = frame_record(result(decisions=("uncertain",)))
    assert rec == {
        "source": "cam",
        "frame": 0,
        "time_ms": {"capture": 1.0, "detect": 2.0, "liveness": 1.75, "total": 10.0},
        "faces": [{"track": 1, "box": [10.0, 20.0, 90.0, 100.0], "detector_score": 0.9, "p_real": 0.8,
                   "p_real_smoothed": 0.75, "decision": "uncertain", "reason": "too dark (mean 12 < 40)"}],
    }


def test_jsonl_writer_flushes_each_line(tmp_path):
    path = tmp_path / "r.jsonl"
    writer = JsonlWriter(str(path))
    writer.write(result(0))
    assert json.loads(path.read_text())["frame"] == 0  # readable before close: flushed per frame
    writer.write(result(1, decisions=()))
    writer.close()
    writer.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["faces"] for x in lines][1] == []


def test_summary_counts_and_percentiles():
    s = RunSummary()
    for i, total in enumerate([10.0, 20.0, 30.0, 40.0]):
        s.add(result(i, decisions=("real", "uncertain") if i else (), total=total))
    s.finish()
    d = s.to_dict()
    assert d["frames"] == 4 and d["faces"] == 6 and d["frames_with_faces"] == 3
    assert d["decisions"] == {"real": 3, "spoof": 0, "uncertain": 3}
    assert d["median_ms"]["total"] == pytest.approx(25.0) and d["p90_ms"]["total"] == pytest.approx(37.0)
    assert d["median_ms"]["liveness"] == pytest.approx(1.75)
    assert "4 frames (3 with a face), 6 faces: real 3, spoof 0, uncertain 3" in s.format()


def test_draw_colours_boxes_by_decision():
    image = np.zeros((200, 300, 3), np.uint8)
    draw(image, result(), fps=30.0)
    assert tuple(image[60, 10]) == COLOURS["real"]  # left edge of the first box
    assert tuple(image[60, 110]) == COLOURS["spoof"]
