"""Issue 11: streams that stall or never end, outputs that would destroy inputs, full disks and closed
pipes, secrets in URLs, hostile image files. Each case runs the real command in a subprocess (loopback
servers only, ``ulimit -f`` via ``RLIMIT_FSIZE``), bounded by a timeout."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime import cli
from liveness_edge.runtime.images import ImageProblem, decode_image, image_size
from liveness_edge.runtime.output import Reservoir, RunSummary
from liveness_edge.runtime.sources import ordinal
from liveness_edge.runtime.types import FaceResult, FrameResult, StageTimes
from runtime_helpers import MjpegServer, runtime_manifest, write_test_video  # noqa: F401

SAMPLE = cli.SAMPLES_DIR / "real" / "image_T1.jpg"


def command(*args: str, fsize: int | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """``liveness-edge`` in a fresh process; ``fsize``: the shell's ``ulimit -f`` in bytes."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    cmd = [sys.executable, "-m", "liveness_edge.runtime.cli", "--no-display", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": ""}, **kw)


def one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("liveness-edge: error: ") and text in lines[-1], proc.stderr
    assert all(ln.startswith(("liveness-edge: ", "  ")) for ln in lines), proc.stderr  # nothing native, raw
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# item 1 -------------------------------------------------------------------------------------------------------

def test_stalled_stream_exits_7_not_abort(runtime_manifest):
    """The camera goes silent with the connection open and the reconnect hangs: exit 7 once the stall timeout
    passes, while the reader thread is still inside OpenCV's 5 s open timeout (it aborted with 134)."""
    server = MjpegServer(per_connection=5, connections=1, hang=True)
    try:
        proc = command("--url", server.url, "--retries", "1", "--manifest", str(runtime_manifest), timeout=60)
    finally:
        server.close()
    assert "terminate called" not in proc.stderr
    one_line_error(proc, 7, "disconnected")


# item 2 -------------------------------------------------------------------------------------------------------

def test_url_of_a_single_jpeg_ends_with_exit_7(runtime_manifest, tmp_path):
    """FFmpeg reads one frame from a still-image URL and the stream ends, every time it is reconnected."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    import functools
    import threading

    (tmp_path / "snap.jpg").write_bytes(SAMPLE.read_bytes())
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    jsonl = tmp_path / "out.jsonl"
    try:
        proc = command("--url", f"http://127.0.0.1:{httpd.server_address[1]}/snap.jpg", "--retries", "2",
                       "--jsonl", str(jsonl), "--manifest", str(runtime_manifest), timeout=90)
    finally:
        httpd.shutdown()
        httpd.server_close()
    one_line_error(proc, 7, "disconnected")
    assert proc.stderr.count("reconnecting") == 2
    assert 1 <= len(jsonl.read_text().splitlines()) <= 3  # one frame per connection, not 58 judgements


# item 3 -------------------------------------------------------------------------------------------------------

@pytest.fixture
def in_process(capsys, restore_logging):
    """``cli.main`` in this process (fast; for checks made before any model loads), returning (code, stderr)."""

    def call(*args: str) -> tuple[int, str]:
        code = cli.main(["--no-display", *args])
        return code, capsys.readouterr().err

    return call


def refused(result: tuple[int, str], text: str) -> None:
    code, err = result
    assert code == 2 and err.strip().splitlines()[-1].startswith("liveness-edge: error: ") and text in err, err


def test_outputs_equal_to_inputs_are_refused(runtime_manifest, tmp_path, in_process):
    video = write_test_video(tmp_path / "v.mp4")
    before = digest(video)
    m = ["--manifest", str(runtime_manifest)]
    refused(in_process("--video", str(video), "--output", str(video), *m), "is an input")
    refused(in_process("--video", str(video), "--jsonl", str(video), *m), "is an input")
    (tmp_path / "alias.mp4").symlink_to(video)
    refused(in_process("--video", str(video), "--output", str(tmp_path / "alias.mp4"), *m), "is an input")
    os.link(video, tmp_path / "hardlink.mp4")
    refused(in_process("--video", str(video), "--jsonl", str(tmp_path / "hardlink.mp4"), *m), "is an input")
    assert digest(video) == before
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(SAMPLE.read_bytes())
    cv2.imwrite(str(photos / "b.png"), np.full((60, 80, 3), 90, np.uint8))
    originals = {p.name: digest(p) for p in photos.iterdir()}
    refused(in_process("--image", str(photos), "--save-dir", str(photos), *m), "would overwrite the input")
    refused(in_process("--image", str(photos / "a.jpg"), "--save-dir", str(photos), *m), "would overwrite")
    refused(in_process("--image", str(photos), "--jsonl", str(photos / "b.png"), *m), "is an input")
    refused(in_process("--image", str(photos), "--jsonl", str(runtime_manifest), *m), "is an input")
    assert {p.name: digest(p) for p in photos.iterdir()} == originals
    code, err = in_process("--image", str(photos), "--save-dir", str(tmp_path / "annotated"), *m)
    assert code == 0, err  # a different folder is fine
    assert {p.name: digest(p) for p in photos.iterdir()} == originals


# item 4 -------------------------------------------------------------------------------------------------------

def test_full_disk_and_closed_pipes(runtime_manifest, tmp_path):
    video = write_test_video(tmp_path / "in.mp4", frames=40)
    m = ["--video", str(video), "--manifest", str(runtime_manifest)]
    proc = command(*m, "--output", str(tmp_path / "out.mp4"), fsize=64 * 1024)
    one_line_error(proc, 9, "is incomplete")
    (tmp_path / "full.mp4").symlink_to("/dev/full")
    one_line_error(command(*m, "--output", str(tmp_path / "full.mp4")), 9, "cannot write video")
    one_line_error(command(*m, "--jsonl", "/dev/full"), 9, "No space left on device")
    proc = command(*m, "--jsonl", str(tmp_path / "big.jsonl"), fsize=2048)
    one_line_error(proc, 9, "File too large")
    assert len((tmp_path / "big.jsonl").read_bytes()) <= 2048  # what was written stays
    proc = command(*m, "--save-dir", str(tmp_path / "frames"), fsize=8 * 1024)
    one_line_error(proc, 9, "cannot write image")
    assert all(cv2.imread(str(p)) is not None for p in (tmp_path / "frames").iterdir())  # no cut-off file left
    head = subprocess.run(f"{sys.executable} -m liveness_edge.runtime.cli --no-display --video {video} "
                          f"--manifest {runtime_manifest} --jsonl - | head -1", shell=True, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})
    assert json.loads(head.stdout)["frame"] == 0
    assert "Traceback" not in head.stderr and "Exception ignored" not in head.stderr and "error" not in head.stderr
    assert "stdout was closed by its reader: stopping" in head.stderr


def test_jsonl_to_a_closed_pipe_exits_cleanly(runtime_manifest, tmp_path):
    video = write_test_video(tmp_path / "in.mp4", frames=30)
    read, write = os.pipe()
    os.close(read)
    cmd = [sys.executable, "-m", "liveness_edge.runtime.cli", "--video", str(video), "--manifest",
           str(runtime_manifest), "--jsonl", "-"]
    proc = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert proc.returncode == 0 and "stdout was closed by its reader" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


# item 5 -------------------------------------------------------------------------------------------------------

def test_summary_memory_is_bounded():
    r = Reservoir(capacity=1000)
    for v in range(100_000):
        r.add(float(v))
    assert len(r.values) == 1000 and r.seen == 100_000
    assert abs(r.percentile(50) - 50_000) < 5_000 and abs(r.percentile(90) - 90_000) < 3_000
    exact = Reservoir(capacity=1000)
    for v in [3.0, 1.0, 2.0]:
        exact.add(v)
    assert exact.percentile(50) == 2.0  # exact while the stream fits
    s = RunSummary()
    frame = FrameResult("cam", 0, [FaceResult(1, (0.0, 0.0, 9.0, 9.0), 0.9, 0.5, 0.5, "real")],
                        StageTimes(1.0, 2.0, 0.1, 0.2, 0.01, 4.0))
    for i in range(5000):
        s.add(replace(frame, times=replace(frame.times, total=4.0 + i * 1e-3)))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(30_000):  # the old summary grew about 160 bytes a frame here: 4.8 MB
        s.add(replace(frame, times=replace(frame.times, total=9.0 + i * 1e-3)))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 200_000 and s.frames == 35_000 and s.decisions["real"] == 35_000


# item 10 ------------------------------------------------------------------------------------------------------

def test_url_password_not_on_stderr_or_in_jsonl(runtime_manifest, tmp_path):
    server = MjpegServer(per_connection=6, connections=1)
    url = server.url.replace("http://", "http://viewer:hunter2@")
    jsonl = tmp_path / "cam.jsonl"
    try:
        proc = command("--url", url, "--retries", "0", "--jsonl", str(jsonl), "--manifest", str(runtime_manifest))
    finally:
        server.close()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert proc.returncode == 7 and records, proc.stderr
    assert "hunter2" not in proc.stderr + jsonl.read_text() and "viewer" not in proc.stderr
    assert records[0]["source"] == f"http://***@127.0.0.1:{server.port}/video" and "***@127.0.0.1" in proc.stderr


# item 11 ------------------------------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height`` pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_hostile_images(runtime_manifest, tmp_path):
    data = SAMPLE.read_bytes()
    m = ["--manifest", str(runtime_manifest)]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    one_line_error(command("--image", str(cut), *m), 5, "truncated JPEG")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30_000, 30_000))
    proc = command("--image", str(bomb), *m, fsize=None)
    one_line_error(proc, 5, "900 megapixels, over the 50 MP limit")
    small = tmp_path / "small.jpg"
    small.write_bytes(data)
    one_line_error(command("--image", str(small), "--max-megapixels", "0.01", *m), 5, "over the 0.01 MP limit")
    assert command("--image", str(small), "--max-megapixels", "0.5", *m).returncode == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(data)
    (folder / "evil\n\x1b[2Jname.jpg").write_bytes(data[:3000])
    flipped = bytearray(data)
    flipped[len(data) // 2 : len(data) // 2 + 64] = b"\x12" * 64  # damaged scan data; libjpeg warns on stderr
    (folder / "damaged.jpg").write_bytes(bytes(flipped))
    proc = command("--image", str(folder), *m)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout and "evil\\n\\x1b[2Jname.jpg" in proc.stderr
    assert "Corrupt JPEG" not in proc.stderr.replace("liveness-edge: WARNING: ", "").split("(")[0]
    assert all(ln.startswith(("liveness-edge: ", "  ")) for ln in proc.stderr.splitlines()), proc.stderr
    assert "2 unreadable skipped" in proc.stderr or "1 unreadable skipped" in proc.stderr
    assert len(proc.stdout.splitlines()) + int(proc.stderr.split(" unreadable skipped")[0].split()[-1]) == 3


def test_image_headers_and_truncation_without_decoding():
    img = np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff"):
        assert image_size(cv2.imencode(ext, img)[1].tobytes()) == (50, 30), ext
    progressive = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert decode_image(progressive).shape == (30, 50, 3)
    for end in range(100, len(progressive) - 2, 37):
        with pytest.raises(ImageProblem):
            decode_image(progressive[:end])
    with pytest.raises(ImageProblem, match="megapixels"):
        decode_image(png_header_only(20_000, 20_000))


# item 18 ------------------------------------------------------------------------------------------------------

def test_results_on_stdout_and_demo_saves(runtime_manifest, tmp_path):
    proc = command("--image", str(SAMPLE), "--manifest", str(runtime_manifest))
    assert proc.returncode == 0 and "image_T1.jpg: #1 " in proc.stdout  # `> out.txt` keeps the result
    demo = command("--demo", "--model", "livenessnet", "--manifest", str(runtime_manifest),
                   "--save-dir", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    assert "Expect one line per photo" in demo.stderr and "sample faces judged as their folder says" in demo.stderr
    assert len(list((tmp_path / "demo" / "livenessnet").rglob("*.jpg"))) == 4
    assert ordinal(2) == "2nd" and ordinal(11) == "11th" and ordinal(23) == "23rd"


def test_multi_line_library_messages_become_one_escaped_line(monkeypatch, in_process):
    from liveness_edge.runtime.errors import SourceError

    def broken(spec):
        raise SourceError("OpenCV(4.x) decoder said:\n  bad\x1b[31m data\n")

    monkeypatch.setattr(cli, "open_source", broken)
    code, err = in_process("--video", "clip.mp4")
    assert code == 5 and err == "liveness-edge: error: OpenCV(4.x) decoder said: bad\\x1b[31m data\n"
