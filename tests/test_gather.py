"""liveness-gather end to end: synthetic inputs (no data needed) and a few real frames and crops from ../shared/data."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.train.data import INDEX_COLUMNS, GatherOptions, gather, load_index, output_name
from liveness_edge.train.gather_cli import main


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "index.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == INDEX_COLUMNS
        return list(reader)


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_blank_and_corrupt_images_are_counted_not_fatal(tmp_path: Path) -> None:
    src = tmp_path / "synthetic"
    (src / "Live").mkdir(parents=True)
    (src / "fake").mkdir()
    cv2.imwrite(str(src / "Live" / "blank.png"), np.zeros((120, 160, 3), np.uint8))
    (src / "fake" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (src / "fake" / "empty.png").write_bytes(b"")
    (src / "fake" / "broken.mp4").write_bytes(b"not a video at all")
    (src / "notes.txt").write_text("ignored")
    summary = gather(src, tmp_path / "out", GatherOptions())
    real, spoof = summary.counts[("synthetic", "real")], summary.counts[("synthetic", "spoof")]
    assert (real.images_read, real.no_face, real.faces_written) == (1, 1, 0)
    assert real.no_face_examples == ["Live/blank.png"]
    assert (spoof.images_read, spoof.unreadable) == (0, 3)
    assert _rows(tmp_path / "out") == []
    assert "| synthetic | spoof | 0 | 0 | 0 |" in summary.to_markdown()


def test_video_frames_are_sampled_with_skip(tmp_path: Path) -> None:
    frames = [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(10)]
    _write_video(tmp_path / "clips" / "spoof" / "replay" / "clip.avi", frames)
    options = GatherOptions(source="clips", skip=2, assume_cropped=True)  # no face: whole frame as the box
    summary = gather(tmp_path / "clips", tmp_path / "out", options)
    counts = summary.counts[("clips", "spoof")]
    assert (counts.images_read, counts.assumed_cropped, counts.faces_written) == (4, 4, 4)
    rows = _rows(tmp_path / "out")
    assert [int(r["frame"]) for r in rows] == [0, 3, 6, 9]
    assert {r["group"] for r in rows} == {"clips:spoof/replay/clip.avi"}
    assert {r["attack"] for r in rows} == {"replay"}
    assert rows[0]["file"] == "spoof/clips__spoof__replay__clip__f000000.jpg"
    crop = cv2.imread(str(tmp_path / "out" / rows[3]["file"]))
    assert crop.shape == (128, 128, 3)


def test_label_option_overrides_folders(tmp_path: Path) -> None:
    frames = [np.zeros((64, 64, 3), np.uint8)] * 3
    _write_video(tmp_path / "any" / "v.avi", frames)
    summary = gather(tmp_path / "any" / "v.avi", tmp_path / "out", GatherOptions(label="real", assume_cropped=True))
    assert list(summary.counts) == [("any", "real")]
    assert {r["attack"] for r in _rows(tmp_path / "out")} == {"none"}


def test_output_names_are_unique_and_traceable() -> None:
    assert output_name("nuaa", "real/0001_00.jpg", -1) == "nuaa__real__0001_00.jpg"
    assert output_name("nuaa", "spoof/0001_00.jpg", -1) != output_name("nuaa", "real/0001_00.jpg", -1)
    assert output_name("s", "v/a b.mp4", 12) == "s__v__a_b__f000012.jpg"


def test_cli_errors_are_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--input", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input not found" in err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "index.csv").write_text(",".join(INDEX_COLUMNS) + "\n")
    (tmp_path / "in").mkdir()
    assert main(["--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    assert "--append" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--context", "0"]) == 2


def _copy(shared: Path, dest: Path, rels: list[str]) -> None:
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / rel, dest / rel)


@pytest.mark.data
def test_gather_real_frames_and_crops(shared_data: Path, tmp_path: Path) -> None:
    nuaa = sorted(f"real/{p.name}" for p in (shared_data / "nuaa" / "real").glob("0001_*.jpg"))[:2]
    nuaa += sorted(f"spoof/{p.name}" for p in (shared_data / "nuaa" / "spoof").glob("0002_*.jpg"))[:2]
    _copy(shared_data / "nuaa", tmp_path / "nuaa", nuaa + ["index.csv"])
    selfrec = shared_data / "selfrec_trickyf0x"
    crops = sorted(f"{c}/{p.name}" for c in ("real", "spoof") for p in (selfrec / c).glob("*"))
    _copy(selfrec, tmp_path / "selfrec", crops[:2] + crops[-2:])
    out = tmp_path / "out"

    gather(tmp_path / "nuaa", out, GatherOptions(context=2.7))
    assert main(["--input", str(tmp_path / "selfrec"), "--out", str(out), "--source", "selfrec_x", "--append"]) == 0
    rows = _rows(out)
    assert len(rows) == 8
    by_source = {r["source"] for r in rows}
    assert by_source == {"nuaa", "selfrec_x"}
    nuaa_rows = [r for r in rows if r["source"] == "nuaa"]
    assert {(r["label"], r["group"]) for r in nuaa_rows} == {("real", "nuaa:0001"), ("spoof", "nuaa:0002")}
    assert all(r["frame"] == "-1" and float(r["detector_score"]) >= 0.5 for r in rows)
    for r in nuaa_rows:  # a real face box: a quarter to a third of the 640 px frame wide
        assert 80 < float(r["x2"]) - float(r["x1"]) < 320
        assert cv2.imread(str(out / r["file"])).shape == (128, 128, 3)
    assert {r["group"] for r in rows if r["source"] == "selfrec_x"} == {"selfrec_x:all"}

    gather(tmp_path / "nuaa", out, GatherOptions(context=2.7, append=True))  # again: no duplicate rows
    assert len(_rows(out)) == 8
    samples = load_index(out)
    assert {s.label for s in samples} == {0, 1} and all(s.path.is_file() for s in samples)


@pytest.mark.data
def test_video_of_a_real_face(shared_data: Path, tmp_path: Path) -> None:
    frame = cv2.imread(str(next((shared_data / "replayattack" / "real").glob("*.jpg"))))
    _write_video(tmp_path / "v" / "live" / "me.avi", [frame] * 6)
    summary = gather(tmp_path / "v", tmp_path / "out", GatherOptions(skip=1, context=1.5, crop_size=64))
    assert summary.counts[("v", "real")].faces_written == 3
    rows = _rows(tmp_path / "out")
    assert [r["frame"] for r in rows] == ["0", "2", "4"] and {r["context"] for r in rows} == {"1.5"}
