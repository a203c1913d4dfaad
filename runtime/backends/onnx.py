"""ONNX Runtime backend (CPU)."""
from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailable, ModelError
from .base import TensorInfo

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int64)": np.int64,
}


class OnnxBackend:
    """One ``InferenceSession`` with explicit threading: idle spinning workers would steal CPU from OpenCV."""

    def __init__(self, path: str, threads: int = 1, content: bytes | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("ONNX Runtime is not installed: pip install onnxruntime") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(path if content is None else content, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:200]}") from e
        self.path = path
        self.inputs = [self._info(t) for t in self._session.get_inputs()]
        self.outputs = [self._info(t) for t in self._session.get_outputs()]
        self._input_name = self.inputs[0].name

    @staticmethod
    def _info(t) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else 1 for d in t.shape)
        return TensorInfo(t.name, shape, np.dtype(_DTYPES.get(t.type, np.float32)))

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input_name: x})
