"""Where results go: JSONL lines for other programs, annotated video/images, a window, an end-of-run summary.

Writers open lazily, flush as they go and are safe to ``close`` twice, so every exit path (error, Ctrl-C,
end of stream) leaves complete files behind. A write that fails (full disk, ``ulimit -f``, /dev/full) is an
``OutputError``, never a silent loss; a closed pipe on stdout (``| head -1``) is ``ReaderGone``: the reader
has what it wanted, so the run stops cleanly.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from .challenge import ChallengeResult
from .errors import DisplayError, OutputError
from .smoothing import DECISIONS
from .terminal import printable
from .types import FrameResult

STAGES = ("capture", "detect", "crop", "infer", "decide", "liveness", "total")
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def frame_record(result: FrameResult) -> dict:
    """The documented JSONL object for one frame (times in ms, box in frame pixels)."""
    t = result.times
    record = {
        "source": result.source,
        "frame": int(result.frame),
        "time_ms": {
            "capture": round(t.capture, 3),
            "detect": round(t.detect, 3),
            "liveness": round(t.liveness, 3),
            "total": round(t.total, 3),
        },
        "faces": [
            {
                "track": int(f.track),
                "box": [round(float(v), 1) for v in f.box],
                "detector_score": round(float(f.detector_score), 4),
                "p_real": round(float(f.p_real), 4),
                "p_real_smoothed": round(float(f.p_real_smoothed), 4),
                "decision": f.decision,
                "reason": f.reason,
            }
            for f in result.faces
        ],
    }
    if result.challenge is not None:  # only while an active challenge runs (``--challenge``)
        record["time_ms"]["landmarks"] = round(t.landmarks, 3)
        record["challenge"] = result.challenge.to_dict()
    return record


class ReaderGone(Exception):
    """Whoever read our stdout closed the pipe (``| head -1``): stop cleanly, it is not an error."""


def stdout_closed_by_reader() -> ReaderGone:
    """Point fd 1 at /dev/null so the interpreter's last flush cannot fail again, and say why we stop."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return ReaderGone("stdout was closed by its reader")


def write_line(file: IO[str], text: str, what: str) -> None:
    """``text`` and a newline, flushed; a failed write is an ``OutputError`` (or ``ReaderGone`` on stdout)."""
    try:
        file.write(text + "\n")
        file.flush()
    except BrokenPipeError:
        if file is sys.stdout:
            raise stdout_closed_by_reader() from None
        raise OutputError(f"cannot write {what}: the pipe was closed") from None
    except OSError as e:
        raise OutputError(f"cannot write {what}: {e.strerror or e}") from None


class JsonlWriter:
    """One JSON object per line, flushed per frame so a reader on the other end of a pipe sees it at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.what = "JSONL to stdout" if path == "-" else f"JSONL to {printable(path)}"
        if path == "-":
            self._file: IO[str] | None = sys.stdout
        else:
            try:
                self._file = open(path, "w", encoding="utf-8")
            except OSError as e:
                raise OutputError(f"cannot write {self.what}: {e.strerror}") from None

    def write(self, result: FrameResult) -> None:
        if self._file is None:
            raise OutputError(f"JSONL writer for {printable(self.path)} is closed")
        write_line(self._file, json.dumps(frame_record(result), separators=(",", ":")), self.what)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None and file is not sys.stdout:
            try:
                file.close()
            except OSError as e:
                raise OutputError(f"cannot write {self.what}: {e.strerror or e}") from None


class VideoWriter:
    """The annotated video; opened on the first frame, when the size is known.

    OpenCV's writer reports no write errors, so ``close`` reopens the file and counts its frames: a full
    disk or a file size limit is an ``OutputError`` instead of an unplayable file and exit 0.
    """

    def __init__(self, path: str, fps: float | None) -> None:
        self.path = path
        self.fps = fps if fps and 0 < fps < 241 else 25.0
        suffix = Path(path).suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise OutputError(f"--output {path}: use one of {', '.join(sorted(VIDEO_CODECS))}")
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise OutputError(f"cannot write video {printable(path)}: folder {printable(str(parent))} does not exist")
        self._fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix])
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, self._fourcc, self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise OutputError(f"cannot write video {printable(self.path)}: OpenCV could not open a writer for it")
            self._size = size
        if size != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.release()
        readable = video_frame_count(self.path)
        if readable < self.frames:
            raise OutputError(
                f"the annotated video {printable(self.path)} is incomplete: {readable} of {self.frames} frames "
                "readable (disk full or file size limit?)"
            )


def video_frame_count(path: str) -> int:
    """Frames a finished video file says it holds (0 if it cannot be opened)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


SAVED_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def saved_image_path(directory: str | Path, name: str) -> Path:
    """Where ``ImageSaver`` writes the annotated copy of ``name`` (other formats become .jpg)."""
    path = Path(directory) / name
    return path if path.suffix.lower() in SAVED_SUFFIXES else path.with_suffix(".jpg")


class ImageSaver:
    """Annotated copies of the input images under ``directory``, keeping their relative names."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create --save-dir {printable(directory)}: {e.strerror}") from None
        self.saved = 0

    def save(self, name: str, image: np.ndarray) -> Path:
        """Encoded in memory and written with Python's file API, so a short write raises instead of
        leaving a cut-off image behind."""
        path = saved_image_path(self.directory, name)
        ok, data = cv2.imencode(path.suffix, image)
        if not ok:
            raise OutputError(f"cannot encode image {printable(str(path))}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.tobytes())
        except OSError as e:
            path.unlink(missing_ok=True)  # a cut-off image is worse than none
            raise OutputError(f"cannot write image {printable(str(path))}: {e.strerror or e}") from None
        self.saved += 1
        return path

    def close(self) -> None:
        """Each image is complete once written: nothing to flush."""


def display_problem() -> str | None:
    """Why no window can be shown here, or None. The headless OpenCV wheel has no GUI at all."""
    gui = next((ln.split(":", 1)[1].strip() for ln in cv2.getBuildInformation().splitlines()
                if ln.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return "this OpenCV build has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no DISPLAY or WAYLAND_DISPLAY set"
    return None


class Window:
    """An OpenCV window; ``show`` returns False when the user pressed q or Esc."""

    def __init__(self, title: str = "liveness-edge") -> None:
        problem = display_problem()
        if problem:
            raise DisplayError(f"cannot open a window: {problem} (use --no-display)")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise DisplayError(f"cannot open a window: {str(e).strip().splitlines()[-1]}") from None

    def show(self, image: np.ndarray, wait: bool = False) -> bool:
        """``wait``: hold a still image until a key is pressed; video goes on after 1 ms."""
        try:
            cv2.imshow(self.title, image)
            key = cv2.waitKey(0 if wait else 1) & 0xFF
        except cv2.error as e:
            raise DisplayError(f"the window failed: {str(e).strip().splitlines()[-1]}") from None
        return key not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


class Reservoir:
    """A uniform random sample of at most ``capacity`` values from a stream (Vitter's algorithm R).

    A run of any length keeps the same memory; percentiles are exact up to ``capacity`` values and within
    about a percentile point beyond (4096 samples). The seed is fixed so a run's summary is reproducible.
    """

    def __init__(self, capacity: int = 4096, seed: int = 0) -> None:
        self.capacity = capacity
        self.values: list[float] = []
        self.seen = 0
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.capacity:
            self.values.append(value)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.values[slot] = value

    def percentile(self, q: float) -> float:
        return percentile(self.values, q)


@dataclass
class RunSummary:
    """Counts and per-stage latency over a run; ``fps`` is frames per wall-clock second, capture included.

    Memory is bounded: stage times are kept in fixed-size reservoirs, not per frame.
    """

    frames: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    decisions: Counter = field(default_factory=Counter)
    stage_ms: dict[str, Reservoir] = field(default_factory=lambda: {s: Reservoir() for s in STAGES})
    skipped: int = 0
    dropped: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    challenge: ChallengeResult | None = None

    def start(self) -> float:
        """Restart the clock (after model loading, so FPS covers frames only); returns the start time."""
        self.started = time.perf_counter()
        return self.started

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self.frames_with_faces += bool(result.faces)
        self.decisions.update(f.decision for f in result.faces)
        for stage in STAGES:
            self.stage_ms[stage].add(getattr(result.times, stage))

    def finish(self) -> "RunSummary":
        self.ended = time.perf_counter()
        return self

    @property
    def wall_s(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def median(self, stage: str) -> float:
        return self.stage_ms[stage].percentile(50)

    def p90(self, stage: str) -> float:
        return self.stage_ms[stage].percentile(90)

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "faces": self.faces,
            "frames_with_faces": self.frames_with_faces,
            "decisions": {d: self.decisions.get(d, 0) for d in DECISIONS},
            "median_ms": {s: round(self.median(s), 3) for s in STAGES},
            "p90_ms": {s: round(self.p90(s), 3) for s in STAGES},
            "fps": round(self.fps, 2),
            "wall_s": round(self.wall_s, 3),
            "skipped": self.skipped,
            "dropped": self.dropped,
        }

    def format(self) -> str:
        d = ", ".join(f"{k} {self.decisions.get(k, 0)}" for k in DECISIONS)
        extra = "".join(
            f", {n} {what}" for n, what in ((self.skipped, "unreadable skipped"), (self.dropped, "stale dropped")) if n
        )
        head = (
            f"{self.frames} frames ({self.frames_with_faces} with a face), {self.faces} faces: {d}{extra}; "
            f"{self.wall_s:.2f} s, {self.fps:.1f} FPS"
        )
        names = " ".join(f"{s:>8}" for s in STAGES)
        med = " ".join(f"{self.median(s):8.2f}" for s in STAGES)
        p90 = " ".join(f"{self.p90(s):8.2f}" for s in STAGES)
        return f"{head}\n  ms       {names}\n  median   {med}\n  p90      {p90}"
