"""Face embeddings for verification: dlib's ResNet face-recognition model (128-d, Euclidean distance).

Why this model: it runs on dlib's own CPU code (no TensorFlow, no ONNX conversion), ``dlib-bin`` has
Python 3.11 wheels for x86_64 and aarch64 (Raspberry Pi OS 64-bit), and the weights come from the
``face-recognition-models`` package, so nothing is downloaded at run time. Davis King released the
ResNet model and the 5-point landmark model into the public domain (the 68-point model in the same
package is not used: its training set forbids commercial use).

The face box comes from the project's BlazeFace detector; dlib's 5-point shape predictor places the eye
corners and nose inside it, and dlib aligns a 150x150 chip from them before the ResNet. The files' sha256
and the match threshold are in ``face_model.json`` next to this module, written by ``liveness-login evaluate``.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..runtime.errors import ModelError

MODEL_CARD = Path(__file__).resolve().parent / "face_model.json"
EMBEDDING_SIZE = 128


@dataclass(frozen=True)
class ModelCard:
    """What ``face_model.json`` records: which files, their sha256, and the chosen match threshold."""

    package: str
    recognition_file: str
    recognition_sha256: str
    landmarks_file: str
    landmarks_sha256: str
    metric: str
    threshold: float
    evaluation: dict

    @classmethod
    def load(cls, path: str | Path = MODEL_CARD) -> "ModelCard":
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise ModelError(f"cannot read the face model card {path}: {e}") from e

    def save(self, path: str | Path = MODEL_CARD) -> None:
        Path(path).write_text(json.dumps(self.__dict__, indent=2) + "\n")


def _models_dir() -> Path:
    """The folder of ``face-recognition-models`` (imported lazily: it is an optional extra)."""
    try:
        import face_recognition_models
    except ImportError as e:
        raise ModelError("face-recognition-models is not installed: pip install -e '.[login]'") from e
    return Path(face_recognition_models.__file__).resolve().parent / "models"


def _load_verified(load: Callable[[str], object], path: Path, sha256: str) -> object:
    """dlib loads only from a path: the file is read once, its bytes hashed, and those same bytes loaded from a
    private copy, so a file swapped after the check is never the one loaded (as the runtime does for models)."""
    if not path.is_file():
        raise ModelError(f"face model file not found: {path}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path.name}: sha256 does not match face_model.json (a different or corrupt file)")
    with tempfile.TemporaryDirectory(prefix="liveness-login-model-") as private:  # mode 0700
        copy = Path(private) / path.name
        copy.write_bytes(data)
        return load(str(copy))


class FaceEmbedder:
    """BlazeFace box -> 5 landmarks -> aligned chip -> 128-d embedding. Not thread-safe (one per worker)."""

    def __init__(self, card: ModelCard, models_dir: Path | None = None) -> None:
        try:
            import dlib
        except ImportError as e:
            raise ModelError("dlib is not installed: pip install -e '.[login]' (dlib-bin wheels)") from e
        folder = models_dir or _models_dir()
        self.card = card
        self._dlib = dlib
        self._shape = _load_verified(dlib.shape_predictor, folder / card.landmarks_file, card.landmarks_sha256)
        self._net = _load_verified(dlib.face_recognition_model_v1, folder / card.recognition_file,
                                   card.recognition_sha256)

    @classmethod
    def load(cls, card_path: str | Path = MODEL_CARD) -> "FaceEmbedder":
        return cls(ModelCard.load(card_path))

    @property
    def threshold(self) -> float:
        return self.card.threshold

    def embed(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The embedding of the face in ``box`` (x1, y1, x2, y2 in frame pixels)."""
        rgb = np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self._shape(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self._net.compute_face_descriptor(rgb, shape), np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings (rows of ``a`` against ``b``, or one against one)."""
    return np.linalg.norm(np.atleast_2d(a)[:, None, :] - np.atleast_2d(b)[None, :, :], axis=-1).squeeze()
