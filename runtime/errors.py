"""Errors that the CLIs turn into one line and a documented exit code."""
from __future__ import annotations


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
