"""A whole export: trained runs -> ONNX/TFLite float32/int8 files, checked against Keras, in the manifest.

Files are written to a staging folder and only moved next to the run once every check passed, so a failed
export leaves the previously shipped files and manifest untouched.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..runtime.backends import open_model
from ..runtime.backends.base import TensorInfo
from ..runtime.detector import FACE_DETECTOR_DIR, MODEL_FILES
from ..runtime.errors import LivenessEdgeError, ManifestError, ModelError, UsageError
from ..runtime.landmarks import LANDMARK_MODEL_FILES
from ..runtime.manifest import DetectorEntry, Manifest, ModelEntry, TensorSpec, sha256_of
from ..runtime.preprocessing import Preprocessing
from .calibration import CropSet, load_crops, pick, representative_inputs, samples_in_dir, samples_of_run
from .options import ExportError, ExportOptions, model_file, onnx_quant_for
from .to_onnx import keras_to_onnx, quantize_onnx, tflite_to_onnx
from .to_tflite import TFLITE_INT8_SETTINGS, keras_to_tflite
from .tools import first_line, tool_versions
from .tune import Choice, tune_onnx, tune_tflite
from .verify import (
    DetectorCheck, FileCheck, Scores, check_detector, check_file, check_landmarks, enforce_limits, keras_p_real,
    markdown,
    measure_latency, open_liveness, scores,
)

STAGING = ".export-staging"
DETECTOR_TOLERANCE = 1e-4
DETECTOR_IMAGES = 40


@dataclass
class Run:
    """A trained run directory: its Keras model and what config.json says about feeding it."""

    run_dir: Path
    name: str
    config: dict
    preprocessing: Preprocessing
    labels: list[str]
    threshold: float
    model: object = field(repr=False)

    @property
    def keras_path(self) -> Path:
        return self.run_dir / "model.keras"


@dataclass
class ExportResult:
    """Where an export or verification wrote the manifest and the verification report."""

    manifest_path: Path
    report_path: Path


def read_config(run_dir: str | Path) -> tuple[Path, dict]:
    """A run's folder and config.json, with one-line errors for what is missing or broken."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelError(f"run directory not found: {run_dir}")
    path = run_dir / "config.json"
    try:
        config = json.loads(path.read_text())
        missing = [key for key in ("name", "labels", "threshold", "preprocessing") if key not in config]
        if missing:
            raise KeyError(", ".join(missing))
        Preprocessing.from_dict(config["preprocessing"])
    except FileNotFoundError:
        raise ModelError(f"{run_dir} is not a training run: no config.json") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path} is broken or incomplete ({type(e).__name__}: {e})") from None
    if not (run_dir / "model.keras").is_file():
        raise ModelError(f"{run_dir} has no model.keras")
    return run_dir, config


def load_run(run_dir: str | Path) -> Run:
    """Open a run; a corrupt or truncated model.keras is a one-line ModelError."""
    run_dir, config = read_config(run_dir)
    import keras

    try:
        model = keras.models.load_model(run_dir / "model.keras", compile=False)
    except Exception as e:  # Keras raises many kinds for a bad zip, missing weights, unknown layers...
        raise ModelError(f"cannot load {run_dir / 'model.keras'}: {first_line(e)}") from None
    return Run(run_dir, str(config["name"]), config, Preprocessing.from_dict(config["preprocessing"]),
               list(config["labels"]), float(config["threshold"]), model)


def calibration_crops(run: Run, options: ExportOptions) -> CropSet:
    """A few hundred crops of both classes: ``--calibration DIR`` or the run's own training groups."""
    if options.calibration is not None:
        samples, origin = samples_in_dir(options.calibration), str(options.calibration)
    else:
        samples = samples_of_run(run.config, "train", options.data_root)
        origin = f"{run.config['data']['path']} (train groups)"
    return load_crops(pick(samples, options.calibration_size, options.seed), origin)


def heldout_crops(run: Run, options: ExportOptions) -> CropSet:
    """The run's held-out test groups; without them (data not on this machine) the --calibration crops,
    labelled as such in the report because they are not held out."""
    try:
        samples = samples_of_run(run.config, "test", options.data_root)
        origin = f"{run.config['data']['path']} (test groups)"
    except LivenessEdgeError:
        if options.calibration is None:
            raise
        samples, origin = samples_in_dir(options.calibration), f"{options.calibration} (NOT held out)"
    return load_crops(pick(samples, options.heldout_size, options.seed + 1), origin)


def tensor_spec(info: TensorInfo, raw_bytes: bool = False) -> TensorSpec:
    """The manifest's view of a tensor; ``raw_bytes``: a uint8 ONNX input (made by ``_uint8_input``) carries
    no quantization metadata but is the identity on pixel values, i.e. scale 1, zero point 0."""
    raw = raw_bytes and info.dtype == np.uint8 and info.scale is None
    scale, zero = (1.0, 0) if raw else (info.scale, info.zero_point)
    return TensorSpec([int(d) for d in info.shape], info.dtype.name, scale, zero)


def _settings(run: Run, fmt: str, precision: str, options: ExportOptions, tuning: Choice | None) -> dict:
    """How a file was made (ModelEntry.extra), with the settings the tuning chose."""
    extra: dict = {"source": "model.keras", "source_sha256": sha256_of(run.keras_path)}
    if "band" in run.config:  # hysteresis band chosen with the threshold (pooled out-of-source predictions)
        extra["band"] = run.config["band"]
    if fmt == "onnx":
        extra["converter"] = "tf2onnx.convert.from_keras"
        extra["opset"] = options.opset
        if precision == "int8":
            quant = onnx_quant_for(run.name, options.onnx_quant)
            if tuning is not None:
                quant = replace(quant, float_convs=int(tuning.setting.split("=")[1]))
            extra["quantization"] = {"tool": "onnxruntime.quantization.quantize_static (MinMax, after "
                                     "quant_pre_process)", **asdict(quant)}
    else:
        extra["converter"] = "tf.lite.TFLiteConverter.from_keras_model (batch 1)"
        if precision == "int8":
            per_channel = options.tflite_per_channel if tuning is None else tuning.setting == "per_channel"
            extra["quantization"] = {**TFLITE_INT8_SETTINGS, "per_channel": per_channel}
    if precision == "int8":
        extra["quantization"]["calibration_crops"] = options.calibration_size
        if tuning is not None:
            extra["tuning"] = tuning.to_dict()
    return extra


def convert_run(run: Run, staging: Path, options: ExportOptions, calibration: CropSet | None,
                bar: tqdm) -> tuple[dict[tuple[str, str], Path], dict[tuple[str, str], Choice]]:
    """Write the requested files of one run into ``staging``; returns {(format, precision): path} and the
    tuning choice behind each int8 file that was tuned."""
    inputs = representative_inputs(calibration, run.preprocessing) if calibration is not None else None
    keras_p = None
    if calibration is not None and (options.tune_onnx or options.tune_tflite):
        keras_p = keras_p_real(run.model, calibration, run.preprocessing, run.labels.index("real"))
    tuned = (calibration, keras_p, run.preprocessing, run.labels)
    files: dict[tuple[str, str], Path] = {}
    choices: dict[tuple[str, str], Choice] = {}
    for fmt in options.formats:
        for precision in options.precisions:
            bar.set_description(f"{run.name} {fmt} {precision}")
            path = staging / Path(model_file(run.name, fmt, precision)).name
            try:
                if precision == "fp32" and fmt == "onnx":
                    keras_to_onnx(run.model, path, options.opset)
                elif precision == "fp32":
                    keras_to_tflite(run.model, path)
                elif fmt == "tflite" and options.tune_tflite:
                    choices[(fmt, precision)] = tune_tflite(run.model, path, inputs, *tuned, options.max_int8_drift)
                elif fmt == "tflite":
                    keras_to_tflite(run.model, path, inputs, options.tflite_per_channel)
                else:
                    fp32 = files.get(("onnx", "fp32")) or staging / "fp32-for-int8.onnx"
                    if not fp32.exists():
                        keras_to_onnx(run.model, fp32, options.opset)
                    if options.tune_onnx:
                        quant = onnx_quant_for(run.name, options.onnx_quant)
                        choices[(fmt, precision)] = tune_onnx(fp32, path, inputs, *tuned, quant,
                                                              options.max_int8_drift)
                    else:
                        quantize_onnx(fp32, path, inputs, onnx_quant_for(run.name, options.onnx_quant))
            except LivenessEdgeError:
                raise
            except Exception as e:
                raise ExportError(f"{run.name}: {fmt} {precision} conversion failed: {first_line(e)}") from None
            files[(fmt, precision)] = path
            bar.update(1)
    return files, choices


def verify_files(run: Run, files: dict[tuple[str, str], Path], crops: CropSet, options: ExportOptions,
                 bar: tqdm) -> dict[tuple[str, str], dict]:
    """Check every file against Keras (raising on a broken one), then time them all together; returns the
    verification dict of each file for the manifest."""
    bar.set_description(f"{run.name} verify")
    keras_p = keras_p_real(run.model, crops, run.preprocessing, run.labels.index("real"))
    keras_scores = scores(crops, keras_p, run.threshold)
    models, checks = {}, {}
    for key, path in files.items():
        model = open_liveness(path, run.preprocessing, run.labels, options.threads)
        check = check_file(model, model_file(run.name, *key), run.name, *key, crops, keras_p, keras_scores,
                           run.threshold)
        enforce_limits(check, options.fp32_tolerance, options.max_int8_drift)
        models[key], checks[key] = model, check
    bar.set_description(f"{run.name} latency")
    for key, (median, mean) in measure_latency(models, crops, options.latency_rounds).items():
        checks[key].latency_ms_median, checks[key].latency_ms_mean = median, mean
    bar.update(1)
    return {key: _verification(check, crops, keras_scores, options.threads) for key, check in checks.items()}


def _verification(check: FileCheck, crops: CropSet, keras: Scores, threads: int) -> dict:
    v = {k: val for k, val in check.to_dict().items() if k not in ("name", "format", "precision", "file", "bytes")}
    return {**v, "heldout": crops.origin, "keras_accuracy": keras.accuracy, "keras_acer": keras.acer,
            "threads": threads}


def model_entry(
    run: Run, fmt: str, precision: str, path: Path, options: ExportOptions, verification: dict,
    tuning: Choice | None = None,
) -> ModelEntry:
    """The manifest entry of one shipped file (input/output read back from the file through the backend)."""
    backend = open_model(path, 1)
    return ModelEntry(
        name=run.name,
        format=fmt,
        precision=precision,
        file=model_file(run.name, fmt, precision),
        sha256=sha256_of(path),
        bytes=path.stat().st_size,
        input=tensor_spec(backend.inputs[0], raw_bytes=fmt == "onnx"),
        output=tensor_spec(backend.outputs[0]),
        preprocessing=run.preprocessing,
        labels=run.labels,
        threshold=run.threshold,
        verification=verification,
        extra=_settings(run, fmt, precision, options, tuning),
    )


def _check_converted(variant: str, reference: Path, converted: Path, images: list, label: str) -> DetectorCheck:
    if variant in LANDMARK_MODEL_FILES:
        return check_landmarks(reference, converted, images, label)
    return check_detector(reference, converted, images, variant, label)


def export_detectors(out: Path, staging: Path, options: ExportOptions, images: list,
                     bar: tqdm) -> tuple[list[DetectorEntry], list[tuple[Path, Path]]]:
    """Both BlazeFace variants and the landmark models (face mesh, iris): the shipped .tflite as is, plus an
    ONNX conversion checked against it. Returns the entries and the (staged, final) file moves."""
    entries, moves = [], []
    for variant, file_name in {**MODEL_FILES, **LANDMARK_MODEL_FILES}.items():
        bar.set_description(f"detector {variant}")
        tflite = FACE_DETECTOR_DIR / file_name
        name = Path(file_name).stem if variant in LANDMARK_MODEL_FILES else f"blazeface_{variant}"
        rel_onnx = f"detector/{name}.onnx"
        staged = staging / Path(rel_onnx).name
        try:
            tflite_to_onnx(tflite, staged, options.opset)
        except Exception as e:
            raise ExportError(f"detector {variant}: ONNX conversion failed: {first_line(e)}") from None
        check = _check_converted(variant, tflite, staged, images, rel_onnx)
        if check.max_rel_diff > DETECTOR_TOLERANCE or not check.same_faces:
            raise ExportError(f"detector {variant}: ONNX differs from the .tflite (max relative |Δ| "
                              f"{check.max_rel_diff:.2g}, same faces: {check.same_faces}); nothing shipped")
        rel_tflite = Path(os.path.relpath(tflite, out)).as_posix()
        entries.append(DetectorEntry(name, variant, "tflite", rel_tflite, sha256_of(tflite), tflite.stat().st_size))
        entries.append(DetectorEntry(name, variant, "onnx", rel_onnx, sha256_of(staged),
                                     staged.stat().st_size,
                                     {**_detector_verification(check), "reference": rel_tflite,
                                      "opset": options.opset}))
        moves.append((staged, out / rel_onnx))
        bar.update(1)
    return entries, moves


def existing_manifest(out: Path) -> Manifest:
    """The manifest already in ``out`` (entries not re-exported are kept), or an empty one."""
    try:
        return Manifest.load(out / "manifest.json")
    except ManifestError:
        return Manifest([], [], root=out.resolve())


def merged(old: Manifest, models: list[ModelEntry], detectors: list[DetectorEntry]) -> Manifest:
    """``old`` with entries of the same (name, format, precision) / (variant, format) replaced."""
    new_models = {(m.name, m.format, m.precision) for m in models}
    new_detectors = {(d.variant, d.format) for d in detectors}
    keep_m = [m for m in old.models if (m.name, m.format, m.precision) not in new_models]
    keep_d = [d for d in old.detectors if (d.variant, d.format) not in new_detectors]
    return Manifest(sorted(keep_m + models, key=lambda m: (m.name, m.format, m.precision)),
                    sorted(keep_d + detectors, key=lambda d: (d.variant, d.format)),
                    tool_versions(), datetime.now(timezone.utc).isoformat(timespec="seconds"), old.root)


def write_manifest(manifest: Manifest, out: Path) -> ExportResult:
    out.mkdir(parents=True, exist_ok=True)
    manifest.save(out / "manifest.json")
    (out / "verification.md").write_text(markdown(manifest))
    return ExportResult(out / "manifest.json", out / "verification.md")


def export_models(run_dirs: list[Path], options: ExportOptions) -> ExportResult:
    """Convert and verify every run and the detectors in a staging folder; only when all passed are the files
    moved into place and the manifest and report written (all or nothing)."""
    out = Path(options.out)
    for run_dir in run_dirs:
        read_config(run_dir)  # fail on a bad run before converting anything
    with_detectors = options.detector and "onnx" in options.formats
    steps = (len(run_dirs) * (len(options.formats) * len(options.precisions) + 1)
             + (len(MODEL_FILES) + len(LANDMARK_MODEL_FILES)) * with_detectors)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    entries: list[ModelEntry] = []
    detectors: list[DetectorEntry] = []
    moves: list[tuple[Path, Path]] = []
    images: list = []
    try:
        with tqdm(total=steps, unit="step", dynamic_ncols=True, leave=False, disable=None) as bar:
            for run_dir in run_dirs:
                bar.set_description(f"{Path(run_dir).name} load")
                run = load_run(run_dir)
                calibration = calibration_crops(run, options) if "int8" in options.precisions else None
                heldout = heldout_crops(run, options)
                images = images or heldout.images[:DETECTOR_IMAGES]
                (staging / run.name).mkdir(parents=True)
                files, choices = convert_run(run, staging / run.name, options, calibration, bar)
                verification = verify_files(run, files, heldout, options, bar)
                for (fmt, precision), path in files.items():
                    key = (fmt, precision)
                    entries.append(model_entry(run, fmt, precision, path, options, verification[key], choices.get(key)))
                    moves.append((path, out / model_file(run.name, fmt, precision)))
            if with_detectors:
                (staging / "detector").mkdir(parents=True)
                detectors, detector_moves = export_detectors(out, staging / "detector", options, images, bar)
                moves += detector_moves
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return write_manifest(merged(existing_manifest(out), entries, detectors), out)


VERIFIED_MANIFEST = "manifest.verified.json"


def verify_models(run_dirs: list[Path], options: ExportOptions, manifest_path: Path) -> ExportResult:
    """Re-check the files a manifest lists for these runs and its ONNX detectors (sha256, then Keras) without
    writing beside them: the report and the manifest with refreshed numbers go to ``options.out``. A file that
    no longer matches is listed there as not verified, and raises once the report is written."""
    out = Path(options.out)
    if out.resolve() == Path(manifest_path).resolve().parent:
        raise UsageError(f"--verify only reads {manifest_path}; give --out another folder for its report")
    manifest = Manifest.load(manifest_path)
    for run_dir in run_dirs:
        read_config(run_dir)
    updated: list[ModelEntry] = []
    failures: list[LivenessEdgeError] = []
    images: list = []
    with tqdm(total=len(run_dirs), unit="run", dynamic_ncols=True, leave=False, disable=None) as bar:
        for run_dir in run_dirs:
            run = load_run(run_dir)
            mine = [m for m in manifest.models if m.name == run.name and m.format in options.formats
                    and m.precision in options.precisions]
            if not mine:
                raise ManifestError(f"{manifest_path} lists no {run.name} files to verify; export first")
            heldout = heldout_crops(run, options)
            images = images or heldout.images[:DETECTOR_IMAGES]
            try:
                files = {(m.format, m.precision): manifest.verified_path(m) for m in mine}
                verification = verify_files(run, files, heldout, options, bar)
            except (ModelError, ExportError) as e:
                failures.append(e)
                verification = {(m.format, m.precision): {} for m in mine}
            updated += [replace(m, verification=verification[(m.format, m.precision)]) for m in mine]
    detectors = []
    for entry in (d for d in manifest.detectors if d.format == "onnx"):
        try:
            detectors.append(recheck_detector(manifest, entry, images))
        except (ModelError, ExportError) as e:
            failures.append(e)
            detectors.append(replace(entry, verification={}))
    checked = merged(manifest, updated, detectors)
    out.mkdir(parents=True, exist_ok=True)
    checked.save(out / VERIFIED_MANIFEST)
    report = markdown(checked)
    if failures:
        report += "\n## Failed\n\n" + "".join(f"- {e}\n" for e in failures)
    (out / "verification.md").write_text(report)
    if failures:
        raise type(failures[0])(f"{len(failures)} check(s) failed (report: {out / 'verification.md'}); "
                                f"first: {failures[0]}")
    return ExportResult(out / VERIFIED_MANIFEST, out / "verification.md")


def recheck_detector(manifest: Manifest, entry: DetectorEntry, images: list) -> DetectorEntry:
    """An ONNX detector against the manifest's .tflite of the same variant, both sha256-checked."""
    reference = manifest.verified_path(manifest.detector(entry.variant, "tflite"))
    check = _check_converted(entry.variant, reference, manifest.verified_path(entry), images, entry.file)
    if check.max_rel_diff > DETECTOR_TOLERANCE or not check.same_faces:
        raise ExportError(f"{entry.file} no longer matches its .tflite (max relative |Δ| {check.max_rel_diff:.2g})")
    return replace(entry, verification={**entry.verification, **_detector_verification(check)})


def _detector_verification(check: DetectorCheck) -> dict:
    return {k: v for k, v in asdict(check).items() if k != "file"}
