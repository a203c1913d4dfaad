"""The face mesh + iris wrapper on the shipped sample faces: backends agree, points land where faces have them."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.detector import FaceDetector
from liveness_edge.runtime.landmarks import (EYE_CONTOURS, LEFT_EYE, NOSE_TIP, RIGHT_EYE, LandmarkModel,
                                             Landmarks, landmarks_from_manifest)
from liveness_edge.runtime.manifest import DEFAULT_MANIFEST, Manifest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "artifacts" / "samples").glob("*/*.jpg"))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector.from_file()


@pytest.fixture(scope="module")
def tflite() -> LandmarkModel:
    return LandmarkModel.from_file()


@pytest.fixture(scope="module")
def onnx() -> LandmarkModel:
    return landmarks_from_manifest(Manifest.load(DEFAULT_MANIFEST), ["onnx"])


@pytest.fixture(scope="module")
def samples(detector):
    out = []
    for path in SAMPLES:
        image = cv2.imread(str(path))
        out.append((path.name, image, detector.detect(image)[0]))
    return out


def test_onnx_and_tflite_agree_on_sample_faces(samples, tflite, onnx):
    assert len(samples) == 4
    for name, image, face in samples:
        assert onnx.backend.path.endswith(".onnx") and onnx.iris.path.endswith(".onnx")
        a, b = tflite.predict(image, face.box, face.keypoints), onnx.predict(image, face.box, face.keypoints)
        # 1e-3 of the face width: far below a landmark's own jitter, far above float32 round-off
        assert np.abs(a.points[:, :2] - b.points[:, :2]).max() < 1e-3 * face.width, name
        assert abs(a.presence - b.presence) < 1e-4, name


def test_eye_and_nose_points_inside_the_box_where_the_detector_puts_them(samples, tflite):
    for name, image, face in samples:
        marks = tflite.predict(image, face.box, face.keypoints)
        x1, y1, x2, y2 = face.box
        assert marks.presence > 0.9, name
        right_eye = marks.points[list(RIGHT_EYE), :2].mean(axis=0)  # the person's right: image left
        left_eye = marks.points[list(LEFT_EYE), :2].mean(axis=0)
        nose = marks.points[NOSE_TIP, :2]
        for p in (right_eye, left_eye, nose):
            assert x1 < p[0] < x2 and y1 < p[1] < y2, name
        assert right_eye[0] < left_eye[0], name
        assert max(right_eye[1], left_eye[1]) < nose[1], name  # eyes above the nose tip
        assert (right_eye[1] + left_eye[1]) / 2 < (y1 + y2) / 2, name  # eyes in the upper half of the box
        # BlazeFace keypoints: 0 right eye, 1 left eye, 2 nose tip
        for point, keypoint in ((right_eye, 0), (left_eye, 1), (nose, 2)):
            assert np.linalg.norm(point - face.keypoints[keypoint]) < 0.15 * face.width, (name, keypoint)


def test_iris_model_replaces_the_eyelid_points(samples, tflite):
    _, image, face = samples[0]
    mesh_only = LandmarkModel(tflite.backend).predict(image, face.box, face.keypoints).points
    refined = tflite.predict(image, face.box, face.keypoints).points
    lids = [i for eye in EYE_CONTOURS for i in eye]
    others = np.setdiff1d(np.arange(len(refined)), lids)
    np.testing.assert_array_equal(mesh_only[others], refined[others])
    moved = np.linalg.norm(mesh_only[lids, :2] - refined[lids, :2], axis=1)
    assert moved.max() > 0 and moved.max() < 0.1 * face.width


def test_a_turned_face_is_followed_with_the_detector_keypoints(samples, detector, tflite):
    _, image, _ = samples[0]
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0), (w, h))
    face = detector.detect(turned)[0]
    marks = tflite.predict(turned, face.box, face.keypoints)
    right_eye = marks.points[list(RIGHT_EYE), :2].mean(axis=0)
    left_eye = marks.points[list(LEFT_EYE), :2].mean(axis=0)
    assert np.linalg.norm(right_eye - face.keypoints[0]) < 0.15 * face.width
    assert np.linalg.norm(left_eye - face.keypoints[1]) < 0.15 * face.width


def test_no_face_in_the_roi_gives_low_presence(tflite):
    wall = np.full((480, 640, 3), 180, np.uint8)
    marks = tflite.predict(wall, (200.0, 150.0, 400.0, 350.0))
    assert isinstance(marks, Landmarks) and marks.points.shape == (468, 3)
    assert marks.presence < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["landmarks", "iris"])
def test_export_converts_the_landmark_models_and_checks_them_against_the_tflite(tmp_path, variant):
    pytest.importorskip("tf2onnx", reason="the conversion needs the [train] extra")
    from liveness_edge.export.to_onnx import tflite_to_onnx
    from liveness_edge.export.verify import check_landmarks
    from liveness_edge.runtime.detector import FACE_DETECTOR_DIR
    from liveness_edge.runtime.landmarks import LANDMARK_MODEL_FILES

    tflite = FACE_DETECTOR_DIR / LANDMARK_MODEL_FILES[variant]
    onnx_path = tmp_path / f"{variant}.onnx"
    tflite_to_onnx(tflite, onnx_path, 17)
    faces = [cv2.imread(str(p)) for p in SAMPLES]
    check = check_landmarks(tflite, onnx_path, faces, onnx_path.name)
    assert check.n == 4 and check.max_rel_diff < 1e-4 and check.same_faces
    # the point check does look: with no tolerance at all, float32 round-off between the runtimes shows
    assert not check_landmarks(tflite, onnx_path, faces, onnx_path.name, max_point_px=0.0).same_faces
