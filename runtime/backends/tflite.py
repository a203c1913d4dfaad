"""LiteRT backend: ``ai_edge_litert`` (maintained), falling back to the older ``tflite_runtime``."""
from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailable, ModelError
from .base import TensorInfo


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise BackendUnavailable(
                "no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime on old systems)"
            ) from e
    return Interpreter


class TFLiteBackend:
    """One interpreter, tensors allocated once; outputs are copied so the next run cannot overwrite them."""

    def __init__(self, path: str, threads: int = 1, content: bytes | None = None) -> None:
        interpreter = _interpreter_class()
        try:
            source = {"model_path": path} if content is None else {"model_content": content}
            self._interp = interpreter(**source, num_threads=max(1, threads))
            self._interp.allocate_tensors()
        except Exception as e:
            raise ModelError(f"cannot load TFLite model {path}: {str(e).splitlines()[0][:200]}") from e
        self.path = path
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        self.inputs = [self._info(d) for d in in_details]
        self.outputs = [self._info(d) for d in out_details]
        self._in_index = in_details[0]["index"]
        self._out_indices = [d["index"] for d in out_details]

    @staticmethod
    def _info(d: dict) -> TensorInfo:
        scale, zero = d.get("quantization", (0.0, 0))
        quantized = scale != 0.0
        return TensorInfo(
            d["name"],
            tuple(int(v) for v in d["shape"]),
            np.dtype(d["dtype"]),
            float(scale) if quantized else None,
            int(zero) if quantized else None,
        )

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        return [self._interp.get_tensor(i).copy() for i in self._out_indices]
