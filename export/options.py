"""What an export does, as typed options; the CLI only fills these in."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..runtime.backends import BACKENDS
from ..runtime.errors import ExportFailed
from ..runtime.manifest import ARTIFACTS_DIR
from ..runtime.types import ModelFormat, Precision

FORMATS = tuple(ModelFormat)
PRECISIONS = tuple(Precision)
SUFFIX = {fmt: suffix for suffix, fmt in BACKENDS.items()}


class ExportError(ExportFailed):
    """A conversion that failed or did not match Keras: nothing of that run is shipped (exit 10)."""


@dataclass(frozen=True)
class OnnxQuantOptions:
    """ONNX Runtime static quantization, chosen by measurement on this 2-core AVX2 (no VNNI) machine.

    QOperator (QLinearConv etc.) runs fused integer kernels; uint8 activations with int8 weights take MLAS'
    fast u8s8 path, which on AVX2 sums pairs of u8*s8 products in int16 and can saturate: on the stem
    convolution (full 0..255 input range) that cost mean |ΔP(real)| 0.11. ``float_convs`` keeps the input
    scaling and the first N convolutions in float: N=1 fixes that and is faster too (MLAS' int8 kernel for
    3 input channels ran at half the float speed); for MobileNetV3 N=6 keeps the two high-resolution blocks,
    where int8 depthwise kernels lose to float ones on AVX2, in float. ``reduce_range`` (7-bit weights) is
    another cure for the saturation.
    ``affine_as_conv`` turns per-channel Mul+Add pairs (BatchNormalization after ReLU) into depthwise 1x1
    convolutions before quantizing. Per-tensor weights were as accurate as per-channel here, a little faster
    and smaller. ``exclude_op_types`` stay in float; ``uint8_input`` drops an identity QuantizeLinear on the
    input (only with ``float_convs=0``).
    """

    quant_format: str = "QOperator"
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = False
    reduce_range: bool = False
    float_convs: int = 1
    affine_as_conv: bool = True
    exclude_op_types: tuple[str, ...] = ()
    uint8_input: bool = True

    def __post_init__(self) -> None:
        if self.quant_format not in ("QOperator", "QDQ"):
            raise ValueError(f"quant_format must be QOperator or QDQ, not {self.quant_format!r}")
        if self.float_convs < 0:
            raise ValueError("float_convs must be >= 0")


# Per-model ONNX int8 settings, measured (150 held-out crops, export/README numbers in the main README):
# MiniFASNet under the default QOperator per-tensor scheme ranks at AUC 0.60 (fp32 0.96, mean |dP| 0.40), and
# quantizing its logits squeezes P(real) into 0.27..0.73; QDQ with per-channel weights and the head (MatMul,
# Softmax, Reshape) in float gives AUC 0.97 with mean |dP| 0.025.
MODEL_ONNX_QUANT: dict[str, dict] = {
    "minifasnet": {"quant_format": "QDQ", "per_channel": True, "exclude_op_types": ("MatMul", "Softmax", "Reshape")},
}


def onnx_quant_for(name: str, base: OnnxQuantOptions) -> OnnxQuantOptions:
    """``base`` with the measured settings of model ``name`` (``MODEL_ONNX_QUANT``) applied."""
    return replace(base, **MODEL_ONNX_QUANT.get(name, {}))


@dataclass(frozen=True)
class ExportOptions:
    """One export: which files, where, from which calibration crops, and how strictly they are checked.

    ``data_root`` resolves the data path a run's config.json stores (relative to a data root).
    ``fp32_tolerance`` bounds max |P(real) - Keras| of a float32 file (a broken conversion must not ship);
    ``max_int8_drift`` bounds the mean |P(real) - Keras| of an int8 file. ``tune_onnx``/``tune_tflite``
    measure the int8 settings per model (see ``tune.py``); otherwise ``onnx_quant.float_convs`` and
    ``tflite_per_channel`` apply as given.
    """

    out: Path = ARTIFACTS_DIR
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    calibration: Path | None = None
    data_root: Path | None = None
    calibration_size: int = 300
    heldout_size: int = 1000
    threads: int = 1
    opset: int = 17
    fp32_tolerance: float = 1e-3
    max_int8_drift: float = 0.05
    latency_rounds: int = 15
    seed: int = 0
    detector: bool = True
    tune_onnx: bool = True
    tune_tflite: bool = True
    tflite_per_channel: bool = True
    onnx_quant: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS] + [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.formats or not self.precisions:
            raise ValueError(f"formats must be from {FORMATS} and precisions from {PRECISIONS} (got {bad or 'none'})")
        if self.calibration_size < 10 or self.threads < 1 or self.heldout_size < 1:
            raise ValueError("need calibration_size >= 10, heldout_size >= 1 and threads >= 1")


def model_file(name: str, fmt: str, precision: str) -> str:
    """``<name>/<name>.<precision>.<ext>``, relative to the output folder (and the manifest)."""
    return f"{name}/{name}.{precision}{SUFFIX[fmt]}"
