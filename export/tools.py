"""Small helpers shared by the converters: silencing converter chatter and recording tool versions."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import Iterator

VERSIONED = {
    "tensorflow": "tensorflow-cpu",
    "keras": "keras",
    "tf2onnx": "tf2onnx",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "numpy": "numpy",
}


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null: TensorFlow, the TFLite converter and tf2onnx print pages of
    logs from C++ and Python that would bury the progress bar and the one-line errors."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (converters raise pages), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def tool_versions() -> dict[str, str]:
    """Versions of everything that produced and checked the files (for the manifest)."""
    versions = {"python": platform.python_version()}
    for key, dist in VERSIONED.items():
        for name in (dist, key):
            try:
                versions[key] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
