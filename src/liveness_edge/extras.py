"""Optional parts of the distribution (setup.cfg extras), checked without importing them.

A device install (``pip install .``) has no TensorFlow; the tools that need it say so in one line
instead of failing inside a Keras import.
"""
from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from .runtime.errors import BackendUnavailable
from .runtime.terminal import native_stderr

TRAIN_INSTALL_HINT = 'pip install ".[train]" in the checkout'
# TensorFlow's native start-up lines, printed once per loaded library (so twice) and deaf to TF_CPP_MIN_LOG_LEVEL
TF_STARTUP_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ")


def tensorflow_available() -> bool:
    """True when Keras/TensorFlow can be imported, without importing them."""
    return find_spec("tensorflow") is not None and find_spec("keras") is not None


def require_train_extra(what: str) -> int:
    """0 when TensorFlow is installed; else BackendUnavailable (exit 6) naming the extra to install."""
    if not tensorflow_available():
        raise BackendUnavailable(f"{what} needs TensorFlow, the [train] extra: {TRAIN_INSTALL_HINT}")
    return 0


def import_quietly(name: str, package: str) -> ModuleType:
    """Import a module that loads TensorFlow without its native start-up lines; anything else it prints stays."""
    with native_stderr() as caught:
        module = import_module(name, package)
    sys.stderr.write("".join(ln for ln in caught.text.splitlines(True) if not ln.startswith(TF_STARTUP_NOISE)))
    return module
