"""Every exported file against its Keras model on held-out real crops, through the runtime's own code path
(``open_model`` + ``LivenessModel``), so what is checked is exactly what the device runs."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..benchmarks.timer import summarize
from ..runtime.backends import open_model
from ..runtime.liveness import LivenessModel
from ..runtime.manifest import Manifest
from ..runtime.preprocessing import Preprocessing
from ..train.metrics import pad_metrics
from .calibration import CropSet
from .options import ExportError
from .tools import quiet_output


@dataclass(frozen=True)
class Scores:
    """Accuracy and ACER at the run's threshold (None without labels of both classes)."""

    accuracy: float | None
    acer: float | None


@dataclass
class FileCheck:
    """One exported file next to Keras on ``n`` held-out crops. ΔP = P(real) of the file - P(real) of Keras."""

    name: str
    format: str
    precision: str
    file: str
    bytes: int
    n: int
    agreement: float
    max_abs_dp: float
    mean_abs_dp: float
    accuracy: float | None
    acer: float | None
    d_accuracy: float | None
    d_acer: float | None
    latency_ms_median: float | None = None
    latency_ms_mean: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DetectorCheck:
    """A converted detector against its .tflite: raw outputs on real images and the faces found in them."""

    file: str
    n: int
    max_rel_diff: float
    same_faces: bool


def scores(crops: CropSet, p_real: np.ndarray, threshold: float) -> Scores:
    if not crops.labelled:
        return Scores(None, None)
    m = pad_metrics(crops.labels, p_real, threshold, crops.attacks)
    return Scores(m.accuracy, m.acer)


def keras_p_real(model, crops: CropSet, preprocessing: Preprocessing, real_index: int) -> np.ndarray:
    """P(real) of the Keras model on the same preprocessed inputs the runtime builds."""
    x = np.stack([preprocessing.apply(image) for image in crops.images])
    return np.asarray(model.predict(x, batch_size=256, verbose=0))[:, real_index].astype(np.float64)


def open_liveness(path: str | Path, preprocessing: Preprocessing, labels: list[str], threads: int) -> LivenessModel:
    with quiet_output():  # LiteRT announces its XNNPACK delegate on stderr
        backend = open_model(path, threads)
    return LivenessModel(backend, preprocessing, labels)


def check_file(
    model: LivenessModel, entry_file: str, name: str, fmt: str, precision: str, crops: CropSet,
    keras_p: np.ndarray, keras_scores: Scores, threshold: float,
) -> FileCheck:
    """Decisions, P(real) differences and metric changes of one file against Keras (latency comes later)."""
    p = np.array([model.predict(image) for image in crops.images], np.float64)
    dp = np.abs(p - keras_p)
    own = scores(crops, p, threshold)
    return FileCheck(
        name=name,
        format=fmt,
        precision=precision,
        file=entry_file,
        bytes=Path(model.backend.path).stat().st_size,
        n=len(crops),
        agreement=float(((p >= threshold) == (keras_p >= threshold)).mean()),
        max_abs_dp=float(dp.max()),
        mean_abs_dp=float(dp.mean()),
        accuracy=own.accuracy,
        acer=own.acer,
        d_accuracy=_difference(own.accuracy, keras_scores.accuracy),
        d_acer=_difference(own.acer, keras_scores.acer),
    )


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def enforce_limits(check: FileCheck, fp32_tolerance: float, max_int8_drift: float) -> None:
    """A float32 file must match Keras (else the conversion is broken); int8 drift has its own limit."""
    if check.precision == "fp32" and check.max_abs_dp > fp32_tolerance:
        raise ExportError(
            f"{Path(check.file).name} disagrees with Keras: max |ΔP(real)| {check.max_abs_dp:.2g} > "
            f"{fp32_tolerance:g} (agreement {check.agreement:.1%}); broken conversion, nothing shipped"
        )
    if check.precision == "int8" and check.mean_abs_dp > max_int8_drift:
        raise ExportError(
            f"{Path(check.file).name} drifts from Keras: mean |ΔP(real)| {check.mean_abs_dp:.3f} > "
            f"--max-int8-drift {max_int8_drift:g} (agreement {check.agreement:.1%}); nothing shipped"
        )


def measure_latency(
    models: dict[str, LivenessModel], crops: CropSet, rounds: int = 15, per_round: int = 40, warmup: int = 10
) -> dict[str, tuple[float, float]]:
    """(median, mean) ms per face of ``predict`` (preprocessing + inference + postprocessing) per model.

    The models take turns round by round, so load from other processes on a shared machine hits them all
    alike and float32 vs int8 ratios stay fair. The median is the number to compare; the mean is reported.
    """
    samples: dict[str, list[float]] = {key: [] for key in models}
    images = crops.images
    for model in models.values():
        for i in range(warmup):
            model.predict(images[i % len(images)])
    for r in range(rounds):
        for key, model in models.items():
            for i in range(per_round):
                image = images[(r * per_round + i) % len(images)]
                t0 = time.perf_counter()
                model.predict(image)
                samples[key].append((time.perf_counter() - t0) * 1000.0)
    stats = {key: summarize(v) for key, v in samples.items()}
    return {key: (s.median, s.mean) for key, s in stats.items()}


def relative_cost(
    models: dict[str, LivenessModel], crops: CropSet, reference: str, rounds: int = 20, per_round: int = 25
) -> dict[str, float]:
    """Inference cost of each model relative to ``reference`` (1.0), for choosing settings by measurement.

    Thread CPU time of ``predict`` per face (1 thread runs on the calling thread), so time spent descheduled
    by other processes does not count; each round compares the models' medians in that round (alternating
    order), and the result is the median of those per-round ratios.
    """
    images = crops.images[:per_round]
    for model in models.values():
        for image in images:
            model.predict(image)
    ratios: dict[str, list[float]] = {key: [] for key in models}
    for r in range(rounds):
        medians = {}
        for key in (list(models) if r % 2 == 0 else list(models)[::-1]):
            costs = []
            for image in images:
                t0 = time.thread_time()
                models[key].predict(image)
                costs.append(time.thread_time() - t0)
            medians[key] = float(np.median(costs))
        for key in models:
            ratios[key].append(medians[key] / max(medians[reference], 1e-9))
    return {key: float(np.median(v)) for key, v in ratios.items()}


def detector_inputs(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Real pictures squeezed to the detector's input, scaled to [-1, 1] as BlazeFace expects."""
    return [(cv2.resize(im, (size, size))[..., ::-1].astype(np.float32) / 127.5 - 1.0)[None] for im in images]


def check_detector(
    reference: str | Path, converted: str | Path, images: list[np.ndarray], variant: str, label: str
) -> DetectorCheck:
    """Raw outputs of ``converted`` against ``reference`` on real images (max difference relative to the
    output's magnitude: raw logits reach 1e4), and the faces both find."""
    from ..runtime.detector import DetectorOptions, FaceDetector

    ref, new = open_model(reference), open_model(converted)
    size = ref.inputs[0].shape[1]
    diff = 0.0
    for x in detector_inputs(images, size):
        a, b = ref.run(x), new.run(x)
        by_shape = {o.shape: o for o in b}
        diff = max(diff, max(float(np.abs(o - by_shape[o.shape]).max() / max(1.0, np.abs(o).max())) for o in a))
    options = DetectorOptions(variant=variant)
    ref_det, new_det = FaceDetector(ref, options), FaceDetector(new, options)
    same = True
    for image in images:
        fa, fb = ref_det.detect(image), new_det.detect(image)
        same &= len(fa) == len(fb) and all(np.allclose(x.box, y.box, atol=0.5) for x, y in zip(fa, fb))
    return DetectorCheck(label, len(images), diff, bool(same))


def check_landmarks(reference: str | Path, converted: str | Path, images: list[np.ndarray], label: str,
                    max_point_px: float = 0.5) -> DetectorCheck:
    """A converted face mesh or iris model against its .tflite on real pictures squeezed to its [0, 1] input:
    raw outputs (max difference relative to the output's magnitude) and, as ``same_faces``, every landmark
    within ``max_point_px`` input pixels."""
    ref, new = open_model(reference), open_model(converted)
    size = ref.inputs[0].shape[1]
    diff, same = 0.0, True
    for im in images:
        x = (cv2.resize(im, (size, size))[..., ::-1].astype(np.float32) / 255.0)[None]
        a, b = ref.run(x), new.run(x)
        by_shape = {o.shape: o for o in b}
        for o in a:
            d = np.abs(o - by_shape[o.shape])
            diff = max(diff, float(d.max() / max(1.0, np.abs(o).max())))
            same &= o.size == 1 or bool(d.max() <= max_point_px)
    return DetectorCheck(label, len(images), diff, bool(same))


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown(manifest: Manifest) -> str:
    """The verification table (artifacts/verification.md), rebuilt from the numbers stored in the manifest."""
    lines = [
        "# Verification of the exported models",
        "",
        "Each file run through the runtime (`open_model` + `LivenessModel`) on held-out real face crops next to",
        "its Keras model. ΔP = P(real) of the file - P(real) of Keras; agreement = same decision at the run's",
        "threshold; Δacc/ΔACER = file - Keras; latency = `LivenessModel.predict` per face (preprocessing from the",
        "128 px crop + inference, batch 1), median and mean over interleaved rounds, on the thread count shown.",
        "",
    ]
    seen = set()
    for m in manifest.models:
        v = m.verification
        if m.name in seen or not v:
            continue
        seen.add(m.name)
        lines.append(f"- {m.name}: {v.get('n')} crops from {v.get('heldout')}; Keras accuracy "
                     f"{_fmt(v.get('keras_accuracy'), '.3f')}, ACER {_fmt(v.get('keras_acer'), '.3f')}, "
                     f"threshold {m.threshold:.3f}")
    lines += [
        "",
        "| file | size KB | agreement | max \\|ΔP\\| | mean \\|ΔP\\| | accuracy | Δacc | ACER | ΔACER "
        "| threads | ms/face median | ms/face mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in manifest.models:
        v = m.verification
        if not v:
            lines.append(f"| {m.file} | {m.bytes / 1024:.0f} | not verified |" + " |" * 9)
            continue
        lines.append(
            f"| {m.file} | {m.bytes / 1024:.0f} | {v['agreement']:.2%} | {v['max_abs_dp']:.1e} | "
            f"{v['mean_abs_dp']:.1e} | {_fmt(v.get('accuracy'), '.3f')} | {_fmt(v.get('d_accuracy'), '+.3f')} | "
            f"{_fmt(v.get('acer'), '.3f')} | {_fmt(v.get('d_acer'), '+.3f')} | {v.get('threads')} | "
            f"{_fmt(v.get('latency_ms_median'), '.3f')} | {_fmt(v.get('latency_ms_mean'), '.3f')} |"
        )
    checked = [d for d in manifest.detectors if d.verification]
    if checked:
        lines += ["", "| detector / landmarks | images | max relative \\|Δ raw output\\| vs .tflite "
                  "| same faces / points |",
                  "|---|---:|---:|---|"]
        lines += [
            f"| {d.file} | {d.verification['n']} | {d.verification['max_rel_diff']:.2g} | "
            f"{'yes' if d.verification['same_faces'] else 'NO'} |"
            for d in checked
        ]
    return "\n".join(lines) + "\n"
