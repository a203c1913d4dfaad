"""Where frames come from: USB/V4L2 cameras, the Raspberry Pi camera, IP cameras, video files and images.

Live sources are read in their own thread and only the newest frame is handed out (older ones are dropped),
so a slow frame never makes the next one late. Files are read in order, nothing dropped. Every source yields
``Frame`` objects in BGR, the order OpenCV and the pipeline use.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from .errors import SourceError, SourceLost
from .images import DEFAULT_MAX_PIXELS, ImageProblem, decode_image
from .terminal import printable
from .labels import IMAGE_SUFFIXES
from .types import RunningMode

log = logging.getLogger("liveness_edge")

ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Frame:
    """One image to process. ``source`` is what the JSONL reports; ``name`` a file name for saving it."""

    image: np.ndarray
    source: str
    index: int
    capture_ms: float
    name: str


class FrameSource(Protocol):
    """What the run loop needs from a source. ``live`` sources drop stale frames; files do not.
    ``running_mode`` says how the pipeline must relate the frames (independent images, a clip, a stream)."""

    live: bool
    running_mode: RunningMode
    info: str
    fps: float | None
    length: int | None

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked for. ``kind``: camera, picam, url, video or images."""

    kind: str
    target: str = ""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    every: int = 1
    retries: int = 5
    retry_delay: float = 1.0
    stall_timeout: float = 5.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def running_mode(self) -> RunningMode:
        """How the pipeline relates this source's frames: independent images, one clip, or a live stream."""
        if self.kind == "images":
            return RunningMode.IMAGE
        return RunningMode.VIDEO if self.kind == "video" else RunningMode.LIVE_STREAM


def redact_url(url: str) -> str:
    """``url`` with its password (and user name) replaced by ``***``: what may be printed or logged."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return printable(url)
        host = parts.netloc.rsplit("@", 1)[1]
        return printable(urlunsplit(parts._replace(netloc=f"***@{host}")))
    except ValueError:
        return "(an unparsable URL)"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def open_camera(index: int) -> cv2.VideoCapture:
    """V4L2 directly on Linux (no slow fall-through to other backends), OpenCV's choice elsewhere."""
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return cv2.VideoCapture(index, api)


def open_stream(url: str, timeout_ms: int = 5000) -> cv2.VideoCapture:
    """FFmpeg with open/read timeouts, so an unreachable camera fails in seconds rather than hanging."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate clockwise by 0/90/180/270 degrees (cameras mounted sideways)."""
    code = ROTATIONS[degrees % 360]
    return image if code is None else cv2.rotate(image, code)


class LatestFrameReader:
    """Calls ``read`` in a thread and keeps only the newest frame: a queue of one that drops stale frames.

    ``read`` returns a BGR frame or None when the device stopped; ``reconnect`` (optional) gets one chance per
    failure to bring it back. ``get`` raises ``SourceLost`` once the device is gone or silent for
    ``stall_timeout`` seconds. ``release`` is called by the reading thread itself when it ends: a device is
    never released under a read that is still blocked in native code (OpenCV aborts the process then).
    """

    def __init__(
        self,
        read: Callable[[], np.ndarray | None],
        what: str,
        stall_timeout: float = 5.0,
        reconnect: Callable[[], bool] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._read = read
        self._what = what
        self._stall_timeout = stall_timeout
        self._reconnect = reconnect
        self._release = release
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int] | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._seq = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=f"reader {what}", daemon=True)

    def start(self) -> "LatestFrameReader":
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            self._read_until_stopped()
        finally:
            if self._release is not None:
                self._release()

    def _read_until_stopped(self) -> None:
        while not self._stop.is_set():
            try:
                image = self._read()
            except Exception as e:  # a driver raising mid-stream is the same as an unplugged device
                image, why = None, f"{type(e).__name__}: {e}"
            else:
                why = "no more frames"
            if image is None:
                if self._stop.is_set():
                    break
                if self._reconnect is not None and self._reconnect(self._stop):
                    continue
                with self._cond:
                    self._error = f"{self._what} disconnected ({why})"
                    self._cond.notify_all()
                return
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = (image, self._seq)
                self._seq += 1
                self._cond.notify_all()

    def get(self) -> tuple[np.ndarray, int]:
        """The newest frame and its sequence number (gaps are the stale frames dropped)."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: self._latest is not None or self._error, self._stall_timeout)
            if self._latest is None:
                if self._error:
                    raise SourceLost(self._error)
                if not arrived:
                    raise SourceLost(f"{self._what} disconnected (no frame for {self._stall_timeout:g} s)")
            item, self._latest = self._latest, None
            return item

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s; False if it is still blocked in a read (it
        releases the device itself when that read returns)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        return not self._thread.is_alive()


def readers_still_blocked() -> list[str]:
    """Reader threads still inside a native read after their source was closed."""
    return [t.name for t in threading.enumerate() if t.name.startswith("reader ") and t.is_alive()]


class _LiveSource:
    """Shared loop of the live sources: frames from a ``LatestFrameReader`` until closed.

    ``close`` waits ``close_timeout`` s for a read in progress (OpenCV's stream timeouts are 5 s); a thread
    still blocked after that releases the device itself.
    """

    live = True
    running_mode = RunningMode.LIVE_STREAM
    length = None
    close_timeout = 6.0

    def __init__(self, source: str, what: str, stall_timeout: float) -> None:
        self.source = source
        self.what = what
        self.stall_timeout = stall_timeout
        self.reader: LatestFrameReader | None = None
        self.fps: float | None = None
        self.info = what

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _reconnect(self, stop: threading.Event) -> bool:
        return False

    def frames(self) -> Iterator[Frame]:
        self.reader = LatestFrameReader(self._read, self.what, self.stall_timeout, self._reconnect, self._release)
        self.reader.start()
        while True:
            t0 = time.perf_counter()
            image, seq = self.reader.get()  # capture_ms: how long processing waited for a frame
            yield Frame(image, self.source, seq, (time.perf_counter() - t0) * 1e3, f"frame_{seq:06d}.jpg")

    @property
    def dropped(self) -> int:
        return self.reader.dropped if self.reader else 0

    def _release(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.reader is None:
            self._release()
        elif not self.reader.stop(self.close_timeout):
            log.debug("%s: a read is still blocked; the reader releases the device when it returns", self.what)


class CameraSource(_LiveSource):
    """A USB/V4L2 camera through ``cv2.VideoCapture``; ``info`` says what the camera really gave."""

    def __init__(
        self,
        index: int,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        capture_factory: Callable[[int], cv2.VideoCapture] = open_camera,
        stall_timeout: float = 5.0,
    ) -> None:
        super().__init__(f"camera:{index}", f"camera {index}", stall_timeout)
        self._cap = capture_factory(index)
        if not self._cap.isOpened():
            raise SourceError(f"no camera at index {index} (is it plugged in? try another --camera N)")
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps)):
            if value:
                self._cap.set(prop, float(value))
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"camera {index} opened but gives no frames")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or None
        asked = f" (asked {width or '-'}x{height or '-'} @ {fps or '-'} fps)" if (width or height or fps) else ""
        self.info = f"camera {index}: {first.shape[1]}x{first.shape[0]} @ {self.fps or 0:.0f} fps{asked}"

    def _read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None

    def _release(self) -> None:
        self._cap.release()


def picamera_to_bgr(array: np.ndarray) -> np.ndarray:
    """picamera2's ``RGB888`` is B, G, R in memory and ``XRGB8888`` is B, G, R, X: both are already BGR.

    Only the X channel is dropped; swapping R and B here would swap them twice.
    """
    if array.ndim == 3 and array.shape[2] == 3:
        return array
    if array.ndim == 3 and array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    raise SourceError(f"unsupported Pi camera frame shape {array.shape}: use the RGB888 or XRGB8888 format")


def _picamera2_class() -> Callable[[], object]:
    try:
        from picamera2 import Picamera2
    except ImportError as e:
        raise SourceError(
            f"the Pi camera needs picamera2 ({e}): sudo apt install python3-picamera2 and a venv made with "
            "--system-site-packages so it can see it, or pip install '.[pi]' from the checkout"
        ) from None
    return Picamera2


class PicameraSource(_LiveSource):
    """The Raspberry Pi camera via ``picamera2`` (imported only when asked for), a small video stream."""

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        camera_factory: Callable[[], object] | None = None,
        stall_timeout: float = 5.0,
    ) -> None:
        super().__init__("picam", "Pi camera", stall_timeout)
        factory = camera_factory or _picamera2_class()
        size = (int(width or 640), int(height or 480))
        try:
            self._cam = factory()
            controls = {"FrameRate": float(fps)} if fps else {}
            config = self._cam.create_video_configuration(main={"size": size, "format": "RGB888"}, controls=controls)
            self._cam.configure(config)
            self._cam.start()
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"cannot start the Pi camera: {type(e).__name__}: {e}") from None
        self.fps = float(fps) if fps else None
        self.info = f"Pi camera: {size[0]}x{size[1]} RGB888" + (f" @ {fps:g} fps" if fps else "")

    def _read(self) -> np.ndarray | None:
        return picamera_to_bgr(self._cam.capture_array())

    def _release(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception as e:  # closing a camera that already vanished must not hide the real error
            log.debug("closing the Pi camera: %s", e)


class UrlSource(_LiveSource):
    """RTSP or HTTP (MJPEG) streams, e.g. an IP camera or a phone app.

    ``retries`` reconnects in all, counted across drops: the count starts again only after a connection
    stayed up for ``healthy_frames`` frames. A URL that gives a frame and drops (a still image, a flapping
    camera) therefore ends with ``SourceLost`` instead of looping forever. Only the redacted URL (no
    password) is printed or written to the JSONL.
    """

    def __init__(
        self,
        url: str,
        retries: int = 5,
        retry_delay: float = 1.0,
        capture_factory: Callable[[str], cv2.VideoCapture] = open_stream,
        stall_timeout: float = 10.0,
        healthy_frames: int = 100,
    ) -> None:
        shown = redact_url(url)
        super().__init__(shown, f"stream {shown}", stall_timeout)
        self._url = url
        self._factory = capture_factory
        self.retries = retries
        self.retry_delay = retry_delay
        self.healthy_frames = healthy_frames
        self.reconnects = 0
        self._failed = 0
        self._since_connect = 0
        self._pending: np.ndarray | None = None
        self._cap = self._factory(url)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open stream {shown} (unreachable, wrong address, or not a video stream)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or None
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.info = f"stream {shown}: {w}x{h}" + (f" @ {self.fps:.0f} fps" if self.fps else "")

    def _read(self) -> np.ndarray | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok:
                return None
        self._since_connect += 1
        if self._since_connect >= self.healthy_frames:
            self._failed = 0  # a connection that held this long earns a fresh set of retries
        return image

    def _reconnect(self, stop: threading.Event) -> bool:
        """One more connection while the shared budget lasts; True once it gives a frame."""
        while self._failed < self.retries and not stop.is_set():
            self._failed += 1
            self.reconnects += 1
            self._cap.release()
            log.warning("stream %s dropped, reconnecting (%d/%d)", self.source, self._failed, self.retries)
            if stop.wait(self.retry_delay):
                return False
            self._cap = self._factory(self._url)
            ok, image = self._cap.read() if self._cap.isOpened() else (False, None)
            if ok and image is not None:
                self._pending, self._since_connect = image, 0
                return True
        return False

    def _release(self) -> None:
        self._cap.release()


class VideoSource:
    """A video file, every frame or every ``every``-th; a file that stops early is reported as truncated."""

    live = False
    running_mode = RunningMode.VIDEO

    def __init__(
        self, path: str, every: int = 1, capture_factory: Callable[..., cv2.VideoCapture] = cv2.VideoCapture
    ) -> None:
        if not Path(path).is_file():
            raise SourceError(f"video not found: {printable(path)}")
        self.path = path
        self.every = max(1, every)
        self._cap = capture_factory(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video {printable(path)}: not a video, or corrupt")
        self.expected = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.fps = (float(self._cap.get(cv2.CAP_PROP_FPS)) or 25.0) / self.every
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.length = -(-self.expected // self.every) if self.expected else None
        self.info = f"video {printable(path)}: {w}x{h}, {self.expected} frames" + (
            f", every {ordinal(self.every)} frame" if self.every > 1 else ""
        )

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            t0 = time.perf_counter()
            if index % self.every:
                if not self._cap.grab():
                    break
                index += 1
                continue
            ok, image = self._cap.read()
            if not ok or image is None:
                break
            yield Frame(image, self.path, index, (time.perf_counter() - t0) * 1e3, f"frame_{index:06d}.jpg")
            index += 1
        if index == 0:
            raise SourceError(f"no frame could be decoded from {printable(self.path)}: corrupt video")
        if self.expected and index < self.expected - max(2, self.expected // 50):
            raise SourceError(
                f"video {printable(self.path)} ended at frame {index} of {self.expected}: truncated or corrupt"
            )

    def close(self) -> None:
        self._cap.release()


class ImageSource:
    """One image or every image under a folder (recursively, sorted). Unreadable, truncated or oversized
    files in a folder are reported and skipped (and counted); a single such file, or a folder with none
    readable, is an error. ``max_pixels`` is checked from the file's header, before decoding."""

    live = False
    running_mode = RunningMode.IMAGE
    fps = None

    def __init__(self, path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        root = Path(path)
        if root.is_file():
            self.files = [root]
        elif root.is_dir():
            self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {printable(path)}")
        else:
            raise SourceError(f"image not found: {printable(path)}")
        self.root = root
        self.max_pixels = max_pixels
        self.skipped: list[str] = []
        self.length = len(self.files)
        self.info = f"{len(self.files)} image{'s' if len(self.files) != 1 else ''} from {printable(path)}"

    def _read(self, path: Path) -> np.ndarray:
        try:
            return decode_image(path.read_bytes(), self.max_pixels)
        except OSError as e:
            raise ImageProblem(e.strerror or str(e)) from None

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            t0 = time.perf_counter()
            try:
                image = self._read(path)
            except ImageProblem as why:
                if self.root.is_file():
                    raise SourceError(f"cannot read image {printable(str(path))}: {why}") from None
                log.warning("skipping image %s: %s", printable(str(path)), why)
                self.skipped.append(str(path))
                continue
            ms = (time.perf_counter() - t0) * 1e3
            name = path.name if self.root.is_file() else str(path.relative_to(self.root))
            yield Frame(image, str(path), index, ms, name)
        if len(self.skipped) == len(self.files):
            raise SourceError(f"none of the {len(self.files)} images under {printable(str(self.root))} could be read")

    def close(self) -> None:
        """Nothing to release: files are opened one at a time."""


def open_source(spec: SourceSpec) -> FrameSource:
    """The source ``spec`` describes (the CLI's ``--camera``/``--url``/``--video``/``--image``)."""
    if spec.kind == "camera":
        try:
            index = int(spec.target)
        except ValueError:
            raise SourceError(f"--camera takes a number or 'picam', not {spec.target!r}") from None
        return CameraSource(index, spec.width, spec.height, spec.fps, stall_timeout=spec.stall_timeout)
    if spec.kind == "picam":
        return PicameraSource(spec.width, spec.height, spec.fps, stall_timeout=spec.stall_timeout)
    if spec.kind == "url":
        return UrlSource(spec.target, spec.retries, spec.retry_delay, stall_timeout=max(spec.stall_timeout, 10.0))
    if spec.kind == "video":
        return VideoSource(spec.target, spec.every)
    if spec.kind == "images":
        return ImageSource(spec.target, spec.max_pixels)
    raise SourceError(f"unknown source kind {spec.kind!r}")
