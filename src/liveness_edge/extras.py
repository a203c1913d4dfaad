"""Optional parts of the distribution (setup.cfg extras), checked without importing them.

A device install (``pip install .``) has no TensorFlow; the tools that need it say so in one line
instead of failing inside a Keras import.
"""
from __future__ import annotations

from importlib.util import find_spec

from .runtime.errors import BackendUnavailable

TRAIN_INSTALL_HINT = 'pip install ".[train]" in the checkout'


def tensorflow_available() -> bool:
    """True when Keras/TensorFlow can be imported, without importing them."""
    return find_spec("tensorflow") is not None and find_spec("keras") is not None


def require_train_extra(what: str) -> int:
    """0 when TensorFlow is installed; else BackendUnavailable (exit 6) naming the extra to install."""
    if not tensorflow_available():
        raise BackendUnavailable(f"{what} needs TensorFlow, the [train] extra: {TRAIN_INSTALL_HINT}")
    return 0
