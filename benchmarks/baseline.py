"""The classic tutorial pipeline this project replaces, kept only as the bench's yardstick.

OpenCV's ResNet-10 SSD (300x300, Caffe) through ``cv2.dnn`` on every frame, then the LivenessNet ``.keras``
model through Keras ``model.predict`` once per face on the tight face box, as the well-known liveness
tutorials do. It needs TensorFlow (the ``[train]`` extra), imported only when this pipeline is built.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ..extras import require_train_extra, tensorflow_available  # noqa: F401 (latency.py reads it here)
from ..runtime.errors import ModelError
from ..runtime.preprocessing import Preprocessing
from ..runtime.types import FaceResult, FrameResult, StageTimes
from .timer import ms_since

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
SSD_PROTOTXT = BASELINE_DIR / "deploy.prototxt.txt"
SSD_WEIGHTS = BASELINE_DIR / "res10_300x300_ssd_iter_140000.caffemodel"
SSD_SIZE = 300
SSD_MEAN = (104.0, 177.0, 123.0)
SSD_MIN_CONFIDENCE = 0.5


class ClassicPipeline:
    """SSD face detection + per-face Keras ``predict``; ``process`` returns the runtime's ``FrameResult``."""

    def __init__(self, net, model, preprocessing: Preprocessing, labels: list[str], threshold: float) -> None:
        self.net = net
        self.model = model
        self.preprocessing = preprocessing
        self.real_index = list(labels).index("real")
        self.threshold = threshold

    @classmethod
    def load(cls, keras_path: str | Path) -> "ClassicPipeline":
        """Load the SSD and a training run's ``model.keras`` (its ``config.json`` beside it says how to feed it)."""
        keras_path = Path(keras_path)
        config_path = keras_path.parent / "config.json"
        if not keras_path.is_file() or not config_path.is_file():
            raise ModelError(f"baseline needs {keras_path} and {config_path}")
        require_train_extra("the baseline")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        config = json.loads(config_path.read_text())
        net = cv2.dnn.readNetFromCaffe(str(SSD_PROTOTXT), str(SSD_WEIGHTS))
        model = keras.models.load_model(keras_path, compile=False)
        return cls(
            net,
            model,
            Preprocessing.from_dict(config["preprocessing"]),
            config.get("labels", ["spoof", "real"]),
            float(config.get("threshold", 0.5)),
        )

    def _detect(self, frame_bgr: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = frame_bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(frame_bgr, (SSD_SIZE, SSD_SIZE)), 1.0, (SSD_SIZE, SSD_SIZE), SSD_MEAN)
        self.net.setInput(blob)
        detections = self.net.forward()[0, 0]
        faces = []
        for row in detections[detections[:, 2] > SSD_MIN_CONFIDENCE]:
            x1, y1, x2, y2 = (row[3:7] * np.array([w, h, w, h])).astype(int)
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            if x2 > x1 and y2 > y1:
                faces.append(((int(x1), int(y1), int(x2), int(y2)), float(row[2])))
        return faces

    def process(self, frame_bgr: np.ndarray, source: str = "", frame_index: int = 0) -> FrameResult:
        t_start = time.perf_counter()
        faces = self._detect(frame_bgr)
        detect_ms = ms_since(t_start)
        crop_ms = infer_ms = decide_ms = 0.0
        results = []
        for track, (box, score) in enumerate(faces):
            t0 = time.perf_counter()
            x1, y1, x2, y2 = box
            x = self.preprocessing.apply(frame_bgr[y1:y2, x1:x2])[None]
            t1 = time.perf_counter()
            probs = self.model.predict(x, verbose=0)[0]
            t2 = time.perf_counter()
            p_real = float(probs[self.real_index])
            decision = "real" if p_real >= self.threshold else "spoof"
            results.append(FaceResult(track, tuple(map(float, box)), score, p_real, p_real, decision))
            crop_ms += (t1 - t0) * 1000.0
            infer_ms += (t2 - t1) * 1000.0
            decide_ms += ms_since(t2)
        times = StageTimes.measured(0.0, ms_since(t_start), detect_ms, crop_ms, infer_ms, decide_ms)
        return FrameResult(source, frame_index, results, times)
