"""int8 settings chosen by measurement on the exporting machine, per model, on the calibration crops.

Which layers are worth running in int8 depends on the CPU's kernels: on this AVX2 (no VNNI) machine ONNX
Runtime's int8 kernels beat float only for the wider, lower-resolution convolutions, so how many leading
convolutions stay float is measured (``ONNX_FLOAT_CONVS``), not guessed. TFLite per-tensor weights save the
per-channel scales (146 KB of MobileNetV3Small's 612 KB) and are kept when they drift at most 10 % more
than per-channel weights (MobileNetV3: +5 %; LivenessNet: +30 %, so it keeps per-channel).
Selection uses the calibration crops (training groups), never the held-out ones the report is made on.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..runtime.preprocessing import Preprocessing
from .calibration import CropSet
from .options import OnnxQuantOptions
from .to_onnx import quantize_onnx
from .to_tflite import keras_to_tflite
from .verify import open_liveness, relative_cost

ONNX_FLOAT_CONVS = (1, 2, 4, 6, 8)
TFLITE_PER_TENSOR_MAX_DRIFT_RATIO = 1.1


@dataclass(frozen=True)
class Trial:
    """One candidate: mean |P(real) - Keras| on the calibration crops and cost per face relative to float32."""

    setting: str
    drift: float
    cost: float | None = None


@dataclass(frozen=True)
class Choice:
    """The chosen candidate and every trial behind it (kept in the manifest's ``extra``)."""

    setting: str
    trials: list[Trial]

    def to_dict(self) -> dict:
        return {"chosen": self.setting, "trials": [asdict(t) for t in self.trials]}


def _drift(path: Path, crops: CropSet, keras_p: np.ndarray, preprocessing: Preprocessing, labels: list[str]) -> float:
    model = open_liveness(path, preprocessing, labels, 1)
    return float(np.mean(np.abs(np.array([model.predict(image) for image in crops.images]) - keras_p)))


def tune_onnx(
    fp32: Path, out: Path, inputs: np.ndarray, crops: CropSet, keras_p: np.ndarray, preprocessing: Preprocessing,
    labels: list[str], base: OnnxQuantOptions, max_drift: float,
) -> Choice:
    """Quantize with each ``ONNX_FLOAT_CONVS`` value, keep the fastest within ``max_drift`` as ``out``."""
    paths = {}
    for n in ONNX_FLOAT_CONVS:
        paths[n] = out.with_name(f"{out.stem}.float{n}.onnx")
        quantize_onnx(fp32, paths[n], inputs, replace(base, float_convs=n))
    models = {str(n): open_liveness(p, preprocessing, labels, 1) for n, p in paths.items()}
    costs = relative_cost({"fp32": open_liveness(fp32, preprocessing, labels, 1), **models}, crops, "fp32")
    trials = [Trial(f"float_convs={n}", _drift(p, crops, keras_p, preprocessing, labels), costs[str(n)])
              for n, p in paths.items()]
    allowed = [t for t in trials if t.drift <= max_drift] or trials
    best = min(allowed, key=lambda t: t.cost)
    shutil.move(paths[ONNX_FLOAT_CONVS[trials.index(best)]], out)
    for p in paths.values():
        p.unlink(missing_ok=True)
    return Choice(best.setting, trials)


def tune_tflite(
    model, out: Path, inputs: np.ndarray, crops: CropSet, keras_p: np.ndarray, preprocessing: Preprocessing,
    labels: list[str], max_drift: float,
) -> Choice:
    """Per-channel and per-tensor int8; per-tensor (smaller) unless it drifts clearly more or too much."""
    paths = {flag: out.with_name(f"{out.stem}.{flag}.tflite") for flag in ("per_channel", "per_tensor")}
    for flag, path in paths.items():
        keras_to_tflite(model, path, inputs, per_channel=flag == "per_channel")
    trials = [Trial(flag, _drift(path, crops, keras_p, preprocessing, labels)) for flag, path in paths.items()]
    channel, tensor = trials
    ok = tensor.drift <= max_drift and tensor.drift <= channel.drift * TFLITE_PER_TENSOR_MAX_DRIFT_RATIO
    best = tensor if ok else channel
    shutil.move(paths[best.setting], out)
    for p in paths.values():
        p.unlink(missing_ok=True)
    return Choice(best.setting, trials)
