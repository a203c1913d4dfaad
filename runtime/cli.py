"""``liveness-edge``: argparse -> options -> ``run`` (source -> pipeline -> outputs). Tests call ``run``/``main``.

Every failure becomes one line on stderr and a documented exit code (see ``EXIT_CODES``); outputs are
closed and the summary printed on every way out, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from .errors import (
    INTERRUPTED_EXIT_CODE,
    BackendUnavailable,
    DisplayError,
    ManifestError,
    ModelError,
    OutputError,
    SourceError,
    SourceLost,
    UsageError,
    run_cli,
    signals_deferred,
)
from .manifest import ARTIFACTS_DIR, DEFAULT_MANIFEST, Manifest
from .output import ImageSaver, JsonlWriter, RunSummary, VideoWriter, Window, display_problem
from .overlay import draw
from .pipeline import LivenessPipeline, PipelineOptions
from .quality import QualityOptions
from .smoothing import SmoothingOptions
from .sources import ROTATIONS, Frame, SourceSpec, open_source, rotate
from .tracking import TrackerOptions
from .types import BACKEND_CHOICES, DetectorVariant, FrameResult, Precision, RunningMode, SmoothingMethod

PROG = "liveness-edge"
SAMPLES_DIR = ARTIFACTS_DIR / "samples"
EXIT_CODES = {
    0: "success",
    1: "unexpected internal error",
    UsageError.exit_code: "bad command-line options",
    ModelError.exit_code: "model file missing, corrupt, or not matching the manifest sha256",
    ManifestError.exit_code: "manifest missing, malformed, or without the requested model/detector",
    SourceError.exit_code: "source cannot be opened or read (no camera, unreachable URL, corrupt video/image)",
    BackendUnavailable.exit_code: "inference library (onnxruntime / ai-edge-litert) not installed",
    SourceLost.exit_code: "camera or stream disconnected during the run",
    DisplayError.exit_code: "--display asked for but no window can be opened",
    OutputError.exit_code: "output file or folder cannot be written",
    INTERRUPTED_EXIT_CODE: "interrupted (Ctrl-C or SIGTERM); outputs are closed first",
}
log = logging.getLogger("liveness_edge")


@dataclass(frozen=True)
class RunOptions:
    """One run of the tool. ``display``: auto (window when possible), on (error if impossible) or off."""

    source: SourceSpec
    pipeline: PipelineOptions = PipelineOptions()
    manifest: Path = DEFAULT_MANIFEST
    rotate: int = 0
    jsonl: str | None = None
    output: str | None = None
    save_dir: str | None = None
    display: str = "auto"
    max_frames: int = 0
    quiet: bool = False
    demo: bool = False
    debug: bool = False


def _say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


@functools.cache
def _say_once(message: str, quiet: bool) -> None:
    _say(message, quiet)


def _open_window(mode: str, quiet: bool) -> Window | None:
    if mode == "off":
        return None
    problem = display_problem()
    if problem and mode == "auto":
        _say_once(f"no window ({problem}): running headless", quiet)
        return None
    return Window(PROG)


def _face_line(result: FrameResult, name: str, expected: str | None) -> str:
    label = f" [sample of a {expected} face]" if expected else ""
    if not result.faces:
        return f"{name}{label}: no face found"
    faces = "; ".join(
        f"#{f.track} {f.decision} p_real={f.p_real:.3f}" + (f" ({f.reason})" if f.reason else "") for f in result.faces
    )
    return f"{name}{label}: {faces}"


def _progress(total: int | None, enabled: bool):
    """A tqdm bar for file sources when tqdm is installed (it is optional on devices) and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="frame", leave=False)


@contextlib.contextmanager
def _native_info_hidden(hidden: bool):
    """LiteRT's C++ code prints ``INFO: Created TensorFlow Lite XNNPACK delegate`` on stderr when it loads a
    model. Catch what is written to fd 2 meanwhile and pass on everything but native ``INFO:`` lines."""
    if not hidden:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [ln for ln in caught.read().decode(errors="replace").splitlines(True) if not ln.startswith("INFO: ")]
            sys.stderr.write("".join(kept))


class _Outputs:
    """Everything a processed frame goes to, opened from the options and closed together on any exit."""

    def __init__(self, options: RunOptions, fps: float | None) -> None:
        self.options = options
        self.still = options.pipeline.running_mode == RunningMode.IMAGE
        self.jsonl = self.video = self.saver = self.window = None
        try:
            self.jsonl = JsonlWriter(options.jsonl) if options.jsonl else None
            self.video = VideoWriter(options.output, fps) if options.output else None
            self.saver = ImageSaver(options.save_dir) if options.save_dir else None
            self.window = _open_window(options.display, options.quiet)
        except BaseException:
            self.close()
            raise

    def emit(self, frame: Frame, image: np.ndarray, result: FrameResult, fps: float) -> bool:
        """Write/draw/show one result; False when the user closed the window (q or Esc)."""
        if self.jsonl:
            self.jsonl.write(result)
        if self.still and not self.options.quiet:
            expected = Path(frame.source).parent.name if self.options.demo else None
            print(f"  {_face_line(result, frame.name, expected)}", file=sys.stderr, flush=True)
        if not (self.video or self.saver or self.window):
            return True
        draw(image, result, None if self.still else fps)
        if self.video:
            self.video.write(image)
        if self.saver:
            self.saver.save(frame.name, image)
        return self.window.show(image, wait=self.still) if self.window else True

    def close(self) -> None:
        for out in (self.jsonl, self.video, self.saver, self.window):
            if out is not None:
                out.close()


def run(options: RunOptions) -> RunSummary:
    """Process the source until it ends (or q/Esc, or ``max_frames``); returns the run's summary.

    The source is opened before the models load, so a missing camera or file fails fast.
    """
    still = options.pipeline.running_mode == RunningMode.IMAGE
    cv2.setNumThreads(options.pipeline.threads)  # OpenCV's pool too: --threads 1 means one busy core
    source = open_source(options.source)
    summary = RunSummary()
    outputs: _Outputs | None = None
    bar = None
    try:
        with _native_info_hidden(not options.debug), signals_deferred():
            pipeline = LivenessPipeline.from_manifest(options.manifest, options.pipeline)
        _say(pipeline.description, options.quiet)
        if not pipeline.verified and options.quiet:  # the library's warning is hidden by --quiet; this is not
            _say(f"WARNING: {options.pipeline.model_path} runs unverified (--allow-unverified)", quiet=False)
        _say(source.info, options.quiet)
        outputs = _Outputs(options, source.fps)
        bar = _progress(source.length, not source.live and not still and not options.quiet)
        fps, last = 0.0, summary.start()
        for frame in source.frames():
            image = rotate(frame.image, options.rotate)
            result = pipeline.process(image, frame.source, frame.index, frame.capture_ms)
            summary.add(result)
            now = time.perf_counter()
            rate = 1.0 / max(now - last, 1e-6)
            fps, last = (rate if fps == 0.0 else 0.9 * fps + 0.1 * rate), now
            if not outputs.emit(frame, image, result, fps):
                break
            if bar is not None:
                bar.update(1)
            if options.max_frames and summary.frames >= options.max_frames:
                break
    finally:
        summary.skipped = len(getattr(source, "skipped", []))
        summary.dropped = getattr(source, "dropped", 0)
        summary.finish()
        for closer in (bar, outputs, source):
            if closer is not None:
                closer.close()
        if summary.frames:
            _say(summary.format(), options.quiet)
    return summary


def run_demo(options: RunOptions, models: list[str] | None = None) -> list[RunSummary]:
    """The shipped models (``models``, default: every model in the manifest) on the shipped sample images
    (real and spoof), one line per image."""
    if not SAMPLES_DIR.is_dir():
        raise SourceError(f"demo images not found in {SAMPLES_DIR} (incomplete install?)")
    models = models or Manifest.load(options.manifest).model_names
    summaries = []
    for model in models:
        _say(f"demo: {model} on the sample images in {SAMPLES_DIR} (see NOTICE.md there)", options.quiet)
        demo = replace(
            options, source=SourceSpec("images", str(SAMPLES_DIR)),
            pipeline=replace(options.pipeline, model=model, running_mode=RunningMode.IMAGE),
            save_dir=str(Path(options.save_dir) / model) if options.save_dir else None, demo=True,
        )
        summaries.append(run(demo))
    return summaries


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {what}" for code, what in sorted(EXIT_CODES.items()))
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Face detection plus liveness (real vs. spoof) on cameras, streams, videos and images.",
        epilog=f"examples:\n  {PROG} --demo\n  {PROG} --camera 0\n  {PROG} --video clip.mp4 --jsonl -\n\n"
        f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("source (choose one)").add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N|picam", help="camera index (OpenCV/V4L2), or 'picam' for the Pi camera")
    src.add_argument("--url", help="RTSP or HTTP (MJPEG) stream, e.g. http://phone:8080/video")
    src.add_argument("--video", metavar="FILE", help="video file")
    src.add_argument("--image", metavar="FILE|DIR", help="an image, or a folder of images (each independent)")
    src.add_argument("--demo", action="store_true", help="run the shipped models on the shipped sample images")
    cap = p.add_argument_group("capture")
    cap.add_argument("--width", type=int, help="camera width to request")
    cap.add_argument("--height", type=int, help="camera height to request")
    cap.add_argument("--fps", type=float, help="camera frame rate to request")
    cap.add_argument("--every", type=int, default=1, metavar="N", help="video: process every Nth frame")
    cap.add_argument("--rotate", type=int, default=0, choices=sorted(ROTATIONS), help="rotate frames clockwise")
    cap.add_argument("--retries", type=int, default=5, help="stream reconnect attempts before giving up")
    m = p.add_argument_group("model")
    po, so, qo = PipelineOptions, SmoothingOptions, QualityOptions
    m.add_argument("--model", help=f"liveness model named in the manifest (default {po.model}; --demo: all of them)")
    m.add_argument("--backend", choices=BACKEND_CHOICES, default=po.backend, help="auto: fastest per the manifest")
    m.add_argument("--precision", choices=tuple(Precision), default=po.precision)
    m.add_argument("--threads", type=int, default=po.threads, help="inference and OpenCV threads (at most 4 per CPU)")
    m.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    m.add_argument("--model-path", metavar="FILE", help="a model file outside the manifest (needs --sha256 or "
                   "--allow-unverified)")
    m.add_argument("--sha256", metavar="HEX", help="expected sha256 of --model-path")
    m.add_argument("--allow-unverified", action="store_true", help="run --model-path without a checked sha256")
    m.add_argument("--detector", choices=tuple(DetectorVariant), default=po.detector, help="BlazeFace range")
    m.add_argument("--min-detector-score", type=float, default=po.min_detector_score, help="0.1-1")
    m.add_argument("--detect-every", type=int, default=po.detect_every, metavar="N",
                   help="video/camera: detect every N frames, track between")
    m.add_argument("--max-faces", type=int, default=po.max_faces, metavar="N", help="largest N faces (0: all)")
    d = p.add_argument_group("decision")
    d.add_argument("--smoothing", choices=tuple(SmoothingMethod), default=so.method)
    d.add_argument("--alpha", type=float, default=so.alpha, help="EMA weight of the newest score")
    d.add_argument("--window", type=int, default=so.window, help="window length (frames)")
    d.add_argument("--margin", type=float, default=so.margin, help="hysteresis half-width around the model threshold")
    d.add_argument("--real-above", type=float, help="turn real above this smoothed score (default threshold+margin)")
    d.add_argument("--spoof-below", type=float, help="turn spoof below this (default threshold-margin)")
    d.add_argument("--min-track-age", type=int, help="frames before a track may be decided (default 3 / window)")
    d.add_argument("--min-face", type=float, help="uncertain below this face size in px (default from the model)")
    d.add_argument("--min-inside", type=float, default=qo.min_inside,
                   help="uncertain if less of the face box is in the frame")
    d.add_argument("--dark", type=float, default=qo.dark_mean, help="uncertain if the face's mean grey is below this")
    d.add_argument("--min-sharpness", type=float, default=qo.min_sharpness,
                   help="uncertain if the face is blurrier than this")
    o = p.add_argument_group("output")
    o.add_argument("--jsonl", metavar="FILE|-", help="one JSON object per frame ('-' = stdout)")
    o.add_argument("--output", metavar="FILE.mp4", help="write the annotated video")
    o.add_argument("--save-dir", metavar="DIR", help="write annotated images (named after the input)")
    shown = o.add_mutually_exclusive_group()
    shown.add_argument("--display", dest="display", action="store_const", const="on", default="auto",
                       help="require a window (error if none can open)")
    shown.add_argument("--no-display", dest="display", action="store_const", const="off", help="never open a window")
    o.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (0: no limit)")
    o.add_argument("--quiet", action="store_true", help="only errors on stderr")
    o.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    return p


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Typed options from parsed arguments; impossible values (the options' ``ValueError``) become a ``UsageError``."""
    if args.camera is not None:
        if args.camera != "picam" and not args.camera.isdigit():
            raise UsageError(f"--camera takes a camera number or 'picam', not {args.camera!r}")
        kind, target = ("picam", "") if args.camera == "picam" else ("camera", args.camera)
    elif args.url:
        kind, target = "url", args.url
    elif args.video:
        kind, target = "video", args.video
    else:
        kind, target = "images", args.image or ""
    if (args.sha256 or args.allow_unverified) and not args.model_path:
        raise UsageError("--sha256 and --allow-unverified only go with --model-path")
    if args.every < 1 or args.retries < 0 or args.max_frames < 0:
        raise UsageError("--every must be >= 1, --retries and --max-frames >= 0")
    spec = SourceSpec(kind, target, args.width, args.height, args.fps, args.every, args.retries)
    try:
        smoothing = SmoothingOptions(
            method=args.smoothing, alpha=args.alpha, window=args.window, margin=args.margin,
            real_above=args.real_above, spoof_below=args.spoof_below, min_track_age=args.min_track_age,
        )
        quality = QualityOptions(args.min_face, args.min_inside, args.dark, args.min_sharpness)
        pipeline = PipelineOptions(
            running_mode=spec.running_mode, model=args.model or PipelineOptions.model, backend=args.backend, precision=args.precision,
            threads=args.threads, detector=args.detector, min_detector_score=args.min_detector_score,
            detect_every=args.detect_every, max_faces=args.max_faces, model_path=args.model_path,
            model_sha256=args.sha256, allow_unverified=args.allow_unverified, smoothing=smoothing, quality=quality,
            tracker=TrackerOptions(),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    return RunOptions(
        source=spec, pipeline=pipeline, manifest=args.manifest, rotate=args.rotate, jsonl=args.jsonl,
        output=args.output, save_dir=args.save_dir, display=args.display, max_frames=args.max_frames,
        quiet=args.quiet, demo=args.demo, debug=args.debug,
    )


def _configure_logging(quiet: bool, debug: bool) -> None:
    """Warnings as ``liveness-edge: WARNING: ...`` lines; OpenCV's own console noise off unless --debug."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    if not debug:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages (read at first use)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet, args.debug)
    signal.signal(signal.SIGTERM, _terminate)

    def body() -> int:
        options = options_from_args(args)
        if args.demo:
            run_demo(options, [args.model] if args.model else None)
        else:
            run(options)
        return 0

    return run_cli(PROG, body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
