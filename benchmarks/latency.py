"""Per-frame latency of the real runtime pipeline, one configuration per fresh process.

Each configuration (model x backend x precision x threads, the detector alone, the classic baseline) runs in its
own interpreter (``python -m liveness_edge.benchmarks.latency CONFIG_JSON RESULT_PATH``), so no configuration
inherits another's warm caches, thread pools or memory peak; a configuration that fails becomes a failed row.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..runtime.errors import BackendUnavailable, LivenessEdgeError, SourceError
from ..runtime.labels import IMAGE_SUFFIXES
from ..runtime.manifest import ARTIFACTS_DIR, DEFAULT_MANIFEST, Manifest
from ..runtime.sources import ImageSource, VideoSource
from ..runtime.types import DetectorVariant, Stage, StageTimes
from .timer import LatencyStats, StageRecorder, ms_since

STAGES = tuple(Stage)  # the runtime's stage names; the bench's total is ``StageTimes.processing`` (decode excluded)
DETECTOR_STAGES = (Stage.CAPTURE, Stage.DETECT, Stage.TOTAL)
SAMPLES_DIR = ARTIFACTS_DIR / "samples"
FRAME_SIZE = (640, 480)
CLIP_LENGTH = 8


@dataclass(frozen=True)
class BenchConfig:
    """One row of the matrix. ``kind`` is ``pipeline`` (detector + liveness), ``detector`` or ``baseline``."""

    kind: str
    model: str = ""
    backend: str = ""
    precision: str = ""
    threads: int = 1
    detector: DetectorVariant = DetectorVariant.SHORT
    frames: int = 200
    warmup: int = 20
    source: str = ""
    manifest: str = str(DEFAULT_MANIFEST)
    baseline_model: str = ""
    challenge: bool = False  # pipeline with an active challenge kept running (face landmarks on every frame)

    @property
    def name(self) -> str:
        if self.kind == "baseline":
            return "baseline: OpenCV SSD + Keras predict"
        if self.kind == "detector":
            return f"detector only {self.backend} {self.threads}t"
        name = f"{self.model} {self.backend} {self.precision} {self.threads}t"
        return name + " + challenge" if self.challenge else name


@dataclass
class ConfigResult:
    """What one configuration measured; ``status`` is ``ok``, ``failed`` or ``skipped`` (with ``error``)."""

    config: BenchConfig
    status: str
    error: str = ""
    stages: dict[str, LatencyStats] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    load_ms: float = 0.0
    peak_rss_mb: float = 0.0
    model_bytes: int = 0
    detector_bytes: int = 0
    faces_per_frame: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.config.name
        d["samples"] = {k: [round(v, 4) for v in vs] for k, vs in self.samples.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConfigResult":
        d = {k: v for k, v in d.items() if k != "name"}
        return cls(
            **{
                **d,
                "config": BenchConfig(**d["config"]),
                "stages": {k: LatencyStats(**v) for k, v in d.get("stages", {}).items()},
            }
        )


@dataclass(frozen=True)
class MatrixOptions:
    """What to measure. Empty ``models``/``backends``/``precisions`` mean everything the manifest ships."""

    models: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    threads: tuple[int, ...] = (1, 2)
    frames: int = 200
    warmup: int = 20
    source: str = ""
    manifest: str = str(DEFAULT_MANIFEST)
    detector: DetectorVariant = DetectorVariant.SHORT
    detector_rows: bool = True
    challenge_rows: bool = True
    baseline: bool = True
    baseline_model: str = ""
    timeout_s: float = 900.0


@dataclass
class BenchRun:
    """A whole ``bench`` run: the environment it ran in, what was asked, and one result per configuration."""

    environment: dict
    options: dict
    results: list[ConfigResult]

    def baseline(self) -> ConfigResult | None:
        return next((r for r in self.results if r.config.kind == "baseline" and r.ok), None)

    def to_dict(self) -> dict:
        results = [r.to_dict() for r in self.results]
        return {"environment": self.environment, "options": self.options, "results": results}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchRun":
        return cls(d.get("environment", {}), d.get("options", {}), [ConfigResult.from_dict(r) for r in d["results"]])


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """CPU, cores, load and library versions (from package metadata: TensorFlow is never imported for this)."""
    cpu = platform.processor() or platform.machine()
    try:
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())
            if v
        )
        cpu = fields.get("model name") or fields.get("hardware") or fields.get("model") or cpu  # x86, then ARM/Pi
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": _version("onnxruntime"),
        "litert": _version("ai-edge-litert") or _version("tflite-runtime"),
        "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sample_image() -> Path:
    """The first shipped sample picture (a real face, when the samples are sorted into real/ and spoof/)."""
    images = sorted(p for p in SAMPLES_DIR.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    real = [p for p in images if "real" in p.relative_to(SAMPLES_DIR).parts[:-1]]
    if not (real or images):
        raise SourceError(f"no sample images in {SAMPLES_DIR}; pass --source VIDEO|DIR")
    return (real or images)[0]


def default_clip(size: tuple[int, int] = FRAME_SIZE, length: int = CLIP_LENGTH) -> list[np.ndarray]:
    """A short 640x480 clip made at run time from a shipped sample photo: a 4:3 window panning a few pixels
    per frame, so a fresh clone can run ``bench`` without any data and the tracker sees a moving face."""
    path = _sample_image()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read sample image {path}")
    h, w = image.shape[:2]
    win_w = min(w, int(h * size[0] / size[1]))
    win_h = int(win_w * size[1] / size[0])
    sx, sy = min(4, (w - win_w) // length), min(4, (h - win_h) // length)
    x0, y0 = (w - win_w) // 2, (h - win_h) // 2
    frames = []
    for k in range(length):
        x, y = x0 + sx * (k - length // 2), y0 + sy * (k - length // 2)
        frames.append(cv2.resize(image[y : y + win_h, x : x + win_w], size, interpolation=cv2.INTER_AREA))
    return frames


def read_frames(source: str = "") -> Iterator[tuple[np.ndarray, float]]:
    """Endless (frame, capture_ms), cycling through the source, so every configuration sees the same frames.

    ``source`` is a video, an image or a folder of images, read by the runtime's own sources (the code
    ``liveness-edge`` uses); empty means the generated default clip, kept JPEG-encoded in memory so the
    read stage still measures a real decode.
    """
    if not source:
        encoded = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1] for f in default_clip()]
        for buf in itertools.cycle(encoded):
            t0 = time.perf_counter()
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            yield frame, ms_since(t0)
    path = Path(source)
    is_images = path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES
    while True:
        reader = ImageSource(source) if is_images else VideoSource(source)
        try:
            for frame in reader.frames():
                yield frame.image, frame.capture_ms
        finally:
            reader.close()


Step = Callable[[np.ndarray, int, float], tuple[int, StageTimes]]  # frame, index, read ms -> faces, times


def _load_pipeline(config: BenchConfig) -> tuple[Step, int, int]:
    from ..runtime.manifest import resolve
    from ..runtime.pipeline import LivenessPipeline, PipelineOptions
    from ..runtime.types import RunningMode

    options = PipelineOptions(
        running_mode=RunningMode.VIDEO,
        model=config.model,
        backend=config.backend,
        precision=config.precision,
        threads=config.threads,
        detector=config.detector,
    )
    manifest = Manifest.load(config.manifest)
    files = resolve(manifest, options)  # the very files the pipeline loads
    pipe = LivenessPipeline.from_resolved(files, options)
    pipe.manifest = manifest
    if config.challenge:
        from ..runtime.challenge import ChallengeOptions

        endless = ChallengeOptions(timeout_s=1e9)  # restarted whenever decided, so landmarks run on every frame
        pipe.start_challenge(endless)

    def step(frame: np.ndarray, index: int, read_ms: float) -> tuple[int, StageTimes]:
        if config.challenge and pipe.challenge.done:
            pipe.start_challenge(endless)
        result = pipe.process(frame, source=config.source, frame_index=index, capture_ms=read_ms,
                              timestamp_s=index / 30.0)
        return len(result.faces), result.times

    return step, files.model.bytes, files.detector.bytes


def _load_detector(config: BenchConfig) -> tuple[Step, int, int]:
    from ..runtime.backends import open_model
    from ..runtime.detector import DetectorOptions, FaceDetector

    manifest = Manifest.load(config.manifest)
    entry = manifest.detector(config.detector, config.backend)
    path, content = manifest.verified_bytes(entry)
    detector = FaceDetector(open_model(path, config.threads, content), DetectorOptions(config.detector))

    def step(frame: np.ndarray, index: int, read_ms: float) -> tuple[int, StageTimes]:
        t0 = time.perf_counter()
        faces = detector.detect(frame)
        ms = ms_since(t0)
        return len(faces), StageTimes.measured(read_ms, ms, detect=ms)

    return step, 0, entry.bytes


def baseline_model_path(config: BenchConfig) -> Path:
    """The Keras model the baseline runs: ``--baseline-model`` or the shipped LivenessNet run."""
    return Path(config.baseline_model or Path(config.manifest).resolve().parent / "livenessnet" / "model.keras")


def _load_baseline(config: BenchConfig) -> tuple[Step, int, int]:
    from .baseline import SSD_WEIGHTS, ClassicPipeline

    path = baseline_model_path(config)
    classic = ClassicPipeline.load(path)

    def step(frame: np.ndarray, index: int, read_ms: float) -> tuple[int, StageTimes]:
        result = classic.process(frame, config.source, index)
        return len(result.faces), result.times

    return step, path.stat().st_size, SSD_WEIGHTS.stat().st_size


LOADERS = {"pipeline": _load_pipeline, "detector": _load_detector, "baseline": _load_baseline}


def measure(config: BenchConfig) -> ConfigResult:
    """Run one configuration in this process: load, warm up, then time ``config.frames`` frames stage by stage."""
    if config.kind not in LOADERS:
        return ConfigResult(config, "failed", f"unknown configuration kind {config.kind!r}")
    stages = DETECTOR_STAGES if config.kind == "detector" else STAGES
    try:
        frames = read_frames(config.source)
        t0 = time.perf_counter()
        step, model_bytes, detector_bytes = LOADERS[config.kind](config)
        load_ms = ms_since(t0)
        recorder = StageRecorder()
        faces = 0
        for index in range(config.warmup + config.frames):
            frame, read_ms = next(frames)
            n_faces, t = step(frame, index, read_ms)
            if index < config.warmup:
                continue
            faces += n_faces
            ms = {**asdict(t), Stage.TOTAL: t.processing}
            for stage in stages:
                recorder.add(stage, ms[stage])
    except BackendUnavailable as e:
        return ConfigResult(config, "skipped" if config.kind == "baseline" else "failed", str(e))
    except Exception as e:  # noqa: BLE001 - any failure of one configuration becomes its row, never a crash
        message = str(e) if isinstance(e, (LivenessEdgeError, ValueError)) else f"{type(e).__name__}: {e}"
        return ConfigResult(config, "failed", message.splitlines()[0] if message else type(e).__name__)
    return ConfigResult(
        config,
        "ok",
        stages=recorder.stats(),
        samples=recorder.samples,
        load_ms=load_ms,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        model_bytes=model_bytes,
        detector_bytes=detector_bytes,
        faces_per_frame=faces / max(1, config.frames),
    )


def measure_isolated(config: BenchConfig, timeout_s: float = 900.0) -> ConfigResult:
    """``measure`` in a fresh interpreter; a crash, hang or garbled answer becomes a failed row."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", __name__, json.dumps(asdict(config)), str(out)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return ConfigResult(config, "failed", f"timed out after {timeout_s:.0f} s")
        try:
            return ConfigResult.from_dict(json.loads(out.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return ConfigResult(config, "failed", f"worker exited with {proc.returncode}: {tail[:200]}")


class _PlainProgress:
    """What ``run_matrix`` and ``accuracy`` use of a tqdm bar, for devices without tqdm (it is optional)."""

    def __init__(self, items) -> None:
        self._items = items

    def __iter__(self):
        return iter(self._items)

    def set_postfix_str(self, text: str) -> None:
        """No bar, nothing to update."""

    @staticmethod
    def write(text: str, file=sys.stderr) -> None:
        print(text, file=file)


def progress(items, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar on stderr over ``items`` (plain iteration when tqdm is not installed)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(items)
    return tqdm(items, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False)


def shipped(
    manifest_path: str, models: tuple[str, ...], backends: tuple[str, ...], precisions: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The lists as given, each empty one filled with what the manifest ships (in manifest order)."""
    if models and backends and precisions:
        return models, backends, precisions
    manifest = Manifest.load(manifest_path)
    return (
        models or tuple(dict.fromkeys(m.name for m in manifest.models)),
        backends or tuple(dict.fromkeys(m.format for m in manifest.models)),
        precisions or tuple(dict.fromkeys(m.precision for m in manifest.models)),
    )


def build_matrix(options: MatrixOptions) -> list[BenchConfig]:
    """Baseline first, then the detector alone per backend and thread count, then every pipeline combination.

    Lists left empty are filled from the manifest; combinations the manifest lacks stay in and fail visibly.
    """
    models, backends, precisions = shipped(options.manifest, options.models, options.backends, options.precisions)
    common = BenchConfig(
        kind="pipeline",
        detector=options.detector,
        frames=options.frames,
        warmup=options.warmup,
        source=options.source,
        manifest=options.manifest,
        baseline_model=options.baseline_model,
    )
    configs = [replace(common, kind="baseline")] if options.baseline else []
    if options.detector_rows:
        configs += [replace(common, kind="detector", backend=b, threads=t) for b in backends for t in options.threads]
    configs += [
        replace(common, model=m, backend=b, precision=p, threads=t)
        for m in models
        for b in backends
        for p in precisions
        for t in options.threads
    ]
    if options.challenge_rows:  # detection + passive + landmarks at 1 thread (issue 13's target), int8 if measured
        chosen = [p for p in precisions if p == "int8"] or list(precisions[:1])
        configs += [replace(common, model=m, backend=b, precision=p, threads=1, challenge=True)
                    for m in models for b in backends for p in chosen]
    return configs


def run_matrix(options: MatrixOptions, show_progress: bool = True) -> BenchRun:
    """Measure every configuration of the matrix, each in its own process, with a progress bar."""
    from ..extras import TRAIN_INSTALL_HINT
    from .baseline import tensorflow_available

    configs = build_matrix(options)
    results = []
    bar = progress(configs, "bench", "config", show_progress)
    for config in bar:
        bar.set_postfix_str(config.name)
        if config.kind == "baseline" and not tensorflow_available():
            result = ConfigResult(config, "skipped", f"baseline needs TensorFlow: {TRAIN_INSTALL_HINT}")
        else:
            result = measure_isolated(config, options.timeout_s)
        if not result.ok:
            bar.write(f"bench: {config.name}: {result.status}: {result.error}", file=sys.stderr)
        results.append(result)
    return BenchRun(environment(), asdict(options), results)


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``CONFIG_JSON RESULT_PATH``; the result is written as JSON to RESULT_PATH."""
    args = sys.argv[1:] if argv is None else argv
    config = BenchConfig(**json.loads(args[0]))
    Path(args[1]).write_text(json.dumps(measure(config).to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
