"""Tracking: each face keeps an id across frames, so its scores can be smoothed on their own.

A detection continues a track only when all three agree: the boxes overlap (IoU), the box did not jump
(centre shift or size change beyond what a moving head does between two detections), and the face looks
the same (a cheap appearance signature of the face box). Otherwise the track is cut: the detection starts
a new track with a new id, an empty history and a new warm-up. A cut costs a few ``uncertain`` frames; a
wrong continuation would let one face's history speak for another, so the rule leans towards cutting.
Greedy matching is enough here: faces in front of a door or a laptop move little between detections.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .boxes import Box, area, clipped, iou, jumped
from .types import Face

SIGNATURE_SIZE = 16  # px: coarse enough to ignore noise and small pose changes, fine enough to tell faces apart


def appearance_signature(frame: np.ndarray, box: Box) -> np.ndarray:
    """The face box at 16x16 per colour channel, each channel zero-mean, the whole unit-norm: comparable
    by a dot product (normalised cross-correlation), insensitive to overall brightness and contrast."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = clipped(box, w, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.zeros(SIGNATURE_SIZE * SIGNATURE_SIZE * 3, np.float32)
    small = cv2.resize(frame[y1:y2, x1:x2], (SIGNATURE_SIZE, SIGNATURE_SIZE), interpolation=cv2.INTER_AREA)
    v = small.reshape(-1, small.shape[-1] if small.ndim == 3 else 1).astype(np.float32)
    v -= v.mean(axis=0)
    v = v.ravel()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-6 else v


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Normalised cross-correlation of two signatures (1: same image); 1 when either is unknown."""
    if a is None or b is None or a.shape != b.shape:
        return 1.0
    return float(np.dot(a, b))


@dataclass
class Track:
    """A face followed over time. ``box``, ``score`` and ``signature`` are from its latest matched detection."""

    id: int
    box: Box
    score: float
    hits: int = 1
    missed: int = 0
    signature: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        return area(self.box)


@dataclass(frozen=True)
class TrackerOptions:
    """When a detection continues a track, and how many detections in a row a track may miss before it ends.

    ``min_similarity`` is the lowest appearance correlation for the same face one frame later; it is lowered by
    ``similarity_drop`` per further frame between the two detections (``detect_every``, dropped live frames),
    down to ``min_similarity_floor``. ``max_shift`` is the largest centre move (in face sides) and ``max_scale``
    the largest size change (factor) between two matched detections.
    Measured with BlazeFace boxes on a face moving briskly (jomariya real_1.mp4, ~800 pairs): the same face
    correlates at >= 0.84 one frame apart (0 cuts at 0.75), >= 0.64 three frames apart (0.60 after the drop:
    0 cuts) and >= 0.50 five apart (floor 0.45); 50 different Replay-Attack clients correlate at median 0.71,
    so one frame apart 65 % of different-face pairs are cut by appearance alone. The fail-closed rule in
    ``smoothing`` covers the rest: a face that keeps another's track still needs its own score to be real.
    """

    iou_threshold: float = 0.3
    max_missed: int = 2
    min_similarity: float = 0.75
    similarity_drop: float = 0.075
    min_similarity_floor: float = 0.45
    max_shift: float = 0.5
    max_scale: float = 1.5

    def __post_init__(self) -> None:
        if not (0.0 < self.iou_threshold <= 1.0 and -1.0 <= self.min_similarity_floor <= self.min_similarity <= 1.0):
            raise ValueError("tracker iou_threshold must be in (0, 1] and -1 <= min_similarity_floor <= min_similarity <= 1")
        if self.max_missed < 0 or self.max_shift <= 0 or self.max_scale < 1.0 or self.similarity_drop < 0:
            raise ValueError("tracker max_missed and similarity_drop must be >= 0, max_shift > 0 and max_scale >= 1")

    def similarity_needed(self, frames_apart: int) -> float:
        return max(self.min_similarity_floor, self.min_similarity - self.similarity_drop * (max(frames_apart, 1) - 1))


class IouTracker:
    """``update`` after each detection; ``visible`` between detections (boxes carried unchanged)."""

    def __init__(self, options: TrackerOptions = TrackerOptions()) -> None:
        self.options = options
        self.tracks: list[Track] = []
        self._next_id = 1

    def _continues(self, track: Track, box: Box, signature: np.ndarray | None, frames_apart: int) -> bool:
        o = self.options
        return not jumped(track.box, box, o.max_shift, o.max_scale) and (
            similarity(track.signature, signature) >= o.similarity_needed(frames_apart)
        )

    def update(
        self, faces: list[Face], signatures: list[np.ndarray] | None = None, frames_apart: int = 1
    ) -> tuple[list[Track], list[int]]:
        """Match ``faces`` to tracks; returns the tracks seen now (in ``faces`` order) and the ids that ended.

        ``signatures`` (``appearance_signature`` of each face) and ``frames_apart`` (frames since the previous
        detection) let a changed face cut its track; without them only boxes are compared."""
        sigs = signatures if signatures is not None else [None] * len(faces)
        matched: dict[int, Track] = {}
        used: set[int] = set()
        if self.tracks and faces:
            old = np.array([t.box for t in self.tracks], np.float32)
            scores = np.stack([iou(np.array(f.box, np.float32), old) for f in faces])
            for flat in np.argsort(-scores, axis=None, kind="stable"):
                fi, ti = divmod(int(flat), len(self.tracks))
                if scores[fi, ti] < self.options.iou_threshold:
                    break
                if fi in matched or ti in used or not self._continues(
                    self.tracks[ti], faces[fi].box, sigs[fi], frames_apart
                ):
                    continue
                matched[fi] = self.tracks[ti]
                used.add(ti)
        seen: list[Track] = []
        for fi, face in enumerate(faces):
            track = matched.get(fi)
            if track is None:
                track = Track(self._next_id, face.box, face.score, hits=0)
                self._next_id += 1
                self.tracks.append(track)
            track.box, track.score, track.missed, track.signature = face.box, face.score, 0, sigs[fi]
            track.hits += 1
            seen.append(track)
        seen_ids = {t.id for t in seen}
        for t in self.tracks:
            if t.id not in seen_ids:
                t.missed += 1
        ended = [t.id for t in self.tracks if t.missed > self.options.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.options.max_missed]
        return seen, ended

    def visible(self) -> list[Track]:
        """Tracks found by the latest detection: what is on screen between two detections."""
        return [t for t in self.tracks if t.missed == 0]
