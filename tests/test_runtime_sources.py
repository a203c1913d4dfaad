"""Sources with fake cameras (no hardware), real files from ../shared/data, and their error cases."""
from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.errors import SourceError, SourceLost
from liveness_edge.runtime.sources import (
    CameraSource,
    ImageSource,
    LatestFrameReader,
    PicameraSource,
    UrlSource,
    VideoSource,
    ordinal,
    picamera_to_bgr,
    redact_url,
    rotate,
)
from runtime_helpers import FakeCapture, MjpegServer

VIDEO = "jomariya/videos/real/real_1.mp4"


def take(source, n):
    out = []
    for frame in source.frames():
        out.append(frame)
        if len(out) == n:
            break
    return out


def test_camera_reports_what_it_gave_and_streams_frames():
    cap = FakeCapture(size=(240, 320))
    cam = CameraSource(0, width=1280, height=720, fps=30, capture_factory=lambda i: cap)
    try:
        assert "320x240" in cam.info and "asked 1280x720" in cam.info
        assert cap.props[cv2.CAP_PROP_FRAME_WIDTH] == 1280
        frames = take(cam, 5)
    finally:
        cam.close()
    assert cap.released
    assert all(f.image.shape == (240, 320, 3) and f.source == "camera:0" for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})  # newest first, never repeated


def test_no_camera_at_index():
    with pytest.raises(SourceError, match="no camera at index 3") as e:
        CameraSource(3, capture_factory=lambda i: FakeCapture(opened=False))
    assert e.value.exit_code == 5


def test_camera_that_stops_returning_frames_is_disconnected():
    cam = CameraSource(0, capture_factory=lambda i: FakeCapture(frames=6))
    with pytest.raises(SourceLost, match="camera 0 disconnected") as e:
        take(cam, 100)
    cam.close()
    assert e.value.exit_code == 7


def test_camera_that_hangs_is_disconnected_after_stall_timeout():
    cam = CameraSource(0, capture_factory=lambda i: FakeCapture(block_after=3), stall_timeout=0.3)
    with pytest.raises(SourceLost, match="no frame for 0.3 s"):
        take(cam, 100)
    cam.close()


def test_reader_keeps_only_the_newest_frame():
    counter = iter(range(10**9))

    def read():
        time.sleep(0.001)
        return np.full((2, 2, 3), next(counter) % 255, np.uint8)

    reader = LatestFrameReader(read, "fast camera").start()
    try:
        seqs = []
        for _ in range(5):
            _, seq = reader.get()
            seqs.append(seq)
            time.sleep(0.03)  # a slow consumer
    finally:
        reader.stop()
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert reader.dropped > 0 and seqs[-1] - seqs[0] > 4  # stale frames were dropped, not queued


class FakePicamera2:
    """Mimics picamera2: ``RGB888`` arrays are B, G, R in memory; ``XRGB8888`` adds a fourth byte."""

    def __init__(self, channels=3, fail_after=None):
        self.channels = channels
        self.fail_after = fail_after
        self.captures = 0
        self.config = None
        self.started = self.closed = False

    def create_video_configuration(self, main, controls):
        return {"main": main, "controls": controls}

    def configure(self, config):
        self.config = config

    def start(self):
        self.started = True

    def capture_array(self):
        self.captures += 1
        if self.fail_after is not None and self.captures > self.fail_after:
            raise RuntimeError("camera frontend timeout")
        w, h = self.config["main"]["size"]
        a = np.zeros((h, w, self.channels), np.uint8)
        a[..., 0], a[..., 1], a[..., 2] = 10, 20, 200  # blue=10, green=20, red=200 in memory order B,G,R
        if self.channels == 4:
            a[..., 3] = 255
        return a

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


@pytest.mark.parametrize("channels", [3, 4])
def test_picamera_frames_are_bgr_without_a_double_swap(channels):
    fake = FakePicamera2(channels)
    cam = PicameraSource(320, 240, fps=15, camera_factory=lambda: fake)
    try:
        (frame,) = take(cam, 1)
    finally:
        cam.close()
    assert fake.config["main"] == {"size": (320, 240), "format": "RGB888"}
    assert fake.config["controls"] == {"FrameRate": 15.0} and fake.closed
    assert frame.image.shape == (240, 320, 3) and frame.image.flags.c_contiguous
    assert tuple(frame.image[0, 0]) == (10, 20, 200)  # still B, G, R: a red scene stays red for OpenCV


def test_picamera_conversion_rejects_odd_shapes():
    with pytest.raises(SourceError, match="unsupported Pi camera frame"):
        picamera_to_bgr(np.zeros((4, 4), np.uint8))


def test_picamera_that_fails_mid_run_is_disconnected():
    cam = PicameraSource(camera_factory=lambda: FakePicamera2(fail_after=3))
    with pytest.raises(SourceLost, match="Pi camera disconnected .*frontend timeout"):
        take(cam, 100)
    cam.close()


def test_picamera_missing_names_the_install_commands(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_picamera2(name, *args, **kwargs):
        if name == "picamera2":
            raise ImportError("No module named 'picamera2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_picamera2)
    with pytest.raises(SourceError, match=r"apt install python3-picamera2.*--system-site-packages.*'\.\[pi\]'"):
        PicameraSource()


def test_url_reconnects_then_gives_up(caplog):
    opened = []

    def factory(url):
        cap = FakeCapture(frames=3, opened=len(opened) < 2)  # first open works, one reconnect works, then none
        opened.append(cap)
        return cap

    stream = UrlSource("rtsp://cam/stream", retries=2, retry_delay=0.0, capture_factory=factory)
    frames = []
    with caplog.at_level(logging.WARNING, logger="liveness_edge"):
        with pytest.raises(SourceLost, match="stream rtsp://cam/stream disconnected"):
            for frame in stream.frames():
                frames.append(frame.index)
    stream.close()
    assert len(opened) == 3  # initial + 1 successful reconnect + 1 failed: 2 retries in all, not per drop
    assert frames[-1] == 5  # 3 frames before the drop, 3 after: the newest is always delivered
    assert "reconnecting (2/2)" in caplog.text


def test_url_that_gives_one_frame_and_drops_ends_instead_of_looping():
    """Issue 11 item 2: a still image or flapping camera reconnects successfully every time."""
    opened = []

    def one_frame_each_time(url):
        opened.append(FakeCapture(frames=1))
        return opened[-1]

    stream = UrlSource("http://cam/snapshot.jpg", retries=3, retry_delay=0.0, capture_factory=one_frame_each_time)
    frames = []
    with pytest.raises(SourceLost, match="disconnected"):
        for frame in stream.frames():
            frames.append(frame)
            assert len(frames) < 50, "the retry budget was reset by a one-frame connection"
    stream.close()
    assert len(opened) == 4 and stream.reconnects == 3 and len(frames) <= 4


def test_url_budget_starts_again_after_a_healthy_connection():
    opened = []

    def five_frames_each(url):
        opened.append(FakeCapture(frames=5, opened=len(opened) < 6))
        return opened[-1]

    stream = UrlSource("rtsp://cam/s", retries=1, retry_delay=0.0, capture_factory=five_frames_each,
                       healthy_frames=3)
    with pytest.raises(SourceLost):
        for _ in stream.frames():
            time.sleep(0.002)
    stream.close()
    assert stream.reconnects == 6  # 5 reconnects that each held >= 3 frames, then 1 refused: budget exhausted


def test_url_credentials_never_printed_or_reported(caplog):
    url = "rtsp://admin:s3cret@127.0.0.1:554/live?x=1"
    assert redact_url(url) == "rtsp://***@127.0.0.1:554/live?x=1"
    assert redact_url("http://cam/video") == "http://cam/video"
    stream = UrlSource(url, retries=1, retry_delay=0.0, capture_factory=lambda u: FakeCapture(frames=2))
    with caplog.at_level(logging.DEBUG, logger="liveness_edge"):
        with pytest.raises(SourceLost) as e:
            for frame in stream.frames():
                assert "s3cret" not in frame.source and "admin" not in frame.source
    stream.close()
    for text in (stream.info, str(e.value), caplog.text):
        assert "s3cret" not in text and "***@127.0.0.1:554" in text
    with pytest.raises(SourceError) as e:
        UrlSource(url, capture_factory=lambda u: FakeCapture(opened=False))
    assert "s3cret" not in str(e.value)


def test_http_mjpeg_stream_reconnects_and_ends_cleanly(monkeypatch):
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")
    server = MjpegServer(per_connection=8, connections=2)
    stream = UrlSource(server.url, retries=2, retry_delay=0.0)
    frames = []
    try:
        assert "160x120" in stream.info
        with pytest.raises(SourceLost, match="disconnected"):
            for frame in stream.frames():
                frames.append(frame)
    finally:
        stream.close()
        server.close()
    assert server.served == 3  # two short streams, then one refused reconnect: 2 retries in all
    assert 4 <= len(frames) <= 16 and frames[0].image.shape == (120, 160, 3)
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_url_unreachable():
    with pytest.raises(SourceError, match="cannot open stream http://nowhere:8080/video"):
        UrlSource("http://nowhere:8080/video", capture_factory=lambda u: FakeCapture(opened=False))


@pytest.mark.data
def test_real_video_every_frame_and_every_nth(shared_data):
    path = str(shared_data / VIDEO)
    full = VideoSource(path)
    frames = take(full, 12)
    full.close()
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.ndim == 3 and frames[0].capture_ms > 0
    every = VideoSource(path, every=5)
    frames5 = take(every, 4)
    every.close()
    assert [f.index for f in frames5] == [0, 5, 10, 15]
    assert np.array_equal(frames5[2].image, frames[10].image)
    assert every.length == -(-full.expected // 5)


@pytest.mark.data
def test_truncated_and_corrupt_videos(shared_data, tmp_path):
    data = (shared_data / VIDEO).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    source = VideoSource(str(truncated))
    with pytest.raises(SourceError, match="truncated or corrupt"):
        list(source.frames())
    source.close()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(SourceError, match="not a video, or corrupt"):
        VideoSource(str(garbage))
    with pytest.raises(SourceError, match="video not found"):
        VideoSource(str(tmp_path / "missing.mp4"))


def test_image_folder_skips_unreadable_files(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 100, np.uint8))
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageSource(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="liveness_edge"):
        frames = list(source.frames())
    assert [f.name for f in frames] == ["b.png", "sub/a.jpg"]
    assert frames[1].source == str(tmp_path / "sub" / "a.jpg")
    assert source.skipped == [str(tmp_path / "c.jpg")] and "skipping image" in caplog.text


def test_image_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(SourceError, match="cannot read image"):
        list(ImageSource(str(bad)).frames())
    with pytest.raises(SourceError, match="none of the 1 images"):
        list(ImageSource(str(tmp_path)).frames())
    with pytest.raises(SourceError, match="image not found"):
        ImageSource(str(tmp_path / "missing.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageSource(str(empty))


def test_rotate_clockwise():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255  # top-left
    r = rotate(img, 90)
    assert r.shape == (3, 2, 3) and r[0, 1, 0] == 255  # top-left goes to top-right
    assert rotate(img, 0) is img


def test_each_source_says_its_running_mode(tmp_path):
    from liveness_edge.runtime.sources import SourceSpec, open_source
    from liveness_edge.runtime.types import RunningMode
    from runtime_helpers import write_test_video

    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 100, np.uint8))
    video = write_test_video(tmp_path / "v.mp4", frames=3)
    for spec, mode in ((SourceSpec("images", str(tmp_path / "a.png")), RunningMode.IMAGE),
                       (SourceSpec("video", str(video)), RunningMode.VIDEO)):
        source = open_source(spec)
        assert source.running_mode == spec.running_mode == mode
        source.close()
    cam = CameraSource(0, capture_factory=lambda i: FakeCapture(frames=2))
    assert cam.running_mode == SourceSpec("camera", "0").running_mode == RunningMode.LIVE_STREAM
    cam.close()
