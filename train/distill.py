"""Knowledge distillation: a MiniFASNet teacher's P(real) as soft targets for the small students.

The teacher runs once per training crop (cached as JSON next to the run), never at training steps and never on
the device. The student's loss mixes the labels with the teacher:
``(1 - alpha) * CE(label, p) + alpha * T^2 * CE(q_T, p_T)`` where ``q_T`` is the teacher's P(real) at temperature
``T`` and ``p_T`` the student's softmax re-tempered from its probabilities (``softmax(log p / T)`` equals
``softmax(z / T)`` for the student's logits ``z``).

The teacher sees the gathered crop as close as it allows to the crop it was trained on: the part of the padded
context square that lies inside the camera frame (black padding trimmed), cut to the face box times the teacher's
context with the scale reduced to fit and the box shifted inside (Silent-Face's crop), resized to the teacher's
input size, in its colour order (BGR for the pretrained files), 0-255 float. A crop gathered in ``shift`` mode at
the teacher's context already is that crop and is only resized.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..runtime.crop import square_around
from ..runtime.errors import SourceError
from .data import Sample, read_index_rows

REAL_INDEX = 1  # softmax class 1 = real, for the pretrained MiniFASNet files and this project's models alike
PRETRAINED_CONTEXT = 2.7
PAD_MAX = 20  # a padding row/column is black up to JPEG ringing: max <= PAD_MAX and mean <= PAD_MEAN
PAD_MEAN = 3.0
CACHE_VERSION = 1


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher network: its .keras file and how it expects the face crop."""

    path: Path
    size: int
    context: float
    color_order: str
    sha256: str

    def to_dict(self) -> dict:
        """Cache / config record (file name and hash, no machine path)."""
        return {"file": self.path.name, "sha256": self.sha256, "size": self.size, "context": self.context,
                "color_order": self.color_order}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_teacher(path: str | Path) -> TeacherSpec:
    """A run dir (its model.keras and config.json preprocessing) or a pretrained MiniFASNet .keras file
    (BGR, 2.7x context, input size from the model)."""
    path = Path(path)
    if path.is_dir():
        model, config = path / "model.keras", path / "config.json"
        if not model.is_file() or not config.is_file():
            raise SourceError(f"teacher run dir {path} lacks model.keras or config.json")
        pre = json.loads(config.read_text())["preprocessing"]
        return TeacherSpec(model, int(pre["size"]), float(pre["context"]), str(pre.get("color_order", "RGB")),
                           _sha256(model))
    if path.suffix != ".keras" or not path.is_file():
        raise SourceError(f"teacher must be a run dir or a .keras file: {path}")
    import keras

    shape = keras.models.load_model(path, compile=False).input_shape
    return TeacherSpec(path, int(shape[1]), PRETRAINED_CONTEXT, "BGR", _sha256(path))


def inside_region(crop: np.ndarray, square: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the crop's pixels that came from the frame: padding on the left/top is known from
    the square's negative origin, on the right/bottom it is found as black rows/columns (frame size unknown)."""
    size = crop.shape[0]
    k = size / (square[2] - square[0])
    x1 = min(size - 1, max(0, int(round(-square[0] * k))))
    y1 = min(size - 1, max(0, int(round(-square[1] * k))))
    gray = crop.max(axis=2) if crop.ndim == 3 else crop
    x2, y2 = size, size
    while x2 > x1 + 1 and gray[y1:, x2 - 1].max() <= PAD_MAX and gray[y1:, x2 - 1].mean() <= PAD_MEAN:
        x2 -= 1
    while y2 > y1 + 1 and gray[y2 - 1, x1:x2].max() <= PAD_MAX and gray[y2 - 1, x1:x2].mean() <= PAD_MEAN:
        y2 -= 1
    return x1, y1, x2, y2


def shift_inside_box(
    box: tuple[float, float, float, float], region: tuple[int, int, int, int], context: float
) -> tuple[int, int, int, int]:
    """Silent-Face's crop box: the face box scaled by ``context`` (less if it would not fit the region) about its
    centre, then shifted to lie inside the region (no padding, not forced square)."""
    bx1, by1, bx2, by2 = box
    rx1, ry1, rx2, ry2 = region
    bw, bh = max(bx2 - bx1, 1e-6), max(by2 - by1, 1e-6)
    scale = min(context, (rx2 - rx1) / bw, (ry2 - ry1) / bh)
    w, h = bw * scale, bh * scale
    left = min(max((bx1 + bx2 - w) / 2.0, rx1), rx2 - w)
    top = min(max((by1 + by2 - h) / 2.0, ry1), ry2 - h)
    x1, y1 = int(round(left)), int(round(top))
    return x1, y1, max(x1 + 1, min(rx2, int(round(left + w)))), max(y1 + 1, min(ry2, int(round(top + h))))


def teacher_input(crop_bgr: np.ndarray, face_box: tuple[float, float, float, float], crop_context: float,
                  spec: TeacherSpec) -> np.ndarray:
    """The teacher's float input for one gathered crop (padded context square around ``face_box``, frame coords)."""
    square = square_around(face_box, crop_context)
    k = crop_bgr.shape[0] / (square[2] - square[0])
    origin = (square[0], square[1], square[0], square[1])
    box = tuple((v - o) * k for v, o in zip(face_box, origin))
    x1, y1, x2, y2 = shift_inside_box(box, inside_region(crop_bgr, square), spec.context)
    return _resized(crop_bgr[y1:y2, x1:x2], spec)


def _resized(part: np.ndarray, spec: TeacherSpec) -> np.ndarray:
    """``part`` at the teacher's input size and colour order, 0-255 float."""
    interp = cv2.INTER_AREA if part.shape[0] > spec.size or part.shape[1] > spec.size else cv2.INTER_LINEAR
    x = cv2.resize(part, (spec.size, spec.size), interpolation=interp)
    return (x if spec.color_order == "BGR" else x[..., ::-1]).astype(np.float32)


def _as_logits(out: np.ndarray) -> np.ndarray:
    """Model outputs as logits: probabilities (rows on the simplex) become log-probabilities."""
    out = np.asarray(out, np.float64)
    if (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return np.log(np.clip(out, 1e-12, 1.0))
    return out


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(z, np.float64) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class TeacherTargets:
    """Teacher logits per crop (one row per teacher network); P(real) is their mean softmax (Silent-Face's fusion
    sums them) at a temperature."""

    teachers: list[dict]
    logits: dict[str, np.ndarray]  # gathered file (relative to the data root) -> (n_teachers, n_classes)

    def p_real(self, files: Sequence[str], temperature: float = 1.0) -> np.ndarray:
        missing = [f for f in files if f not in self.logits]
        if missing:
            raise SourceError(f"teacher cache lacks {len(missing)} crops, e.g. {missing[0]}")
        return np.array([softmax(self.logits[f], temperature)[:, REAL_INDEX].mean() for f in files], np.float32)

    def save(self, path: Path) -> None:
        payload = {"version": CACHE_VERSION, "teachers": self.teachers,
                   "input": "gathered crop, in-frame part, face box x context shifted inside, resized (see distill.py)",
                   "files": {f: {"logits": z.round(6).tolist(), "p_real": float(softmax(z)[:, REAL_INDEX].mean())}
                             for f, z in sorted(self.logits.items())}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TeacherTargets":
        payload = json.loads(path.read_text())
        if payload.get("version") != CACHE_VERSION:
            raise SourceError(f"{path}: unknown teacher cache version {payload.get('version')!r}")
        return cls(payload["teachers"], {f: np.asarray(v["logits"], np.float64) for f, v in payload["files"].items()})


def relative_file(sample: Sample, data_root: Path) -> str:
    return sample.path.relative_to(data_root).as_posix()


def compute_targets(data_root: Path, samples: Sequence[Sample], teachers: Sequence[str | Path],
                    batch: int = 256) -> TeacherTargets:
    """Run every teacher once over the samples' crops (TensorFlow, training side only)."""
    import keras
    from tqdm import tqdm

    rows = {r["file"]: r for r in read_index_rows(data_root)}
    files = [relative_file(s, data_root) for s in samples]
    per_teacher = []
    specs = [resolve_teacher(t) for t in teachers]
    for spec in specs:
        model = keras.models.load_model(spec.path, compile=False)
        out = []
        for start in tqdm(range(0, len(files), batch), desc=f"teacher {spec.path.name}", unit="batch", mininterval=2):
            x = np.stack([_teacher_x(data_root, rows[f], spec) for f in files[start:start + batch]])
            out.append(_as_logits(model.predict(x, batch_size=batch, verbose=0)))
        per_teacher.append(np.concatenate(out) if out else np.zeros((0, 2)))
    logits = {f: np.stack([z[i] for z in per_teacher]) for i, f in enumerate(files)}
    return TeacherTargets([s.to_dict() for s in specs], logits)


def _teacher_x(data_root: Path, row: dict[str, str], spec: TeacherSpec) -> np.ndarray:
    crop = cv2.imread(str(data_root / row["file"]), cv2.IMREAD_COLOR)
    if crop is None:
        raise SourceError(f"unreadable crop: {data_root / row['file']}")
    context = float(row["context"])
    if row.get("crop_mode") == "shift":  # already the teacher's own crop when the contexts agree
        if not math.isclose(context, spec.context):
            raise SourceError(f"teacher {spec.path.name} wants {spec.context}x shift crops; {row['file']} was "
                              f"gathered at {context}x: gather at the teacher's context")
        return _resized(crop, spec)
    box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
    return teacher_input(crop, box, context, spec)


def load_or_compute(cache: Path, data_root: Path, samples: Sequence[Sample],
                    teachers: Sequence[str | Path]) -> TeacherTargets:
    """The cached targets when they cover ``samples`` and come from the same teacher files (by sha256),
    else computed and written to ``cache``."""
    if cache.is_file():
        cached = TeacherTargets.load(cache)
        hashes = [_sha256(resolve_teacher(t).path) for t in teachers]
        files = {relative_file(s, data_root) for s in samples}
        if [t["sha256"] for t in cached.teachers] == hashes and files <= cached.logits.keys():
            return cached
    targets = compute_targets(data_root, samples, teachers)
    targets.save(cache)
    return targets


def calibrate_per_source(p_real: np.ndarray, labels: np.ndarray, sources: Sequence[str], ridge: float = 1.0,
                         steps: int = 30) -> np.ndarray:
    """Per-source Platt scaling of the teacher's P(real) on the training labels. It keeps the teacher's ranking
    inside a source (which crops are hard) and drops its per-source offset (the pretrained teacher calls most
    upscaled crops spoof), which would otherwise teach the students a source or resolution shortcut. The slope is
    kept >= 0: where the teacher ranks a source backwards it says nothing (the source's base rate), it is never
    flipped by the labels. A source with one class only keeps the teacher's values."""
    p = np.clip(np.asarray(p_real, np.float64), 1e-6, 1 - 1e-6)
    margin, y, sources = np.log(p) - np.log1p(-p), np.asarray(labels, np.float64), np.asarray(sources)
    out = p.copy()
    for source in np.unique(sources):
        idx = sources == source
        if len(np.unique(y[idx])) < 2:
            continue
        z = (margin[idx] - margin[idx].mean()) / (margin[idx].std() + 1e-6)
        x = np.stack([z, np.ones_like(z)], axis=1)
        penalty = np.diag([ridge, 1e-9])
        w = np.zeros(2)
        for _ in range(steps):  # Newton steps on the ridge-penalised logistic loss
            q = 1.0 / (1.0 + np.exp(-x @ w))
            w -= np.linalg.solve((x * (q * (1 - q))[:, None]).T @ x + penalty, x.T @ (q - y[idx]) + penalty @ w)
        if w[0] < 0:
            w = np.array([0.0, math.log(y[idx].mean() / (1 - y[idx].mean()))])
        out[idx] = 1.0 / (1.0 + np.exp(-x @ w))
    return out.astype(np.float32)


def distillation_loss(alpha: float, temperature: float = 1.0):
    """Keras loss over packed targets ``y_true[:, 0]`` = label (1 real), ``y_true[:, 1]`` = teacher P(real) at
    ``temperature``; ``y_pred`` = the student's 2-class softmax. Per-sample, so sample weights apply."""
    from keras import ops

    eps = 1e-7

    def loss(y_true, y_pred):
        label, target = y_true[:, 0], y_true[:, 1]
        p = ops.clip(y_pred[:, REAL_INDEX], eps, 1.0 - eps)
        hard = -(label * ops.log(p) + (1.0 - label) * ops.log(1.0 - p))
        p_t = ops.softmax(ops.log(ops.clip(y_pred, eps, 1.0)) / temperature, axis=-1)[:, REAL_INDEX]
        p_t = ops.clip(p_t, eps, 1.0 - eps)
        soft = -(target * ops.log(p_t) + (1.0 - target) * ops.log(1.0 - p_t))
        return (1.0 - alpha) * hard + alpha * temperature**2 * soft

    return loss


def label_accuracy(y_true, y_pred):
    """Accuracy against the label column of packed distillation targets."""
    from keras import ops

    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "float32")
    return ops.cast(ops.equal(predicted, ops.cast(y_true[:, 0], "float32")), "float32")


def packed_targets(y: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """(N, 2) float32: label and teacher P(real) side by side, the layout ``distillation_loss`` expects."""
    return np.stack([np.asarray(y, np.float32), np.asarray(soft, np.float32)], axis=1)
