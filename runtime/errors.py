"""Errors that the CLIs turn into one line and a documented exit code."""
from __future__ import annotations

import sys
from typing import Callable


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


INTERRUPTED_EXIT_CODE = 130  # Ctrl-C, as shells report SIGINT


def run_cli(prog: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run a CLI's work: a project error or Ctrl-C becomes one line on stderr and its exit code, no traceback."""
    try:
        return body()
    except LivenessEdgeError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
