"""Errors that the CLIs turn into one line and a documented exit code: the one error contract of all five
CLIs (``liveness-edge``, ``bench``, ``liveness-gather``, ``liveness-train``, ``export-models``), via ``run_cli``.

Library code raises these (``raise ... from e`` keeps the cause for ``--debug``); options dataclasses raise
``ValueError``, which each CLI turns into a ``UsageError`` (exit 2).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator


class LivenessEdgeError(Exception):
    """Base class: carries the process exit code the CLI uses for it."""

    exit_code = 1


class ModelError(LivenessEdgeError):
    """A model file that is missing, corrupt, of the wrong kind, or does not match the manifest."""

    exit_code = 3


class ManifestError(LivenessEdgeError):
    """A manifest that is missing, unreadable or does not describe what was asked for."""

    exit_code = 4


class SourceError(LivenessEdgeError):
    """A camera, URL, video or image that cannot be opened or read."""

    exit_code = 5


class BackendUnavailable(LivenessEdgeError):
    """The inference library for a backend is not installed."""

    exit_code = 6


class UsageError(LivenessEdgeError):
    """Command-line options that contradict each other (argparse's own errors use the same code)."""

    exit_code = 2


class SourceLost(SourceError):
    """A live source that was working stopped delivering frames (camera unplugged, stream gone)."""

    exit_code = 7


class DisplayError(LivenessEdgeError):
    """A window was asked for but cannot be opened (no display, or an OpenCV build without GUI)."""

    exit_code = 8


class OutputError(LivenessEdgeError):
    """An output file (JSONL, video, annotated images) cannot be written."""

    exit_code = 9


class ExportFailed(LivenessEdgeError):
    """An export whose conversion failed or whose files do not agree with Keras (``export-models``, also
    ``--verify``): nothing of that run is shipped."""

    exit_code = 10


class NothingGathered(LivenessEdgeError):
    """``liveness-gather`` wrote no face crop: there is no dataset to train on."""

    exit_code = 11


class SplitLeak(LivenessEdgeError):
    """A train/validation/test split with a group on two sides (near-duplicate frames in evaluation): a bug
    in the split code, checked always (not with ``assert``, which ``python -O`` removes)."""


INTERRUPTED_EXIT_CODE = 130  # Ctrl-C, as shells report SIGINT
_DEFERRED_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while native libraries load: an interrupt inside an import or a model load can
    surface as a misleading error ("not installed") or a traceback. A signal that arrives meanwhile is noted
    and raised as ``KeyboardInterrupt`` (exit 130) once loading is over."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


def one_line(error: BaseException) -> str:
    """A library's multi-line message (OpenCV's, ONNX Runtime's) as one line, control characters escaped."""
    from .terminal import printable

    return printable(" ".join(line.strip() for line in str(error).splitlines() if line.strip()))


def run_cli(prog: str, body: Callable[[], int], interrupted: str = "interrupted", debug: bool = False) -> int:
    """The one error contract of every CLI: a project error becomes one line ``prog: error: ...`` and its exit
    code, Ctrl-C/SIGTERM 130, anything else one line and exit 1. ``debug`` re-raises (with its cause chain)."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except LivenessEdgeError as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if debug:
            raise
        print(f"{prog}: error: unexpected {type(e).__name__}: {one_line(e)} (run with --debug for details)",
              file=sys.stderr)
        return 1
