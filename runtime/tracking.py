"""IoU tracking: each face keeps an id across frames, so its scores can be smoothed on their own.

Greedy matching by IoU is enough here: faces in front of a door or a laptop move little between detections,
and a face that is lost for longer than ``max_missed`` detections starts a new track (and a new warm-up).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detector import iou
from .types import Face


@dataclass
class Track:
    """A face followed over time. ``box`` and ``score`` are from its latest matched detection."""

    id: int
    box: tuple[float, float, float, float]
    score: float
    hits: int = 1
    missed: int = 0

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True)
class TrackerOptions:
    """Minimum IoU to continue a track, and how many detections in a row a track may miss before it ends."""

    iou_threshold: float = 0.3
    max_missed: int = 2


class IouTracker:
    """``update`` after each detection; ``visible`` between detections (boxes carried unchanged)."""

    def __init__(self, options: TrackerOptions = TrackerOptions()) -> None:
        self.options = options
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 1

    def update(self, faces: list[Face]) -> tuple[list[Track], list[int]]:
        """Match ``faces`` to tracks; returns the tracks seen now (in ``faces`` order) and the ids that ended."""
        matched: dict[int, Track] = {}
        used: set[int] = set()
        if self.tracks and faces:
            old = np.array([t.box for t in self.tracks], np.float32)
            scores = np.stack([iou(np.array(f.box, np.float32), old) for f in faces])
            for flat in np.argsort(-scores, axis=None, kind="stable"):
                fi, ti = divmod(int(flat), len(self.tracks))
                if scores[fi, ti] < self.options.iou_threshold:
                    break
                if fi in matched or ti in used:
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
            track.box, track.score, track.missed = face.box, face.score, 0
            track.hits += 1
            seen.append(track)
        ended: list[int] = []
        seen_ids = {t.id for t in seen}
        for t in self.tracks:
            if t.id not in seen_ids:
                t.missed += 1
        for t in self.tracks:
            if t.missed > self.options.max_missed:
                ended.append(t.id)
        self.tracks = [t for t in self.tracks if t.missed <= self.options.max_missed]
        return seen, ended

    def visible(self) -> list[Track]:
        """Tracks found by the latest detection: what is on screen between two detections."""
        return [t for t in self.tracks if t.missed == 0]
