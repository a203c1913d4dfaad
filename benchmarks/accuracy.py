"""Whole-pipeline accuracy (detector, crop, liveness, decision) on a labelled folder of images.

``DATA`` holds ``real/`` and ``spoof/`` folders (or their synonyms ``live/``, ``fake/``... as gathering reads them,
``runtime.labels``) at any depth; a folder right under ``spoof/`` names the attack type (``spoof/print/``). Every image is independent (``RunningMode.IMAGE``), and its largest
face is judged. Fail closed: an image with no face is rejected whatever its class, so
a spoof without a face counts as caught and a real one without a face counts against BPCER (both reported).
Metrics come from the training metrics module; nothing is computed here twice.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..runtime.errors import LivenessEdgeError, SourceError
from ..runtime.manifest import DEFAULT_MANIFEST
from ..runtime.types import DetectorVariant
from ..train.metrics import PadMetrics, pad_metrics
from ..runtime.labels import IMAGE_SUFFIXES, LABELS, label_from_parts
from .latency import environment, progress, shipped

CLASSES = LABELS
NO_FACE = "no face"


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int
    attack: str


@dataclass(frozen=True)
class ImageOutcome:
    """What the pipeline said about one image; ``p_real`` is None when no face was found."""

    path: str
    label: int
    attack: str
    p_real: float | None
    decision: str
    reason: str | None

    @property
    def score(self) -> float:
        """The score the metrics see: P(real) of the face, 0 (rejected at every threshold) without a face."""
        return 0.0 if self.p_real is None else self.p_real


@dataclass(frozen=True)
class AccuracyOptions:
    """Empty ``models``/``backends``/``precisions`` mean everything the manifest ships."""

    data: tuple[str, ...]
    models: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    threads: int = 1
    detector: DetectorVariant = DetectorVariant.SHORT
    manifest: str = str(DEFAULT_MANIFEST)


@dataclass
class AccuracyResult:
    """One model/backend/precision over the whole folder. ``metrics`` are on P(real) at the manifest threshold;
    ``decision_metrics`` on the pipeline's own decision (hysteresis band and quality checks, fail closed)."""

    model: str
    backend: str
    precision: str
    status: str
    error: str = ""
    threshold: float | None = None
    metrics: PadMetrics | None = None
    decision_metrics: PadMetrics | None = None
    outcomes: list[ImageOutcome] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.model} {self.backend} {self.precision}"

    def face_found_rate(self, label: int) -> float | None:
        found = [o.p_real is not None for o in self.outcomes if o.label == label]
        return float(np.mean(found)) if found else None

    def decision_counts(self, label: int) -> dict[str, int]:
        counts = {"real": 0, "spoof": 0, "uncertain": 0, NO_FACE: 0}
        for o in self.outcomes:
            if o.label == label:
                counts[o.decision] = counts.get(o.decision, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "status": self.status,
            "error": self.error,
            "threshold": self.threshold,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "decision_metrics": self.decision_metrics.to_dict() if self.decision_metrics else None,
            "face_found_rate": {c: self.face_found_rate(v) for c, v in CLASSES.items()},
            "decisions": {c: self.decision_counts(v) for c, v in CLASSES.items()},
            "images": [asdict(o) for o in self.outcomes],
        }


@dataclass
class AccuracyRun:
    environment: dict
    options: dict
    images: list[LabelledImage]
    results: list[AccuracyResult]

    def to_dict(self) -> dict:
        attacks = sorted({i.attack for i in self.images if i.label == 0})
        return {
            "environment": self.environment,
            "options": self.options,
            "data": {
                "n_real": sum(i.label == 1 for i in self.images),
                "n_spoof": sum(i.label == 0 for i in self.images),
                "spoof_per_attack": {a: sum(i.label == 0 and i.attack == a for i in self.images) for a in attacks},
            },
            "results": [r.to_dict() for r in self.results],
        }


def scan_labelled(roots: list[str | Path]) -> list[LabelledImage]:
    """Every image under real or spoof folders of each root (recursively, any depth; the root's own name
    counts, as in gathering), sorted."""
    images = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise SourceError(f"labelled folder not found: {root}")
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            label, attack = label_from_parts((root.resolve().name, *path.relative_to(root).parts[:-1]))
            if label is not None:
                images.append(LabelledImage(path, LABELS[label], attack))
    if not images:
        raise SourceError(f"no images under real/ or spoof/ folders in {', '.join(map(str, roots))}")
    return images


def _binary_decisions(outcomes: list[ImageOutcome]) -> np.ndarray:
    """1.0 where the pipeline said ``real``, else 0.0: its decisions as scores thresholded at 0.5."""
    return np.array([1.0 if o.decision == "real" else 0.0 for o in outcomes])


def evaluate(
    images: list[LabelledImage], model: str, backend: str, precision: str, options: AccuracyOptions,
    show_progress: bool = True,
) -> AccuracyResult:
    """Run one model/backend/precision over every image; a configuration that cannot load is a failed row."""
    from ..runtime.pipeline import LivenessPipeline, PipelineOptions
    from ..runtime.types import RunningMode

    result = AccuracyResult(model, backend, precision, "ok")
    try:
        pipe_options = PipelineOptions(
            running_mode=RunningMode.IMAGE, model=model, backend=backend, precision=precision,
            threads=options.threads, detector=options.detector, max_faces=1,
        )
        pipe = LivenessPipeline.from_manifest(options.manifest, pipe_options)
    except (LivenessEdgeError, ValueError) as e:
        return replace(result, status="failed", error=str(e))
    result.threshold = pipe.threshold
    for image in progress(images, result.name, "img", show_progress):
        frame = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
        if frame is None:
            print(f"bench accuracy: skipped unreadable image {image.path}", file=sys.stderr)
            continue
        faces = pipe.process(frame, source=str(image.path)).faces
        face = faces[0] if faces else None
        result.outcomes.append(
            ImageOutcome(
                str(image.path),
                image.label,
                image.attack,
                None if face is None else face.p_real,
                NO_FACE if face is None else face.decision,
                None if face is None else face.reason,
            )
        )
    y = np.array([o.label for o in result.outcomes])
    attacks = [o.attack for o in result.outcomes]
    result.metrics = pad_metrics(y, [o.score for o in result.outcomes], result.threshold, attacks)
    result.decision_metrics = pad_metrics(y, _binary_decisions(result.outcomes), 0.5, attacks)
    return result


def run_accuracy(options: AccuracyOptions, show_progress: bool = True) -> AccuracyRun:
    """Every requested model x backend x precision over the labelled folders."""
    images = scan_labelled(list(options.data))
    models, backends, precisions = shipped(options.manifest, options.models, options.backends, options.precisions)
    results = [
        evaluate(images, m, b, p, options, show_progress) for m in models for b in backends for p in precisions
    ]
    for r in results:
        if r.status != "ok":
            print(f"bench accuracy: {r.name}: failed: {r.error}", file=sys.stderr)
    return AccuracyRun(environment(), asdict(options), images, results)
