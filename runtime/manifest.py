"""``artifacts/manifest.json``: which model files exist, how to feed them, and their sha256; and the one
function (``resolve``) that turns options into the model and detector files to run, checked.

Export writes the manifest (``Manifest.save``); the runtime reads it (``Manifest.load``, validated: a bad
field is a ``ManifestError``, exit 4) and never hard-codes preprocessing. Paths in the manifest are relative
to the manifest's folder and must stay inside it (or inside the package's ``face_detector/`` folder). Files
are read once, hashed, and loaded from those same bytes, so nothing can be swapped between check and use.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .detector import FACE_DETECTOR_DIR
from .errors import BackendUnavailable, ManifestError, ModelError, UsageError
from .preprocessing import Preprocessing
from .types import AUTO, DetectorVariant, LandmarkVariant, ModelFormat, Precision

if TYPE_CHECKING:
    from .pipeline import PipelineOptions

SCHEMA_VERSION = 1
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"
DEFAULT_MANIFEST = ARTIFACTS_DIR / "manifest.json"
MAX_MODEL_BYTES = 512 << 20  # larger than any model meant for a Pi; refuses /dev/zero and friends early
MAX_INPUT_SIDE = 1024  # px of a liveness model's input side
BACKEND_MODULES = {ModelFormat.ONNX: ("onnxruntime",), ModelFormat.TFLITE: ("ai_edge_litert", "tflite_runtime")}
LATENCY_KEYS = ("latency_ms_median", "latency_ms")  # what export's verification records, per model file
_SHA256 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("liveness_edge")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_model_bytes(path: Path) -> bytes:
    """A model file's bytes, read once (the caller hashes and loads these very bytes)."""
    try:
        with open(path, "rb") as f:
            content = f.read(MAX_MODEL_BYTES + 1)
    except FileNotFoundError:
        raise ModelError(f"model file missing: {path}") from None
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read: {e.strerror or e}") from e
    if len(content) > MAX_MODEL_BYTES:
        raise ModelError(f"model file {path} is larger than {MAX_MODEL_BYTES >> 20} MB: not a model for this runtime")
    return content


def check_sha256(text: str, what: str) -> str:
    """A sha256 as 64 lower-case hex digits, or ``ValueError``."""
    digest = text.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ValueError(f"{what} must be 64 hexadecimal digits, not {text!r}")
    return digest


@dataclass(frozen=True)
class TensorSpec:
    shape: list[int]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class DetectorEntry:
    """A face detector file; ``variant`` selects the anchor layout (short or full range)."""

    name: str
    variant: str
    format: str
    file: str
    sha256: str
    bytes: int
    verification: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    """One exported liveness model file and everything needed to run and trust it."""

    name: str
    format: str
    precision: str
    file: str
    sha256: str
    bytes: int
    input: TensorSpec
    output: TensorSpec
    preprocessing: Preprocessing
    labels: list[str]
    threshold: float
    verification: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _validate_file_fields(e: ModelEntry | DetectorEntry) -> None:
    _require(isinstance(e.name, str) and e.name != "", f"name {e.name!r} is not a non-empty string")
    _require(isinstance(e.file, str) and e.file != "", f"{e.name}: file {e.file!r} is not a path string")
    _require(isinstance(e.sha256, str) and bool(_SHA256.fullmatch(e.sha256)), f"{e.name}: sha256 is not 64 hex digits")
    _require(isinstance(e.bytes, int) and not isinstance(e.bytes, bool) and 0 < e.bytes <= MAX_MODEL_BYTES,
             f"{e.name}: bytes {e.bytes!r} is not a plausible file size")
    ModelFormat.parse(e.format, f"{e.name}: format")


def _validate_model(m: ModelEntry) -> None:
    """Refuse what would make the runtime decide wrongly or crash later (threshold, labels, input size)."""
    _validate_file_fields(m)
    Precision.parse(m.precision, f"{m.name}: precision")
    t = m.threshold
    _require(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and 0.0 < t < 1.0,
             f"{m.name}: threshold {t!r} is not a probability strictly between 0 and 1")
    _require(isinstance(m.labels, list) and all(isinstance(x, str) for x in m.labels) and "real" in m.labels
             and len(set(m.labels)) == len(m.labels), f"{m.name}: labels {m.labels!r} must be distinct names including 'real'")
    size = m.preprocessing.size
    _require(size <= MAX_INPUT_SIDE, f"{m.name}: input size {size} is larger than {MAX_INPUT_SIDE}")
    shape = m.input.shape
    _require(isinstance(shape, list) and all(isinstance(d, int) and 0 < d <= MAX_INPUT_SIDE for d in shape)
             and shape.count(size) >= 2, f"{m.name}: input shape {shape!r} does not match the {size}x{size} preprocessing")


def _validate_detector(d: DetectorEntry) -> None:
    _validate_file_fields(d)
    if d.variant not in LandmarkVariant.__members__.values():
        DetectorVariant.parse(d.variant, f"{d.name}: variant")


def installed_backends() -> list[ModelFormat]:
    """Backends whose inference library can be imported here (checked without importing it)."""
    return [b for b, mods in BACKEND_MODULES.items() if any(importlib.util.find_spec(m) for m in mods)]


@dataclass
class Manifest:
    models: list[ModelEntry]
    detectors: list[DetectorEntry]
    versions: dict = field(default_factory=dict)
    created: str = ""
    root: Path = ARTIFACTS_DIR

    @property
    def model_names(self) -> list[str]:
        """The liveness models this manifest ships, in manifest order (what ``--model`` accepts)."""
        return list(dict.fromkeys(m.name for m in self.models))

    def path_of(self, entry: ModelEntry | DetectorEntry) -> Path:
        """The entry's file; refused unless it lies inside the manifest's folder or the package's detectors."""
        path = (self.root / entry.file).resolve()
        allowed = (self.root.resolve(), FACE_DETECTOR_DIR.resolve())
        if not any(path.is_relative_to(folder) for folder in allowed):
            raise ManifestError(f"manifest entry {entry.name}: file {entry.file!r} lies outside the manifest's folder")
        return path

    def model(self, name: str, backend: str, precision: str) -> ModelEntry:
        for m in self.models:
            if m.name == name and m.format == backend and m.precision == precision:
                return m
        have = ", ".join(sorted({f"{m.name}/{m.format}/{m.precision}" for m in self.models})) or "nothing"
        raise ManifestError(f"manifest has no {name}/{backend}/{precision} model (it has: {have})")

    def detector(self, variant: str, backend: str) -> DetectorEntry:
        for d in self.detectors:
            if d.variant == variant and d.format == backend:
                return d
        raise ManifestError(f"manifest has no {variant}-range face detector for {backend}")

    def find_by_path(self, path: str | Path) -> ModelEntry | None:
        target = Path(path).resolve()
        return next((m for m in self.models if self.path_of(m) == target), None)

    def verified_bytes(self, entry: ModelEntry | DetectorEntry) -> tuple[Path, bytes]:
        """The entry's path and bytes, read once and refused unless their sha256 matches the manifest."""
        path = self.path_of(entry)
        content = read_model_bytes(path)
        digest = hashlib.sha256(content).hexdigest()
        if digest != entry.sha256:
            raise ModelError(
                f"model file {path.name} does not match the manifest (sha256 {digest[:12]}… != "
                f"{entry.sha256[:12]}…): corrupted or swapped; re-export or restore it"
            )
        return path, content

    def verified_path(self, entry: ModelEntry | DetectorEntry) -> Path:
        """The entry's file, checked (for tools that hand a path on; loaders use ``verified_bytes``)."""
        return self.verified_bytes(entry)[0]

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "versions": self.versions,
            "detectors": [asdict(d) for d in self.detectors],
            "models": [{**asdict(m), "preprocessing": m.preprocessing.to_dict()} for m in self.models],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MANIFEST) -> "Manifest":
        """Read and validate; raises ``ManifestError`` (exit 4) for anything missing, malformed or unsafe."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"manifest not found: {path} (run export-models, or pass --manifest)") from None
        except (OSError, ValueError) as e:
            raise ManifestError(f"manifest {path} is not readable JSON: {e}") from e
        try:
            if data.get("schema_version") != SCHEMA_VERSION:
                raise ManifestError(f"manifest {path}: schema_version {data.get('schema_version')!r}, expected 1")
            models = [
                ModelEntry(
                    **{
                        **m,
                        "input": TensorSpec(**m["input"]),
                        "output": TensorSpec(**m["output"]),
                        "preprocessing": Preprocessing.from_dict(m["preprocessing"]),
                    }
                )
                for m in data["models"]
            ]
            detectors = [DetectorEntry(**d) for d in data["detectors"]]
            for m in models:
                _validate_model(m)
            for d in detectors:
                _validate_detector(d)
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise ManifestError(f"manifest {path} is malformed: {type(e).__name__}: {e}") from e
        return cls(models, detectors, data.get("versions", {}), data.get("created", ""), path.resolve().parent)


def _verified_latency(entry: ModelEntry) -> float | None:
    value = next((entry.verification[k] for k in LATENCY_KEYS if k in entry.verification), None)
    return float(value) if isinstance(value, (int, float)) else None


def choose_backend(manifest: Manifest, name: str, precision: str) -> ModelFormat:
    """The backend ``auto`` means: lowest verified latency in the manifest, else LiteRT (fastest in trials)."""
    installed = installed_backends()
    if not installed:
        raise BackendUnavailable("neither onnxruntime nor ai-edge-litert is installed: pip install liveness-edge")
    entries = [m for m in manifest.models if m.name == name and m.precision == precision and m.format in installed]
    if not entries:
        manifest.model(name, installed[0], precision)  # raises the ManifestError that lists what exists
    latencies = {ModelFormat(m.format): _verified_latency(m) for m in entries}
    if all(v is not None for v in latencies.values()):
        return min(latencies, key=latencies.get)
    return ModelFormat.TFLITE if ModelFormat.TFLITE in latencies else ModelFormat(entries[0].format)


def _detector_entry(manifest: Manifest, variant: str, backend: str) -> DetectorEntry:
    """The detector on the model's backend if the manifest has it, else on any installed backend."""
    for b in [backend] + [x for x in installed_backends() if x != backend]:
        try:
            return manifest.detector(variant, b)
        except ManifestError:
            continue
    return manifest.detector(variant, backend)


@dataclass(frozen=True)
class Resolved:
    """The liveness model and detector to run: manifest entries, paths, and the checked bytes to load.

    ``verified`` is False only for ``--model-path`` with ``allow_unverified``: a file nobody vouched for.
    """

    model: ModelEntry
    model_path: Path
    model_bytes: bytes = field(repr=False)
    detector: DetectorEntry
    detector_path: Path
    detector_bytes: bytes = field(repr=False)
    verified: bool = True


def _explicit_model(manifest: Manifest, options: "PipelineOptions") -> tuple[ModelEntry, Path, bytes, bool]:
    """``--model-path``: trusted if its sha256 is in the manifest or equals ``model_sha256``; run unverified
    only with ``allow_unverified``; preprocessing and threshold come from the manifest entry of ``model``."""
    path = Path(options.model_path)
    from .backends import backend_name

    fmt = backend_name(path)
    content = read_model_bytes(path)
    digest = hashlib.sha256(content).hexdigest()
    if options.model_sha256 and digest != options.model_sha256:
        raise ModelError(f"--model-path {path}: sha256 {digest[:12]}… does not match --sha256 {options.model_sha256[:12]}…")
    for m in manifest.models:
        if m.sha256 == digest:
            return m, path, content, True
    same_name = [m for m in manifest.models if m.name == options.model]
    if not same_name:
        raise ManifestError(
            f"--model-path {path}: the manifest has no {options.model!r} entry to take its preprocessing from"
        )
    if not (options.model_sha256 or options.allow_unverified):
        raise UsageError(f"--model-path {path} is not in the manifest: give its --sha256, or --allow-unverified")
    entry = next((m for m in same_name if m.format == fmt and m.precision == options.precision), same_name[0])
    entry = replace(entry, format=fmt, file=str(path), sha256=digest, bytes=len(content))
    if not options.model_sha256:
        log.warning("%s is not in the manifest and its sha256 is not checked (preprocessing and threshold of %s)",
                    path, entry.name)
    return entry, path, content, bool(options.model_sha256)


def resolve(manifest: Manifest, options: "PipelineOptions") -> Resolved:
    """The one place that picks files for options: used by the pipeline and the bench alike.

    Raises ``ManifestError`` (nothing matching), ``ModelError`` (missing or not matching its sha256),
    ``BackendUnavailable`` (no inference library) and ``UsageError`` (unverified ``model_path``).
    """
    if options.model_path:
        entry, path, content, verified = _explicit_model(manifest, options)
    else:
        backend = options.backend
        if backend == AUTO:
            backend = choose_backend(manifest, options.model, options.precision)
        entry = manifest.model(options.model, backend, options.precision)
        (path, content), verified = manifest.verified_bytes(entry), True
    det_entry = _detector_entry(manifest, options.detector, entry.format)
    det_path, det_content = manifest.verified_bytes(det_entry)
    return Resolved(entry, path, content, det_entry, det_path, det_content, verified)
