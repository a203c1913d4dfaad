"""Issue 11 item 18: ``liveness-train`` does not print TensorFlow's native start-up lines (twice)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_train_help_has_no_tensorflow_startup_lines():
    pytest.importorskip("tensorflow", reason="liveness-train needs the [train] extra")
    code = "import sys; from liveness_edge.train.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "fit", "--help"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0 and "usage: liveness-train fit" in proc.stdout
    assert "absl::InitializeLog" not in proc.stderr and "I0000" not in proc.stderr, proc.stderr
