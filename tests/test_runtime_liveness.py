"""``LivenessModel`` on fake backends: one- and two-output heads, label order, uint8 and quantized inputs and
outputs, and the threshold it carries."""
from __future__ import annotations

import numpy as np
import pytest

from liveness_edge.runtime.backends import TensorInfo
from liveness_edge.runtime.liveness import LivenessModel
from liveness_edge.runtime.preprocessing import Preprocessing

PRE = Preprocessing(size=8, context=1.5)


class FakeBackend:
    """Records its input and returns ``output``."""

    def __init__(self, output: np.ndarray, in_info: TensorInfo, out_info: TensorInfo) -> None:
        self.path, self.inputs, self.outputs = "fake", [in_info], [out_info]
        self.output = output
        self.seen: np.ndarray | None = None

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.seen = x
        return [self.output]


def float_in() -> TensorInfo:
    return TensorInfo("x", (1, 8, 8, 3), np.dtype(np.float32))


def crop() -> np.ndarray:
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0], image[..., 2] = 10, 200  # BGR: blue 10, red 200
    return image


@pytest.mark.parametrize("labels, expected", [(["spoof", "real"], 0.8), (["real", "spoof"], 0.2)])
def test_one_output_sigmoid_follows_the_label_order(labels, expected):
    backend = FakeBackend(np.array([[0.8]], np.float32), float_in(), TensorInfo("y", (1, 1), np.dtype(np.float32)))
    assert LivenessModel(backend, PRE, labels).predict(crop()) == pytest.approx(expected)


def test_two_output_softmax_reads_the_real_column_and_resizes_to_the_input():
    backend = FakeBackend(np.array([[0.3, 0.7]], np.float32), float_in(), TensorInfo("y", (1, 2), np.dtype(np.float32)))
    assert LivenessModel(backend, PRE, ["spoof", "real"]).predict(crop()) == pytest.approx(0.7)
    x = backend.seen
    assert x.shape == (1, 8, 8, 3) and x.dtype == np.float32
    assert x[0, 0, 0].tolist() == [200.0, 0.0, 10.0]  # RGB order, raw 0-255 (scale 1, offset 0)


def test_uint8_input_gets_the_pixels_as_they_are_and_quantized_output_is_dequantized():
    in_info = TensorInfo("x", (1, 8, 8, 3), np.dtype(np.uint8), 1.0, 0)
    out_info = TensorInfo("y", (1, 2), np.dtype(np.uint8), 1 / 256, 0)
    backend = FakeBackend(np.array([[64, 192]], np.uint8), in_info, out_info)
    p = LivenessModel(backend, PRE, ["spoof", "real"]).predict(crop())
    assert p == pytest.approx(0.75)
    assert backend.seen.dtype == np.uint8 and backend.seen[0, 0, 0].tolist() == [200, 0, 10]


@pytest.mark.parametrize("dtype, zero", [(np.uint8, 0), (np.int8, -128)])
def test_a_quantized_softmax_that_misses_sum_one_is_not_read_as_logits(dtype, zero):
    """P(real) 1.0 is stored as 255/256 and the other class as 0: the sum 0.996 must not trigger the logits
    softmax (which turned it into 0.73, below MiniFASNet's threshold)."""
    out_info = TensorInfo("y", (1, 2), np.dtype(dtype), 1 / 256, zero)
    backend = FakeBackend(np.array([[0 + zero, 255 + zero]], dtype), float_in(), out_info)
    assert LivenessModel(backend, PRE, ["spoof", "real"]).predict(crop()) == pytest.approx(255 / 256)


def test_quantized_logits_still_get_a_softmax():
    out_info = TensorInfo("y", (1, 3), np.dtype(np.int8), 0.1, 0)
    backend = FakeBackend(np.array([[-20, 10, -20]], np.int8), float_in(), out_info)
    e = np.exp([-2.0, 1.0, -2.0])
    assert LivenessModel(backend, PRE, ["spoof", "real", "mask"]).predict(crop()) == pytest.approx(e[1] / e.sum())


def test_int8_input_is_quantized_with_its_scale_and_zero_point():
    in_info = TensorInfo("x", (1, 8, 8, 3), np.dtype(np.int8), 2.0, -100)
    backend = FakeBackend(np.array([[0.5, 0.5]], np.float32), in_info, TensorInfo("y", (1, 2), np.dtype(np.float32)))
    LivenessModel(backend, PRE, ["spoof", "real"]).predict(crop())
    assert backend.seen.dtype == np.int8 and backend.seen[0, 0, 0].tolist() == [0, -100, -95]  # x / 2 - 100


def test_the_model_carries_its_threshold_and_refuses_impossible_ones():
    backend = FakeBackend(np.array([[0.5, 0.5]], np.float32), float_in(), TensorInfo("y", (1, 2), np.dtype(np.float32)))
    assert LivenessModel(backend, PRE, ["spoof", "real"], threshold=0.46).threshold == 0.46
    for bad in (0.0, 1.0, float("nan"), -0.1):
        with pytest.raises(ValueError, match="threshold"):
            LivenessModel(backend, PRE, ["spoof", "real"], threshold=bad)
    with pytest.raises(ValueError, match="no 'real' class"):
        LivenessModel(backend, PRE, ["spoof", "live"])
