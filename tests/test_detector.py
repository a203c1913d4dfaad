from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.backends import TensorInfo, open_model
from liveness_edge.runtime.detector import (
    ANCHORS,
    DetectorOptions,
    FaceDetector,
    generate_anchors,
    weighted_nms,
)
from liveness_edge.runtime.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
ONNX_SHORT = REPO / "artifacts" / "detector" / "blazeface_short.onnx"


class ScriptedBackend:
    """Returns fixed raw outputs, so decoding can be checked against hand-computed boxes."""

    def __init__(self, boxes: np.ndarray, logits: np.ndarray):
        n = len(logits)
        self.path = "scripted"
        self.inputs = [TensorInfo("in", (1, 128, 128, 3), np.dtype(np.float32))]
        self.outputs = [
            TensorInfo("regressors", (1, n, 16), np.dtype(np.float32)),
            TensorInfo("classificators", (1, n, 1), np.dtype(np.float32)),
        ]
        self._out = [boxes[None].astype(np.float32), logits.reshape(1, n, 1).astype(np.float32)]
        self.seen = None

    def run(self, x):
        self.seen = x.copy()
        return self._out


def test_anchor_counts_and_first_centres_match_mediapipe():
    short, full = generate_anchors(ANCHORS["short"]), generate_anchors(ANCHORS["full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])  # two anchors per cell on the stride-8 layer
    np.testing.assert_allclose(short[512], [0.5 / 8, 0.5 / 8])  # the stride-16 layers start after 16*16*2
    np.testing.assert_allclose(short[512 + 5], short[512])  # ... with six anchors per cell
    np.testing.assert_allclose(full[-1], [47.5 / 48, 47.5 / 48])


def test_decoding_undoes_anchor_offset_and_letterbox():
    anchors = generate_anchors(ANCHORS["short"])
    boxes = np.zeros((896, 16), np.float32)
    logits = np.full(896, -50.0)
    k = 600
    boxes[k, :4] = [4.0, -2.0, 32.0, 24.0]  # centre offset (input px), width, height
    boxes[k, 4:6] = [1.0, 1.0]  # first keypoint offset
    logits[k] = 3.0
    backend = ScriptedBackend(boxes, logits)
    frame = np.zeros((100, 200, 3), np.uint8)  # letterboxed: scale 0.64, 64 rows, 32 px pad on top
    faces = FaceDetector(backend).detect(frame)
    assert len(faces) == 1
    s, pad_y = 128 / 200, 32
    cx, cy = anchors[k] * 128 + [4.0, -2.0]
    expected = [(cx - 16) / s, (cy - 12 - pad_y) / s, (cx + 16) / s, (cy + 12 - pad_y) / s]
    np.testing.assert_allclose(faces[0].box, expected, rtol=1e-5)
    assert faces[0].score == pytest.approx(1 / (1 + np.exp(-3.0)))
    kp = (anchors[k] * 128 + 1.0 - [0, pad_y]) / s
    np.testing.assert_allclose(faces[0].keypoints[0], kp, rtol=1e-5)
    assert backend.seen.min() >= -1.0 and backend.seen.max() <= 1.0


def test_below_threshold_scores_give_no_faces():
    backend = ScriptedBackend(np.zeros((896, 16)), np.full(896, -1.0))
    assert FaceDetector(backend, DetectorOptions(min_score=0.5)).detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_boxes():
    rows = np.array(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],  # IoU with the first ~0.68: merged
            [50.0, 50.0, 60.0, 60.0],  # far away: kept on its own
        ]
    )
    scores = np.array([0.9, 0.3, 0.8])
    kept, kept_scores = weighted_nms(rows, scores, 0.3)
    assert len(kept) == 2
    np.testing.assert_allclose(kept[0], (rows[0] * 0.9 + rows[1] * 0.3) / 1.2)
    np.testing.assert_allclose(kept[1], rows[2])
    np.testing.assert_allclose(kept_scores, [0.9, 0.8])


def test_weighted_nms_of_nothing_is_empty():
    kept, scores = weighted_nms(np.zeros((0, 16)), np.zeros(0), 0.3)
    assert kept.shape == (0, 16) and scores.shape == (0,)


def test_broken_model_files_give_model_errors(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelError):
        open_model(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(b"\x08\x07\x12\x04")
    with pytest.raises(ModelError):
        open_model(truncated)
    with pytest.raises(ModelError, match="not found"):
        open_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="unknown model format"):
        open_model(tmp_path / "model.pt")


def test_blank_frames_have_no_face():
    det = FaceDetector.from_file()
    for value in (0, 127, 255):
        assert det.detect(np.full((480, 640, 3), value, np.uint8)) == []


@pytest.mark.data
def test_finds_the_face_in_real_frames_on_both_backends(shared_data):
    nuaa = sorted((shared_data / "nuaa" / "real").glob("*.jpg"))[:3]
    full = sorted((shared_data / "jomariya" / "full_frames" / "real").glob("*"))[:2]
    detectors = {"tflite": FaceDetector.from_file()}
    if ONNX_SHORT.is_file():
        detectors["onnx"] = FaceDetector(open_model(ONNX_SHORT))
    for path in nuaa + full:
        frame = cv2.imread(str(path))
        results = {name: d.detect(frame) for name, d in detectors.items()}
        faces = results["tflite"]
        assert faces, f"no face found in {path.name}"
        x1, y1, x2, y2 = faces[0].box
        h, w = frame.shape[:2]
        assert 0.1 * w < x2 - x1 < 0.9 * w, path.name  # a face, not the whole frame or a speck
        eyes = faces[0].keypoints[:2]
        assert (eyes[:, 0] > x1).all() and (eyes[:, 0] < x2).all() and (eyes[:, 1] < (y1 + y2) / 2).all()
        for name, other in results.items():
            assert len(other) == len(faces), name
            np.testing.assert_allclose(other[0].box, faces[0].box, atol=0.02 * w)


@pytest.mark.data
def test_full_range_detector_finds_faces(shared_data):
    det = FaceDetector.from_file(options=DetectorOptions("full"))
    frame = cv2.imread(str(sorted((shared_data / "nuaa" / "real").glob("*.jpg"))[0]))
    assert len(det.detect(frame)) >= 1
