"""Shared test fixtures: where ../shared/data is, and skipping cleanly when it is not there."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LIVENESS_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_PRETRAINED = Path(os.environ.get("LIVENESS_SHARED_PRETRAINED", REPO.parent / "shared" / "pretrained"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip with this reason when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"needs the public face data at {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_pretrained() -> Path:
    """``../shared/pretrained`` beside the checkout (the MiniFASNet Keras ports); skip when it is absent."""
    if not (SHARED_PRETRAINED / "minifasnet" / "minifasnetv2_80x80.keras").is_file():
        pytest.skip(f"needs the pretrained MiniFASNet weights at {SHARED_PRETRAINED} (absent on this machine)")
    return SHARED_PRETRAINED


@pytest.fixture
def restore_logging():
    """``cli.main`` configures the package logger for its process; undo that after in-process calls."""
    import logging

    logger = logging.getLogger("liveness_edge")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate, logger.level = saved
