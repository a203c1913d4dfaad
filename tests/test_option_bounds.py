"""Issue 11 items 7-9 (options): values that would crash, stall or silently switch a safeguard off are a
usage error (exit 2, one line) before anything loads; a signal during start-up is a clean 130."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

from liveness_edge.runtime import cli
from liveness_edge.runtime.errors import signals_deferred
from liveness_edge.runtime.manifest import Manifest
from liveness_edge.runtime.pipeline import PipelineOptions, max_threads
from liveness_edge.runtime.quality import QualityOptions
from liveness_edge.runtime.smoothing import SmoothingOptions

IMAGE = str(cli.SAMPLES_DIR / "real" / "image_T1.jpg")


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("liveness_edge")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate, logger.level = saved


@pytest.mark.parametrize(
    "args, text",
    [
        (["--threads", "100000"], "threads must be 1-"),
        (["--threads", "0"], "threads must be 1-"),
        (["--window", "100000000"], "window"),
        (["--real-above", "0"], "real_above"),
        (["--spoof-below", "inf"], "spoof_below"),
        (["--real-above", "0", "--spoof-below", "0"], "strictly between 0 and 1"),
        (["--real-above", "0.4", "--spoof-below", "0.6"], "inverted"),
        (["--margin", "nan"], "margin"),
        (["--alpha", "0"], "alpha"),
        (["--min-detector-score", "0"], "min_detector_score"),
        (["--min-detector-score", "nan"], "min_detector_score"),
        (["--min-face", "nan"], "min_face_px"),
        (["--min-face", "-1"], "min_face_px"),
        (["--dark", "-5"], "dark_mean"),
        (["--dark", "nan"], "dark_mean"),
        (["--min-sharpness", "nan"], "min_sharpness"),
        (["--min-inside", "-0.1"], "min_inside"),
        (["--min-inside", "1.5"], "min_inside"),
        (["--min-track-age", "0"], "min_track_age"),
        (["--detect-every", "0"], "detect_every"),
        (["--sha256", "ab"], "only go with --model-path"),
        (["--model-path", "x.onnx", "--sha256", "zz"], "64 hexadecimal digits"),
    ],
)
def test_unsafe_values_are_usage_errors(args, text, capsys):
    assert cli.main(["--image", IMAGE, "--no-display", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("liveness-edge: error: ") and text in err, err


def test_model_names_come_from_the_manifest(capsys):
    assert cli.main(["--image", IMAGE, "--model", "resnet"]) == 2
    err = capsys.readouterr().err
    names = Manifest.load(cli.DEFAULT_MANIFEST).model_names
    assert f"--model 'resnet' is not in the manifest; it has {', '.join(names)}" in err


def test_camera_must_be_a_number_or_picam(capsys):
    assert cli.main(["--camera", "abc"]) == 2
    assert "--camera takes a camera number or 'picam'" in capsys.readouterr().err


def test_threads_bound_follows_the_cpu_count():
    assert max_threads() == (os.cpu_count() or 1) * 4
    assert PipelineOptions(threads=max_threads()).threads == max_threads()
    with pytest.raises(ValueError):
        PipelineOptions(threads=max_threads() + 1)


def test_options_dataclasses_raise_value_error_and_accept_the_defaults():
    PipelineOptions(), SmoothingOptions(), QualityOptions()
    with pytest.raises(ValueError, match="precision"):
        PipelineOptions(precision="int4")
    with pytest.raises(ValueError, match="running mode"):
        PipelineOptions(running_mode="batch")
    with pytest.raises(ValueError, match="smoothing method"):
        SmoothingOptions(method="median")


def test_a_signal_while_models_load_waits_for_the_load_then_interrupts():
    """Ctrl-C during an import or a model load used to surface as "not installed" (exit 6) or a traceback:
    it is held until loading is over and then raises the ordinary KeyboardInterrupt (exit 130)."""
    loaded = False
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            loaded = True  # the load goes on to its end
    assert loaded


def test_ctrl_c_while_the_cli_imports_is_exit_130_without_a_traceback():
    """The console script imports OpenCV and NumPy first (about half a second): an interrupt then used to
    print Python's own traceback. The entry module turns it into the one-line exit 130. The child interrupts
    itself from an import hook the moment OpenCV starts to import (a timer thread raced the import on a slow
    or a fast machine)."""
    child = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cv2':\n"
        "            sys.meta_path.remove(self)\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Hook())\n"
        "from liveness_edge.runtime import entry\n"
        "assert 'cv2' not in sys.modules\n"
        "sys.exit(entry.main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, "--demo", "--no-display"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("liveness-edge: error: interrupted")
