"""The one place where a backend is chosen: by file suffix. A new backend is one file plus one entry here."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..types import ModelFormat
from .base import Backend, TensorInfo

BACKENDS = {".onnx": ModelFormat.ONNX, ".tflite": ModelFormat.TFLITE}


def backend_name(path: str | Path) -> ModelFormat:
    """``onnx`` or ``tflite`` for a model path; a clear error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ModelError(f"{path}: unknown model format {suffix or '(none)'}; expected .onnx or .tflite")
    return BACKENDS[suffix]


def open_model(path: str | Path, threads: int = 1, content: bytes | None = None) -> Backend:
    """Load a model on the backend its file suffix names: from ``content`` when given (the bytes already
    hashed, so the file cannot change between check and load), else from the file."""
    path = Path(path)
    name = backend_name(path)
    if content is None:
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        content = path.read_bytes()
    if name == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(str(path), threads, content)
    from .tflite import TFLiteBackend

    return TFLiteBackend(str(path), threads, content)


__all__ = ["Backend", "TensorInfo", "open_model", "backend_name", "BACKENDS"]
