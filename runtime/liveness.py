"""The liveness classifier on any backend: crop -> P(real), and the threshold that goes with it."""
from __future__ import annotations

import math

import numpy as np

from .backends import Backend
from .preprocessing import Preprocessing


class LivenessModel:
    """``_preprocess`` -> backend -> ``_postprocess``. Outputs are class probabilities in ``labels`` order.

    ``threshold`` is the P(real) at which this model's training chose to call a face real: it belongs to the
    weights (a retrained model brings its own), so the model object carries it and the pipeline reads it here.
    """

    def __init__(
        self, backend: Backend, preprocessing: Preprocessing, labels: list[str], threshold: float = 0.5,
        real_label: str = "real",
    ) -> None:
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"decision threshold must be strictly between 0 and 1, not {threshold}")
        if real_label not in labels:
            raise ValueError(f"labels {labels} have no {real_label!r} class")
        self.backend = backend
        self.preprocessing = preprocessing
        self.labels = list(labels)
        self.threshold = float(threshold)
        self.real_index = self.labels.index(real_label)
        self._input = backend.inputs[0]
        self._output = backend.outputs[0]
        self._uint8_passthrough = (
            self._input.dtype == np.uint8
            and preprocessing.input_scale == 1.0
            and preprocessing.input_offset == 0.0
            and self._input.scale == 1.0
            and self._input.zero_point == 0
        )
        self._quantized_probabilities = _holds_only_probabilities(self._output)

    def predict(self, crop_bgr: np.ndarray) -> float:
        """P(real) for one crop of any size (resized to the model's input if needed)."""
        return self._postprocess(self.backend.run(self._preprocess(crop_bgr)))

    def _preprocess(self, crop_bgr: np.ndarray) -> np.ndarray:
        if self._uint8_passthrough:
            return np.ascontiguousarray(self.preprocessing.pixels(crop_bgr))[None]
        return self._input.quantize(self.preprocessing.apply(crop_bgr)[None])

    def _postprocess(self, outputs: list[np.ndarray]) -> float:
        probs = self._output.dequantize(outputs[0]).reshape(-1)
        if probs.size == 1:
            p = float(probs[0])
            return p if self.real_index == 1 else 1.0 - p
        logits = probs.min() < 0.0 or abs(float(probs.sum()) - 1.0) > 1e-3
        if logits and not self._quantized_probabilities:  # logits (e.g. Silent-Face's 3): softmax
            e = np.exp(probs - probs.max())
            probs = e / e.sum()
        return float(probs[self.real_index])


def _holds_only_probabilities(output) -> bool:
    """An integer output whose every value lies in [0, 1] (a quantized softmax, step 1/256): its sum misses 1
    by rounding and clipping (P(real) 1.0 is stored as 255/256), which must not read as logits."""
    if output.scale is None or np.issubdtype(output.dtype, np.floating):
        return False
    info = np.iinfo(output.dtype)
    return (info.min - output.zero_point) * output.scale >= 0.0 and (info.max - output.zero_point) * output.scale <= 1.0
