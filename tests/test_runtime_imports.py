"""The device install has no TensorFlow: importing the runtime and its CLI must not pull it in."""
from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "onnx", "matplotlib", "picamera2")

PROBE = f"""
import importlib, pkgutil, sys
import liveness_edge.runtime as rt
names = [m.name for m in pkgutil.walk_packages(rt.__path__, rt.__name__ + ".")]
for name in names:
    importlib.import_module(name)
import liveness_edge.runtime.cli
assert "liveness_edge.runtime.cli" in names and "liveness_edge.runtime.backends.tflite" in names, names
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(len(names), loaded)
"""


def test_runtime_and_cli_import_no_training_stack():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, loaded = proc.stdout.strip().split(" ", 1)
    assert int(count) >= 15
    assert loaded == "[]", f"the runtime imported {loaded}"
