"""MediaPipe face mesh (468 points), eyelids refined by MediaPipe's iris model as its iris graph does:
rotated ROI -> backend -> points back in frame pixels.

The face ROI follows ``face_detection_front_detection_to_roi``: a square of 1.5x the box's longer side around
the box centre, turned so the eyes are level when the detector's eye keypoints are given. The mesh alone
barely moves its eyelid points when an eye shuts (EAR 0.30 -> 0.28 on a real blink), so each eye is re-read
by the iris model on a 64x64 crop (``iris_landmark_landmarks_to_roi``: 2.3x the corner-to-corner square,
turned along the corners; the image-right eye mirrored), whose contour follows the lids (0.30 -> 0.07).
These models only run while an active challenge needs them (``runtime/challenge.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .backends import Backend, open_model
from .detector import FACE_DETECTOR_DIR
from .errors import ManifestError
from .manifest import Manifest
from .types import LandmarkVariant

LANDMARK_FILE = "face_landmark.tflite"
IRIS_FILE = "iris_landmark.tflite"
LANDMARK_VARIANT, IRIS_VARIANT = LandmarkVariant.MESH, LandmarkVariant.IRIS  # their manifest variants
LANDMARK_MODEL_FILES = {LANDMARK_VARIANT: LANDMARK_FILE, IRIS_VARIANT: IRIS_FILE}
N_POINTS = 468
N_EYE_POINTS = 71
ROI_SCALE = 1.5
EYE_ROI_SCALE = 2.3
# The iris model's first 16 contour points, as face mesh indices: image-left eye (not mirrored), image-right eye.
EYE_CONTOURS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
)
EYE_CORNERS = ((33, 133), (362, 263))  # left to right in the image

# Mesh indices (MediaPipe canonical face model; "right" = the person's own right, image left on an
# unmirrored camera). Eyes in EAR order: outer corner, two upper lid points, inner corner, two lower lid points.
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (263, 387, 385, 362, 380, 373)
NOSE_TIP = 1
RIGHT_CHEEK = 234  # face contour at the ear line
LEFT_CHEEK = 454
FOREHEAD = 10
CHIN = 152


@dataclass(frozen=True)
class Landmarks:
    """``points`` (468, 3): x, y in frame pixels, z relative depth in the same pixel scale; ``presence`` is the
    model's probability that its ROI holds a face."""

    points: np.ndarray
    presence: float


def _output_index(backend: Backend, size: int) -> int:
    return next(i for i, o in enumerate(backend.outputs) if int(np.prod(o.shape)) == size)


class LandmarkModel:
    """Face mesh (+ iris model for the eyelids, when given) on any backend. ``predict(frame, box)`` returns
    the points of the face in ``box``."""

    def __init__(self, backend: Backend, iris: Backend | None = None) -> None:
        self.backend = backend
        self.iris = iris
        self._points_out = _output_index(backend, N_POINTS * 3)
        self._flag_out = _output_index(backend, 1)
        self.size = int(backend.inputs[0].shape[1])
        self._input = np.zeros((1, self.size, self.size, 3), np.float32)
        self._warped = np.zeros((self.size, self.size, 3), np.uint8)
        if iris is not None:
            self._eye_out = _output_index(iris, N_EYE_POINTS * 3)
            self.eye_size = int(iris.inputs[0].shape[1])
            self._eye_input = np.zeros((1, self.eye_size, self.eye_size, 3), np.float32)
            self._eye_warped = np.zeros((self.eye_size, self.eye_size, 3), np.uint8)

    @classmethod
    def from_file(
        cls, path: str | Path | None = None, iris_path: str | Path | None = None, threads: int = 1
    ) -> "LandmarkModel":
        """Open the landmark model files (default: the shipped ``.tflite`` files)."""
        return cls(open_model(path or FACE_DETECTOR_DIR / LANDMARK_FILE, threads),
                   open_model(iris_path or FACE_DETECTOR_DIR / IRIS_FILE, threads))

    def predict(
        self, frame_bgr: np.ndarray, box: tuple[float, float, float, float], keypoints: np.ndarray | None = None
    ) -> Landmarks:
        x, inverse, scale = self._preprocess(frame_bgr, box, keypoints)
        outputs = self.backend.run(self.backend.inputs[0].quantize(x))
        marks = self._postprocess(outputs, inverse, scale)
        if self.iris is not None:
            for eye in range(2):
                x, inverse = self._eye_preprocess(frame_bgr, marks.points, eye)
                outputs = self.iris.run(self.iris.inputs[0].quantize(x))
                self._eye_postprocess(outputs, inverse, marks.points, eye)
        return marks

    def _preprocess(
        self, frame_bgr: np.ndarray, box: tuple[float, float, float, float], keypoints: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """One affine warp of the (rotated) square ROI into the input, BGR -> RGB, scaled to [0, 1]."""
        x1, y1, x2, y2 = box
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        side = max(x2 - x1, y2 - y1, 1.0) * ROI_SCALE
        angle = 0.0
        if keypoints is not None and len(keypoints) >= 2:
            (ex0, ey0), (ex1, ey1) = keypoints[0], keypoints[1]
            angle = math.degrees(math.atan2(ey1 - ey0, ex1 - ex0))
        scale = self.size / side
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += (self.size / 2.0 - cx, self.size / 2.0 - cy)
        cv2.warpAffine(frame_bgr, m, (self.size, self.size), self._warped, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT)
        rgb = cv2.cvtColor(self._warped, cv2.COLOR_BGR2RGB)
        np.multiply(rgb, np.float32(1.0 / 255.0), out=self._input[0], casting="unsafe")
        return self._input, cv2.invertAffineTransform(m), scale

    def _postprocess(self, outputs: list[np.ndarray], inverse: np.ndarray, scale: float) -> Landmarks:
        """Input pixels -> frame pixels through the inverse warp; the face flag is a logit."""
        raw = self.backend.outputs[self._points_out].dequantize(outputs[self._points_out]).reshape(N_POINTS, 3)
        flag = float(self.backend.outputs[self._flag_out].dequantize(outputs[self._flag_out]).reshape(-1)[0])
        points = np.empty((N_POINTS, 3), np.float32)
        points[:, :2] = raw[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        points[:, 2] = raw[:, 2] / scale
        return Landmarks(points, 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, flag)))))

    def _eye_preprocess(self, frame_bgr: np.ndarray, points: np.ndarray, eye: int) -> tuple[np.ndarray, np.ndarray]:
        """The eye's square (2.3x its corner distance, turned along the corners) into the iris input, [0, 1];
        the image-right eye mirrored, as the model was trained on one side only."""
        a, b = (points[i, :2].astype(np.float64) for i in EYE_CORNERS[eye])
        centre = (a + b) / 2.0
        size = self.eye_size
        scale = size / max(float(np.linalg.norm(b - a)) * EYE_ROI_SCALE, 1.0)
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])),
                                    math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])), scale)
        m[:, 2] += size / 2.0 - centre
        if eye == 1:
            m = np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
        cv2.warpAffine(frame_bgr, m, (size, size), self._eye_warped, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT)
        rgb = cv2.cvtColor(self._eye_warped, cv2.COLOR_BGR2RGB)
        np.multiply(rgb, np.float32(1.0 / 255.0), out=self._eye_input[0], casting="unsafe")
        return self._eye_input, cv2.invertAffineTransform(m)

    def _eye_postprocess(self, outputs: list[np.ndarray], inverse: np.ndarray, points: np.ndarray, eye: int) -> None:
        """Overwrite the mesh's 16 eyelid points of this eye with the iris model's contour."""
        raw = self.iris.outputs[self._eye_out].dequantize(outputs[self._eye_out]).reshape(N_EYE_POINTS, 3)
        contour = raw[: len(EYE_CONTOURS[eye]), :2]
        points[list(EYE_CONTOURS[eye]), :2] = contour @ inverse[:, :2].T + inverse[:, 2]


def landmarks_from_manifest(manifest: Manifest, backends: list[str], threads: int = 1) -> LandmarkModel:
    """The manifest's face mesh and iris files (sha256-checked) on the first of ``backends`` that has both."""
    for backend in backends:
        try:
            mesh, iris = (manifest.detector(v, backend) for v in (LANDMARK_VARIANT, IRIS_VARIANT))
        except ManifestError:
            continue
        (mesh_path, mesh_bytes), (iris_path, iris_bytes) = manifest.verified_bytes(mesh), manifest.verified_bytes(iris)
        return LandmarkModel(open_model(mesh_path, threads, mesh_bytes), open_model(iris_path, threads, iris_bytes))
    raise ManifestError(f"manifest has no face landmark + iris models for {' or '.join(backends)}; "
                        "run export-models")
