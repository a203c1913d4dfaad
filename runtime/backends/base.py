"""What every inference backend offers: one input tensor in, a list of output arrays out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape, dtype and affine quantization (``real = scale * (q - zero_point)``) of one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Turn float data into this tensor's dtype (a no-op cast for float tensors)."""
        if self.scale is None or np.issubdtype(self.dtype, np.floating):
            return x.astype(self.dtype, copy=False)
        info = np.iinfo(self.dtype)
        q = np.rint(x / self.scale + self.zero_point)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Turn this tensor's data into float32."""
        if self.scale is None or np.issubdtype(self.dtype, np.floating):
            return q.astype(np.float32, copy=False)
        return (q.astype(np.float32) - self.zero_point) * self.scale


class Backend(Protocol):
    """A loaded model. ``run`` takes the input already in ``inputs[0].dtype``."""

    path: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def run(self, x: np.ndarray) -> list[np.ndarray]: ...
