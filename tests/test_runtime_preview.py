"""Issue 11 item 12, the headless first hour: ``--preview`` serves the annotated stream and a JSON status to
a browser on loopback, and without a window or preview a status line per second reaches the terminal."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from liveness_edge.runtime import cli
from liveness_edge.runtime.errors import OutputError, UsageError
from liveness_edge.runtime.overlay import face_label
from liveness_edge.runtime.preview import MAX_VIEWERS, PreviewServer, parse_address
from liveness_edge.runtime.sources import CameraSource
from liveness_edge.runtime.types import FaceResult
from runtime_helpers import FakeCapture, runtime_manifest  # noqa: F401

SAMPLE = cli.SAMPLES_DIR / "real" / "image_T1.jpg"
pytestmark = pytest.mark.usefixtures("restore_logging")


class SlowFaceCamera(FakeCapture):
    """A camera that shows the sample face at about 25 frames per second for ``frames`` frames."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames=frames)
        self.face = cv2.imread(str(SAMPLE))

    def read(self):
        ok, _ = super().read()
        time.sleep(0.04)
        return (ok, self.face.copy()) if ok else (False, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def first_mjpeg_frame(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        while b"\xff\xd9" not in buffer.partition(b"\xff\xd8")[2]:
            buffer += response.read1(65536)
    jpeg = b"\xff\xd8" + buffer.partition(b"\xff\xd8")[2].partition(b"\xff\xd9")[0] + b"\xff\xd9"
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def watch_preview(base: str, seen: dict) -> None:
    """A browser's view of the run: status, page and the first frame of the stream (in a thread)."""
    for _ in range(400):
        try:
            seen["status"] = json.loads(get(base + "status.json"))
            if seen["status"]["frames"] >= 5:
                break
        except OSError:
            pass
        time.sleep(0.05)
    seen["page"] = get(base).decode()
    seen["frame"] = first_mjpeg_frame(base + "stream.mjpg")
    try:
        get(base + "nothing-here")
    except urllib.error.HTTPError as e:
        seen["missing"] = e.code


def test_preview_serves_page_stream_and_status_on_loopback(monkeypatch, capsys, runtime_manifest):
    camera = SlowFaceCamera(frames=150)
    monkeypatch.setattr(cli, "open_source", lambda spec: CameraSource(0, capture_factory=lambda i: camera))
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    seen: dict = {}
    browser = threading.Thread(target=watch_preview, args=(base, seen), daemon=True)
    browser.start()
    code = cli.main(["--camera", "0", "--manifest", str(runtime_manifest), "--preview", f"127.0.0.1:{port}"])
    browser.join(30)
    assert code == 7  # the fake camera ran out of frames
    status = seen["status"]
    assert status["frames"] >= 5 and status["fps"] > 0
    assert [f["track"] for f in status["faces"]] == [1]
    assert status["faces"][0]["decision"] in ("real", "spoof", "uncertain")
    assert '<img src="/stream.mjpg"' in seen["page"] and "status.json" in seen["page"] and "camera 0" in seen["page"]
    assert seen["frame"].shape == camera.face.shape
    assert not np.array_equal(seen["frame"], camera.face)  # annotated: boxes and labels are drawn on it
    assert seen["missing"] == 404
    captured = capsys.readouterr()
    assert f"preview: open http://127.0.0.1:{port}/ in a browser (this machine only)" in captured.err
    assert "FPS:" not in captured.out  # the browser shows the run: no status lines
    with pytest.raises(OSError):
        get(base + "status.json", timeout=1)  # the server is gone with the run


def test_status_line_each_second_without_window_or_preview(monkeypatch, capsys, runtime_manifest):
    camera = SlowFaceCamera(frames=60)
    monkeypatch.setattr(cli, "open_source", lambda spec: CameraSource(0, capture_factory=lambda i: camera))
    assert cli.main(["--camera", "0", "--no-display", "--manifest", str(runtime_manifest)]) == 7
    out = capsys.readouterr().out.splitlines()
    assert 1 <= len(out) < 30  # one line per second, not one per frame (60 frames at 25 FPS or less)
    assert all(" FPS: " in line and "#1 " in line and "P(real)" in line for line in out)


def test_preview_address_and_port_in_use():
    assert parse_address("8081") == ("127.0.0.1", 8081)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    with pytest.raises(UsageError):
        parse_address("host:http")
    first = PreviewServer("127.0.0.1:0")
    try:
        assert not first.public
        with pytest.raises(OutputError, match="cannot serve the preview"):
            PreviewServer(first.url.rstrip("/").rsplit("/", 1)[1])
    finally:
        first.close()


def test_overlay_label_names_the_score_and_marks_held_decisions():
    face = FaceResult(1, (0.0, 0.0, 10.0, 10.0), 0.9, 0.44, 0.45, "real")
    assert face_label(face) == "#1 real  P(real) 0.45"
    assert face_label(face, band=(0.41, 0.51)) == "#1 real  P(real) 0.45 (held)"
    spoof = FaceResult(2, (0.0, 0.0, 10.0, 10.0), 0.9, 0.04, 0.04, "spoof")
    assert face_label(spoof, band=(0.41, 0.51)) == "#2 spoof  P(real) 0.04"


def test_a_loopback_preview_refuses_other_host_names():
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 must not read the stream."""
    port = free_port()
    server = PreviewServer(f"127.0.0.1:{port}", "camera 0", "model")
    try:
        for host, code in (("evil.example", 403), (f"evil.example:{port}", 403), (f"127.0.0.1:{port}", 200),
                           (f"localhost:{port}", 200), ("[::1]", 200)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/status.json", headers={"Host": host})
            assert (host, conn.getresponse().status) == (host, code)
            conn.close()
    finally:
        server.close()


def test_open_streams_are_capped():
    """Each MJPEG viewer holds a thread for as long as it stays: past the cap, new ones get 503."""
    port = free_port()
    server = PreviewServer(f"127.0.0.1:{port}", "camera 0", "model")
    server.publish(np.zeros((48, 64, 3), np.uint8), {"frames": 1})
    viewers = []
    try:
        for _ in range(MAX_VIEWERS):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/stream.mjpg")
            assert conn.getresponse().status == 200
            viewers.append(conn)
        extra = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        extra.request("GET", "/stream.mjpg")
        assert extra.getresponse().status == 503
        extra.close()
    finally:
        server.close()
        for conn in viewers:
            conn.close()
