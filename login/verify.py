"""The server-side decision on a burst of frames: liveness over the sequence, then the face match.

Fail closed: every frame must hold exactly one face, all on one track, no frame may be judged ``spoof``,
and every frame after the tracker's warm-up must be ``real``; anything else (including ``uncertain`` from a
quality check) refuses. Only then are a few frames embedded and matched. The reasons are short codes the
page turns into words; the scores go to the attempts table and the logs, never to the client.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from time import perf_counter

import numpy as np

from ..runtime.images import ImageProblem, decode_image, image_size
from ..runtime.pipeline import LivenessPipeline, PipelineOptions
from ..runtime.types import Decision, RunningMode
from .embedding import FaceEmbedder, distance

NO_FACE, SEVERAL_FACES, NOT_LIVE, UNCLEAR = "no_face", "several_faces", "not_live", "unclear"
NOT_SAME_PERSON, BAD_FRAMES, OK = "not_same_person", "bad_frames", "ok"


@dataclass(frozen=True)
class FrameLimits:
    """What one upload may hold; frames beyond these are refused before any model runs."""

    login_frames: int = 10
    enrol_frames: int = 40
    min_frames: int = 5
    max_frame_bytes: int = 1_000_000
    max_side: int = 1280  # the page sends 640x480; 40 frames of 1280 px are 200 MB decoded
    embed_login: int = 2
    embed_enrol: int = 5

    @property
    def max_upload_bytes(self) -> int:
        return self.enrol_frames * self.max_frame_bytes + 64 * 1024


@dataclass(frozen=True)
class BurstResult:
    """What the pipeline and the embedder said about one burst (scores stay on the server)."""

    reason: str
    frames: int
    p_real_min: float | None = None
    embeddings: np.ndarray | None = field(default=None, repr=False)
    ms: float = 0.0

    @property
    def live(self) -> bool:
        return self.reason == OK


BROWSER_FORMATS = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n")  # JPEG and PNG: what a canvas encodes; no other decoder is reached


def decode_frame(data: bytes, limits: FrameLimits) -> np.ndarray | None:
    """A JPEG/PNG upload as BGR, or None when it is too large (in bytes, or in pixels as its header declares,
    checked before decoding), truncated or undecodable. Decoding is the runtime's (``runtime.images``)."""
    if not data or len(data) > limits.max_frame_bytes or not data.startswith(BROWSER_FORMATS):
        return None
    size = image_size(data)
    if size is None or not 32 <= min(size) <= max(size) <= limits.max_side:
        return None
    try:
        return decode_image(data, max_pixels=limits.max_side**2)
    except ImageProblem:
        return None


def _spread(n: int, k: int) -> list[int]:
    """``k`` frame indices spread over ``n`` frames, the last one included (the face is settled by then)."""
    k = min(k, n)
    return sorted(n - 1 - (j * n) // k for j in range(k))


class Verifier:
    """The loaded detector, liveness model and embedder, used by one burst at a time (behind a lock).

    Each burst is its own stream: a fresh ``LivenessPipeline`` in ``RunningMode.VIDEO`` over the same loaded
    detector and model, so no track or score history carries from one attempt to the next.
    """

    def __init__(self, pipeline: LivenessPipeline, embedder: FaceEmbedder) -> None:
        self.pipeline = pipeline
        self.embedder = embedder
        self.options = replace(pipeline.options, running_mode=RunningMode.VIDEO)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, options: PipelineOptions = PipelineOptions(running_mode=RunningMode.VIDEO)) -> "Verifier":
        return cls(LivenessPipeline.from_manifest(options=options), FaceEmbedder.load())

    @property
    def threshold(self) -> float:
        return self.embedder.threshold

    def check(self, frames: list[np.ndarray], embed: int) -> BurstResult:
        """Liveness over the whole burst, then ``embed`` embeddings of the tracked face if it is live."""
        t0 = perf_counter()
        with self._lock:
            reason, boxes, p_min = self._liveness(frames)
            vectors = None
            if reason == OK and embed > 0:
                picks = _spread(len(frames), embed)
                vectors = np.stack([self.embedder.embed(frames[i], boxes[i]) for i in picks])
        return BurstResult(reason, len(frames), p_min, vectors, (perf_counter() - t0) * 1e3)

    def _liveness(self, frames: list[np.ndarray]) -> tuple[str, list, float | None]:
        stream = LivenessPipeline(self.pipeline.detector, self.pipeline.model, self.options)
        warmup = self.options.smoothing.warmup
        track, boxes, scores = None, [], []
        for i, frame in enumerate(frames):
            faces = stream.process(frame, frame_index=i).faces
            if not faces:
                return NO_FACE, boxes, None
            if len(faces) > 1:
                return SEVERAL_FACES, boxes, None
            face = faces[0]
            track = face.track if track is None else track
            scores.append(face.p_real)
            if face.track != track:
                return UNCLEAR, boxes, min(scores)
            if face.decision == Decision.SPOOF:
                return NOT_LIVE, boxes, min(scores)
            if face.decision != Decision.REAL and i >= warmup - 1:
                low_score = face.p_real < stream.threshold
                return (NOT_LIVE if low_score else UNCLEAR), boxes, min(scores)
            boxes.append(face.box)
        return OK, boxes, min(scores)


def match_distance(probe: np.ndarray, enrolled: np.ndarray) -> float:
    """Median over the probe frames of the distance to the closest enrolled embedding."""
    d = np.atleast_2d(distance(probe, enrolled)).reshape(len(probe), len(enrolled))
    return float(np.median(d.min(axis=1)))


def consistent(vectors: np.ndarray, threshold: float) -> bool:
    """All enrolment embeddings show one person (no swap of faces during the capture)."""
    d = np.atleast_2d(distance(vectors, vectors))
    return bool(d.max() <= threshold)
