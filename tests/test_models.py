"""The Keras model builders and the augmentation: shapes, softmax output, normalisation inside the graph."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from liveness_edge.train.augment import AugmentOptions, augment_dataset, augment_image  # noqa: E402
from liveness_edge.train.models import LABELS, build_livenessnet, build_mobilenetv3, build_model  # noqa: E402


@pytest.fixture(scope="module", params=[("livenessnet", 32), ("mobilenetv3", 64)], ids=["livenessnet", "mobilenetv3"])
def model_and_size(request):
    name, size = request.param
    return build_model(name, size), size


def test_labels_are_spoof_then_real():
    assert LABELS == ["spoof", "real"]


def test_output_is_a_softmax_over_two_classes(model_and_size):
    model, size = model_and_size
    x = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (3, 2)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert model.input_shape == (None, size, size, 3)


def test_rescaling_is_inside_the_graph(model_and_size):
    """Raw 0-255 input must be normalised by the model itself: a Rescaling layer by 1/255 precedes every conv."""
    model, size = model_and_size
    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert rescaling, "no Rescaling layer"
    first_conv = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D))
    assert model.layers.index(rescaling[0]) < first_conv
    assert 255.0 * rescaling[0].scale + rescaling[0].offset == pytest.approx(1.0)  # 255 -> 1: expects 0-255 input
    white = np.full((1, size, size, 3), 255.0, np.float32)
    assert np.isfinite(np.asarray(model(white, training=False))).all()


def test_batchnorm_momentum_is_short(model_and_size):
    model, _ = model_and_size
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


def test_mobilenetv3_is_minimalistic():
    """No hard-swish / squeeze-excite (they quantise into Q/DQ-heavy graphs); the export relies on it."""
    model = build_mobilenetv3(64)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Multiply)]
    assert not any("hard" in str(getattr(layer, "activation", "")).lower() for layer in model.layers)


def test_livenessnet_is_small():
    assert build_livenessnet(32).count_params() < 500_000


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 32)


def test_augmentation_keeps_shape_and_range_and_is_seeded():
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (48, 48, 3)).astype(np.float32))
    seed = tf.constant([3, 4], tf.int64)
    a, b = augment_image(image, seed, AugmentOptions()), augment_image(image, seed, AugmentOptions())
    assert a.shape == image.shape
    assert 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 255.0
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = augment_image(image, tf.constant([5, 6], tf.int64), AugmentOptions())
    assert not np.array_equal(a.numpy(), other.numpy())


def test_augmented_dataset_is_reproducible_and_changes_per_epoch():
    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    y = np.arange(4)

    def epochs(seed: int) -> list[np.ndarray]:
        ds = augment_dataset(tf.data.Dataset.from_tensor_slices((x, y)), AugmentOptions(), seed).batch(4)
        return [next(iter(ds))[0].numpy() for _ in range(2)]

    first, second = epochs(7), epochs(7)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], first[1])
