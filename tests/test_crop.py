import cv2
import numpy as np
import pytest

from liveness_edge.runtime.crop import context_crop, square_around
from liveness_edge.runtime.preprocessing import Preprocessing


def gradient(h: int = 200, w: int = 300) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=-1).astype(np.uint8)


def test_square_is_centred_and_scaled_by_the_longer_side():
    assert square_around((100, 100, 140, 120), 2.0) == (80, 70, 160, 150)


def test_crop_inside_frame_is_a_plain_resize_of_the_square():
    frame = gradient()
    crop = context_crop(frame, (120, 80, 160, 120), 1.0, 40)
    assert crop.square == (120, 80, 160, 120)
    assert crop.inside_fraction == 1.0
    np.testing.assert_array_equal(crop.image, frame[80:120, 120:160])


def test_crop_at_the_border_is_padded_black_and_reports_the_inside_fraction():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = context_crop(frame, (0, 0, 20, 20), 2.0, 40)  # square (-10, -10, 30, 30)
    assert crop.inside_fraction == pytest.approx(30 * 30 / 40 / 40)
    assert crop.image.shape == (40, 40, 3)
    assert crop.image[:10, :, :].max() == 0 and crop.image[:, :10, :].max() == 0
    assert crop.image[10:, 10:, :].min() == 200


def test_crop_entirely_outside_is_black_with_zero_inside():
    crop = context_crop(np.full((50, 50, 3), 255, np.uint8), (200, 200, 220, 220), 1.0, 16)
    assert crop.inside_fraction == 0.0 and crop.image.max() == 0


def test_preprocessing_resizes_swaps_to_rgb_and_keeps_raw_pixel_values():
    pre = Preprocessing(size=16, context=2.7)
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    x = pre.apply(bgr)
    assert x.shape == (16, 16, 3) and x.dtype == np.float32
    assert (x[..., 2] == 255).all() and (x[..., 0] == 0).all()
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_preprocessing_rejects_unknown_colour_order():
    with pytest.raises(ValueError):
        Preprocessing(size=32, context=2.0, color_order="YUV")


def test_large_shrinks_stay_close_to_a_single_area_resize():
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
    crop = context_crop(frame, (100, 0, 580, 480), 1.0, 32)
    direct = cv2.resize(frame[0:480, 100:580], (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(crop.image.astype(float) - direct).mean() < 1.5
