"""Issue 11 item 18: the training and export tools print no TensorFlow start-up lines (twice) and leave no
deprecation warnings at the end of the test output (hushed where they arise, not in the test configuration)."""
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


def test_fitting_saving_and_unfolding_leave_no_deprecation_warnings(tmp_path, recwarn):
    """The ~284 warnings that ended the test output came from Keras reading variables with np.array: each
    epoch (ReduceLROnPlateau, EarlyStopping), once per variable when saving, and when export copies weights."""
    pytest.importorskip("tensorflow", reason="training needs the [train] extra")
    import numpy as np

    from liveness_edge.export.to_tflite import unfolded_dense_norms
    from liveness_edge.train.train import TrainOptions, fit_model, save_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    y = np.array([0, 1] * 8)
    options = TrainOptions(model="livenessnet", size=32, epochs=3, batch=8, patience=1, augment=False, verbose=0)
    model, _ = fit_model(x, y, x, y, options)
    save_model(model, options, tmp_path / "model.keras")
    unfolded_dense_norms(model)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in recwarn]


def test_detector_conversion_leaves_no_deprecation_warning(tmp_path, recwarn):
    pytest.importorskip("tf2onnx", reason="export needs the [train] extra")
    from liveness_edge.export.to_onnx import tflite_to_onnx
    from liveness_edge.runtime.detector import FACE_DETECTOR_DIR, MODEL_FILES

    tflite_to_onnx(FACE_DETECTOR_DIR / MODEL_FILES["short"], tmp_path / "short.onnx", 17)
    assert (tmp_path / "short.onnx").stat().st_size > 0
    assert not [w for w in recwarn if "deprecated" in str(w.message)], [str(w.message) for w in recwarn]
