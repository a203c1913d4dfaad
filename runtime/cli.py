"""``liveness-edge``: argparse -> options -> ``run`` (source -> pipeline -> outputs). Tests call ``run``/``main``.

Every failure becomes one line on stderr and a documented exit code (see ``EXIT_CODES``); outputs are
closed and the summary printed on every way out, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
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
from .challenge import DEFAULT_ACTIONS, ChallengeOptions, ChallengeResult
from .manifest import ARTIFACTS_DIR, DEFAULT_MANIFEST, Manifest
from .output import (
    ImageSaver,
    JsonlWriter,
    ReaderGone,
    RunSummary,
    VideoWriter,
    Window,
    display_problem,
    saved_image_path,
    write_line,
)
from .overlay import draw
from .pipeline import MIN_DETECTOR_SCORE, LivenessPipeline, PipelineOptions
from .preview import DEFAULT_ADDRESS, PreviewServer, parse_address
from .quality import QualityOptions
from .smoothing import SmoothingOptions
from .sources import ROTATIONS, Frame, FrameSource, SourceSpec, open_source, readers_still_blocked, rotate
from .terminal import native_stderr, printable
from .tracking import TrackerOptions
from .types import BACKEND_CHOICES, DetectorVariant, FrameResult, Precision, RunningMode, SmoothingMethod

PROG = "liveness-edge"
SAMPLES_DIR = ARTIFACTS_DIR / "samples"
CHALLENGE_FAILED_EXIT = 12
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
    CHALLENGE_FAILED_EXIT: "--challenge failed (the reason is on stderr and in the JSONL)",
    INTERRUPTED_EXIT_CODE: "interrupted (Ctrl-C or SIGTERM); outputs are closed first",
}
log = logging.getLogger("liveness_edge")


@dataclass(frozen=True)
class RunOptions:
    """One run of the tool. ``display``: auto (window when possible), on (error if impossible) or off.
    ``preview``: HOST:PORT to serve the annotated stream and a JSON status on, or None."""

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
    challenge: ChallengeOptions | None = None
    preview: str | None = None

    def __post_init__(self) -> None:
        """The source says how its frames relate (``SourceSpec.running_mode``); the pipeline follows it."""
        if self.pipeline.running_mode != self.source.running_mode:
            object.__setattr__(self, "pipeline", replace(self.pipeline, running_mode=self.source.running_mode))


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
        _say_once(f"no window ({problem}): running headless; --preview shows the run in a browser", quiet)
        return None
    return Window(PROG)


def _face_line(result: FrameResult, name: str, expected: str | None) -> str:
    label = f" [sample of a {expected} face]" if expected else ""
    if not result.faces:
        return f"{name}{label}: no face found"
    faces = "; ".join(
        f"#{f.track} {f.decision} p_real={f.p_real:.3f}" + (f" ({f.reason})" if f.reason else "") for f in result.faces
    )
    return f"{printable(name)}{label}: {faces}"


def _status_line(result: FrameResult, frames: int, fps: float) -> str:
    """What a headless run prints once a second: the rate and each face's decision."""
    faces = ", ".join(
        f"#{f.track} {f.decision} P(real) {f.p_real_smoothed:.2f}" + (f" ({f.reason})" if f.reason else "")
        for f in result.faces
    )
    line = f"{time.strftime('%H:%M:%S')} frame {frames}, {fps:.1f} FPS: {faces or 'no face'}"
    return line + (f"; challenge: {result.challenge.prompt}" if result.challenge is not None else "")


def _status(result: FrameResult, frames: int, fps: float, summary: RunSummary) -> dict:
    """The preview's ``/status.json``."""
    return {
        "frames": frames,
        "fps": round(fps, 2),
        "decisions": dict(summary.decisions),
        "faces": [
            {"track": f.track, "decision": f.decision, "p_real_smoothed": round(float(f.p_real_smoothed), 4),
             "reason": f.reason, "box": [round(float(v), 1) for v in f.box]}
            for f in result.faces
        ],
        "challenge": None if result.challenge is None else result.challenge.to_dict(),
    }


def _progress(total: int | None, enabled: bool):
    """A tqdm bar for file sources when tqdm is installed (it is optional on devices) and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="frame", leave=False)


def _load_pipeline(options: RunOptions) -> LivenessPipeline:
    """Models load with fd 2 caught and signals held: ONNX Runtime's and LiteRT's native lines become log
    lines (debug when loading failed, so the error stays one line; LiteRT's ``INFO:`` chatter is dropped)."""
    ok = False
    try:
        with native_stderr(not options.debug) as caught, signals_deferred():
            pipeline = LivenessPipeline.from_manifest(options.manifest, options.pipeline)
            if options.challenge is not None:
                pipeline.start_challenge(options.challenge)  # loads the landmark models
        ok = True
    finally:
        for line in caught.lines:
            if line.startswith(f"{PROG}: ") and (ok or "WARNING" in line):
                print(line, file=sys.stderr)  # our own warnings, e.g. an unverified model
            elif not line.startswith("INFO: "):
                (log.warning if ok else log.debug)("%s", printable(line))
    return pipeline


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_overwriting_inputs(options: RunOptions, source: FrameSource) -> None:
    """An output that is an input (the video, an image, the manifest or model) would destroy it: refuse
    before anything is opened for writing. Links and other spellings of the same file count."""
    inputs = [str(options.manifest)] + ([options.pipeline.model_path] if options.pipeline.model_path else [])
    if options.source.kind == "video":
        inputs.append(options.source.target)
    files = getattr(source, "files", [])
    outputs = {"--jsonl": options.jsonl if options.jsonl != "-" else None, "--output": options.output}
    for flag, out in outputs.items():
        if out and os.path.exists(out):
            hit = next((i for i in [*inputs, *files] if _same_file(out, i)), None)
            if hit is not None:
                raise UsageError(f"{flag} {printable(out)} is an input ({printable(str(hit))}): refusing to overwrite it")
    if options.jsonl and options.output and options.jsonl != "-" and (
        _same_file(options.jsonl, options.output) or Path(options.jsonl).resolve() == Path(options.output).resolve()
    ):
        raise UsageError("--jsonl and --output name the same file")
    if options.save_dir and files:
        root = getattr(source, "root", None)
        for f in files:
            name = f.name if root is None or root.is_file() else str(f.relative_to(root))
            if _same_file(saved_image_path(options.save_dir, name), f):
                raise UsageError(
                    f"--save-dir {printable(options.save_dir)} would overwrite the input {printable(str(f))}: "
                    "choose another folder"
                )


class _Outputs:
    """Everything a processed frame goes to, opened from the options and closed together on any exit.

    Human-readable results (a line per image, a status line per second when nothing else shows the run) go
    to stdout, or to stderr when stdout carries the JSONL.
    """

    def __init__(self, options: RunOptions, source: FrameSource, pipeline: LivenessPipeline, headless_bar: bool):
        self.options = options
        self.still = options.pipeline.running_mode == RunningMode.IMAGE
        self.band = pipeline.band
        self.results = sys.stderr if options.jsonl == "-" else sys.stdout
        self.jsonl = self.video = self.saver = self.window = self.preview = None
        self.as_expected = self.judged = 0
        self._next_status = 0.0
        try:
            self.jsonl = JsonlWriter(options.jsonl) if options.jsonl else None
            self.video = VideoWriter(options.output, source.fps) if options.output else None
            self.saver = ImageSaver(options.save_dir) if options.save_dir else None
            self.window = _open_window(options.display, options.quiet or bool(options.preview))
            if options.preview:
                self.preview = PreviewServer(options.preview, source.info, pipeline.description)
                where = "on the network" if self.preview.public else "this machine only"
                _say(f"preview: open {self.preview.url} in a browser ({where}); Ctrl-C quits", options.quiet)
        except BaseException:
            self.close()
            raise
        self.status_lines = not (self.still or self.window or self.preview or headless_bar or options.quiet)

    def emit(self, frame: Frame, image: np.ndarray, result: FrameResult, fps: float, summary: RunSummary) -> bool:
        """Write/draw/show one result; False when the user closed the window (q or Esc)."""
        if self.jsonl:
            self.jsonl.write(result)
        if self.still and not self.options.quiet:
            expected = Path(frame.source).parent.name if self.options.demo else None
            if expected and result.faces:
                self.judged += 1
                self.as_expected += result.faces[0].decision == expected
            write_line(self.results, f"  {_face_line(result, frame.name, expected)}", "results")
        if self.status_lines and time.perf_counter() >= self._next_status:
            self._next_status = time.perf_counter() + 1.0
            write_line(self.results, _status_line(result, summary.frames, fps), "the status line")
        if not (self.video or self.saver or self.window or self.preview):
            return True
        draw(image, result, None if self.still else fps, self.band)
        if self.video:
            self.video.write(image)
        if self.saver:
            self.saver.save(frame.name, image)
        if self.preview:
            self.preview.publish(image, _status(result, summary.frames, fps, summary))
        return self.window.show(image, wait=self.still) if self.window else True

    def close(self) -> None:
        """Close everything, then raise the first failure (a video that could not be completed)."""
        failure = None
        for out in (self.jsonl, self.video, self.saver, self.window, self.preview):
            if out is None:
                continue
            try:
                out.close()
            except OutputError as e:
                failure = failure or e
        if failure is not None:
            raise failure


def _finish(summary: RunSummary, source: FrameSource, closers: list, options: RunOptions) -> OutputError | None:
    """Close outputs and source, print the summary; returns the first output failure instead of raising it."""
    summary.skipped = len(getattr(source, "skipped", []))
    summary.dropped = getattr(source, "dropped", 0)
    summary.finish()
    failure = None
    for closer in closers:
        if closer is None:
            continue
        try:
            closer.close()
        except OutputError as e:
            failure = failure or e
    if summary.frames:
        _say(summary.format(), options.quiet)
    return failure


def run(options: RunOptions) -> RunSummary:
    """Process the source until it ends (or q/Esc, or ``max_frames``); returns the run's summary.

    The source is opened before the models load, so a missing camera or file fails fast; outputs that would
    overwrite an input are refused before anything is written.
    """
    still = options.pipeline.running_mode == RunningMode.IMAGE
    cv2.setNumThreads(options.pipeline.threads)  # OpenCV's pool too: --threads 1 means one busy core
    source = open_source(options.source)
    summary = RunSummary()
    outputs: _Outputs | None = None
    bar = None
    try:
        _refuse_overwriting_inputs(options, source)
        pipeline = _load_pipeline(options)
        _say(pipeline.description, options.quiet)
        if not pipeline.verified and options.quiet:  # the library's warning is hidden by --quiet; this is not
            _say(f"WARNING: {options.pipeline.model_path} runs unverified (--allow-unverified)", quiet=False)
        _say(source.info, options.quiet)
        bar = _progress(source.length, not source.live and not still and not options.quiet)
        outputs = _Outputs(options, source, pipeline, bar is not None)
        fps, interval, last = 0.0, 0.0, summary.start()
        clock, t = time.monotonic, 0.0  # a challenge's timeouts: real time live, the recording's own for files
        for frame in source.frames():
            image = rotate(frame.image, options.rotate)
            t = clock() if source.live or not source.fps else frame.index / source.fps
            result = pipeline.process(image, frame.source, frame.index, frame.capture_ms, t)
            summary.add(result)
            now = time.perf_counter()
            interval = (now - last) if interval == 0.0 else 0.9 * interval + 0.1 * (now - last)
            fps, last = 1.0 / max(interval, 1e-6), now  # the mean interval's inverse: bursts do not inflate it
            if not outputs.emit(frame, image, result, fps, summary):
                break
            if bar is not None:
                bar.update(1)
            if options.max_frames and summary.frames >= options.max_frames:
                break
            if result.challenge is not None and result.challenge.result is not None:
                break
    except ReaderGone as e:
        _say(f"{e}: stopping", options.quiet)
    except BaseException:
        failure = _finish(summary, source, [bar, outputs, source], options)
        if failure is not None:
            log.debug("while stopping: %s", failure)
        raise
    if options.challenge is not None:
        summary.challenge = pipeline.challenge.stop(t).result
    failure = _finish(summary, source, [bar, outputs, source], options)
    if failure is not None:
        raise failure
    if options.demo and outputs is not None:
        _say(f"{outputs.as_expected} of {outputs.judged} sample faces judged as their folder says", options.quiet)
    return summary


def run_demo(options: RunOptions, models: list[str] | None = None) -> list[RunSummary]:
    """The shipped models (``models``, default: every model in the manifest) on the shipped sample images
    (real and spoof), one line per image."""
    if not SAMPLES_DIR.is_dir():
        raise SourceError(f"demo images not found in {SAMPLES_DIR} (incomplete install?)")
    models = models or Manifest.load(options.manifest).model_names
    summaries = []
    _say(
        "demo: each shipped model judges 4 sample photos, 2 of live faces (real/) and 2 of printed or replayed "
        "ones (spoof/). Expect one line per photo, 'real' or 'spoof' with P(real) and the folder it came from; "
        "a model can be wrong on photos unlike its training data. Add --save-dir DIR to keep annotated copies.",
        options.quiet,
    )
    for model in models:
        _say(f"demo: {model} on the sample images in {SAMPLES_DIR} (see NOTICE.md there)", options.quiet)
        demo = replace(
            options, source=SourceSpec("images", str(SAMPLES_DIR)),
            pipeline=replace(options.pipeline, model=model),
            save_dir=str(Path(options.save_dir) / model) if options.save_dir else None, demo=True,
        )
        summaries.append(run(demo))
    if options.save_dir:
        _say(f"demo: annotated copies are in {printable(options.save_dir)}/<model>/", options.quiet)
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
    cap.add_argument("--every", type=int, default=SourceSpec.every, metavar="N", help="video: process every Nth frame")
    cap.add_argument("--rotate", type=int, default=RunOptions.rotate, choices=sorted(ROTATIONS),
                     help="rotate frames clockwise")
    cap.add_argument("--retries", type=int, default=SourceSpec.retries,
                     help="stream reconnects in all (counted again after a connection held 100 frames)")
    cap.add_argument("--max-megapixels", type=float, default=SourceSpec.max_pixels / 1e6, metavar="MP",
                     help="images larger than this are refused before decoding")
    m = p.add_argument_group("model")
    po, so, qo = PipelineOptions, SmoothingOptions, QualityOptions
    m.add_argument("--model", help=f"liveness model named in the manifest (default {po.model}; --demo: all of them)")
    m.add_argument("--backend", choices=BACKEND_CHOICES, default=po.backend, help="auto: fastest per the manifest")
    m.add_argument("--precision", choices=tuple(Precision), default=po.precision, help="int8: quantized, faster")
    m.add_argument("--threads", type=int, default=po.threads, help="inference and OpenCV threads (at most 4 per CPU)")
    m.add_argument("--manifest", type=Path, default=RunOptions.manifest, help="which model files exist, and their sha256")
    m.add_argument("--model-path", metavar="FILE", help="a model file outside the manifest (needs --sha256 or "
                   "--allow-unverified)")
    m.add_argument("--sha256", metavar="HEX", help="expected sha256 of --model-path")
    m.add_argument("--allow-unverified", action="store_true", help="run --model-path without a checked sha256")
    m.add_argument("--detector", choices=tuple(DetectorVariant), default=po.detector, help="BlazeFace range")
    m.add_argument("--min-detector-score", type=float, default=po.min_detector_score,
                   help=f"BlazeFace score to count as a face ({MIN_DETECTOR_SCORE}-1)")
    m.add_argument("--detect-every", type=int, default=po.detect_every, metavar="N",
                   help="video/camera: detect every N frames, track between")
    m.add_argument("--max-faces", type=int, default=po.max_faces, metavar="N", help="largest N faces (0: all)")
    d = p.add_argument_group("decision")
    d.add_argument("--smoothing", choices=tuple(SmoothingMethod), default=so.method, help="per-track average of P(real)")
    d.add_argument("--alpha", type=float, default=so.alpha, help="EMA weight of the newest score")
    d.add_argument("--window", type=int, default=so.window, help="window length (frames)")
    d.add_argument("--margin", type=float, default=so.margin, help="hysteresis half-width around the model threshold, for a model whose manifest entry records no band")
    d.add_argument("--real-above", type=float, help="turn real above this smoothed score (default the manifest band's top, else threshold+margin)")
    d.add_argument("--spoof-below", type=float, help="turn spoof below this (default the manifest band's bottom, else threshold-margin)")
    d.add_argument("--min-track-age", type=int, help="frames before a track may be decided (default 3 / window)")
    d.add_argument("--min-face", type=float, help="uncertain below this face size in px (default from the model)")
    d.add_argument("--min-inside", type=float, default=qo.min_inside,
                   help="uncertain if less of the face box is in the frame")
    d.add_argument("--dark", type=float, default=qo.dark_mean, help="uncertain if the face's mean grey is below this")
    d.add_argument("--min-sharpness", type=float, default=qo.min_sharpness,
                   help="uncertain if the face is blurrier than this")
    c = p.add_argument_group("active challenge (camera, stream or video)")
    c.add_argument("--challenge", nargs="?", const=",".join(DEFAULT_ACTIONS), metavar="ACTIONS",
                   help="ask for random actions from this comma list of blink,left,right,up,down (default "
                   "blink,left,right); exit 0 if passed, 12 if not")
    c.add_argument("--challenge-timeout", type=float, default=ChallengeOptions.timeout_s, metavar="S",
                   help="seconds allowed per action (default %(default)s)")
    c.add_argument("--challenge-count", type=int, metavar="N", help="actions to ask (default: each once)")
    c.add_argument("--challenge-seed", type=int, metavar="N", help="fixed random order (tests, audits)")
    o = p.add_argument_group("output")
    o.add_argument("--jsonl", metavar="FILE|-", help="one JSON object per frame ('-' = stdout)")
    o.add_argument("--output", metavar="FILE.mp4", help="write the annotated video")
    o.add_argument("--save-dir", metavar="DIR", help="write annotated images (named after the input)")
    shown = o.add_mutually_exclusive_group()
    shown.add_argument("--display", dest="display", action="store_const", const="on", default=RunOptions.display,
                       help="require a window (error if none can open)")
    shown.add_argument("--no-display", dest="display", action="store_const", const="off", help="never open a window")
    o.add_argument("--preview", nargs="?", const=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"serve the annotated stream and a JSON status to a browser (default {DEFAULT_ADDRESS}, "
                   "this machine only)")
    o.add_argument("--max-frames", type=int, default=RunOptions.max_frames, metavar="N",
                   help="stop after N frames (0: no limit)")
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
    if args.model and not args.model_path and args.model not in (names := Manifest.load(args.manifest).model_names):
        raise UsageError(f"--model {args.model!r} is not in the manifest; it has {', '.join(names) or 'no models'}")
    if (args.sha256 or args.allow_unverified) and not args.model_path:
        raise UsageError("--sha256 and --allow-unverified only go with --model-path")
    if args.every < 1 or args.retries < 0 or args.max_frames < 0:
        raise UsageError("--every must be >= 1, --retries and --max-frames >= 0")
    if not 0 < args.max_megapixels < float("inf"):
        raise UsageError(f"--max-megapixels must be a positive number, not {args.max_megapixels}")
    if args.preview is not None:
        parse_address(args.preview)
    spec = SourceSpec(kind, target, args.width, args.height, args.fps, args.every, args.retries,
                      max_pixels=int(args.max_megapixels * 1e6))
    try:
        smoothing = SmoothingOptions(
            method=args.smoothing, alpha=args.alpha, window=args.window, margin=args.margin,
            real_above=args.real_above, spoof_below=args.spoof_below, min_track_age=args.min_track_age,
        )
        quality = QualityOptions(args.min_face, args.min_inside, args.dark, args.min_sharpness)
        pipeline = PipelineOptions(
            model=args.model or PipelineOptions.model, backend=args.backend, precision=args.precision,
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
        quiet=args.quiet, demo=args.demo, debug=args.debug, preview=args.preview,
        challenge=_challenge_options(args, kind),
    )


def _challenge_options(args: argparse.Namespace, kind: str) -> ChallengeOptions | None:
    if args.challenge is None:
        return None
    if kind == "images":
        raise UsageError("--challenge needs a camera, a stream or a video: one picture cannot blink")
    try:
        return ChallengeOptions(tuple(a.strip() for a in args.challenge.split(",") if a.strip()),
                                args.challenge_count, args.challenge_timeout, args.challenge_seed)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _challenge_exit(result: ChallengeResult | None, quiet: bool) -> int:
    """0 when the challenge passed, else ``CHALLENGE_FAILED_EXIT`` with one line saying why."""
    if result is not None and result.passed:
        times = ", ".join(f"{a} {t:.1f} s" for a, t in zip(result.actions, result.times_s))
        _say(f"challenge passed: {times}", quiet)
        return 0
    if result is not None:
        done = [a for a, t in zip(result.actions, result.times_s) if t is not None]
        _say(f"challenge failed: {result.reason} (asked {', '.join(result.actions)}; done: "
             f"{', '.join(done) or 'nothing'})", quiet)
    return CHALLENGE_FAILED_EXIT


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
    """The command. Run as a program (no ``argv``), it leaves without finalizing the interpreter when a
    stream reader is still blocked in a native read: finalizing under it aborts the process (exit 134)."""
    code = _main(argv)
    if argv is None and readers_still_blocked():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet, args.debug)
    signal.signal(signal.SIGTERM, _terminate)

    def body() -> int:
        options = options_from_args(args)
        if args.demo:
            run_demo(options, [args.model] if args.model else None)
            return 0
        summary = run(options)
        return 0 if options.challenge is None else _challenge_exit(summary.challenge, options.quiet)

    return run_cli(PROG, body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
