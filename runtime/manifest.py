"""``artifacts/manifest.json``: which model files exist, how to feed them, and their sha256.

Export writes it (``Manifest.save``); the runtime reads it (``Manifest.load``) and never hard-codes
preprocessing. Paths in the manifest are relative to the manifest's folder.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ManifestError, ModelError
from .preprocessing import Preprocessing

SCHEMA_VERSION = 1
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"
DEFAULT_MANIFEST = ARTIFACTS_DIR / "manifest.json"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


@dataclass
class Manifest:
    models: list[ModelEntry]
    detectors: list[DetectorEntry]
    versions: dict = field(default_factory=dict)
    created: str = ""
    root: Path = ARTIFACTS_DIR

    def path_of(self, entry: ModelEntry | DetectorEntry) -> Path:
        return (self.root / entry.file).resolve()

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

    def verified_path(self, entry: ModelEntry | DetectorEntry) -> Path:
        """The entry's file, refused unless it exists and its sha256 matches the manifest."""
        path = self.path_of(entry)
        if not path.is_file():
            raise ModelError(f"model file missing: {path}")
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise ModelError(
                f"model file {path.name} does not match the manifest (sha256 {digest[:12]}… != "
                f"{entry.sha256[:12]}…): corrupted or swapped; re-export or restore it"
            )
        return path

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
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"manifest not found: {path} (run export-models, or pass --manifest)") from None
        except (OSError, ValueError) as e:
            raise ManifestError(f"manifest {path} is not readable JSON: {e}") from None
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
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"manifest {path} is malformed: {type(e).__name__}: {e}") from None
        return cls(models, detectors, data.get("versions", {}), data.get("created", ""), path.resolve().parent)
