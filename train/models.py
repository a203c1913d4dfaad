"""The two liveness classifiers. Both take raw 0-255 RGB pixels as float and normalise inside the graph
(the project-wide convention), so an int8 export can take the camera's bytes directly.

Outputs are softmax probabilities over ``LABELS`` (index 1 = real), the order the runtime expects.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import keras
from keras import layers



LABELS = ["spoof", "real"]
BN_MOMENTUM = 0.9
MODEL_NAMES = ("livenessnet", "mobilenetv3")
DEFAULT_SIZES = {"livenessnet": 32, "mobilenetv3": 96}


@contextlib.contextmanager
def numpy2_deprecations_hushed() -> Iterator[None]:
    """Keras 3 reads variables with ``np.array(variable)`` (saving, ``get_weights``, ReduceLROnPlateau), which
    NumPy 2 flags as deprecated once per variable: Keras' issue and harmless. Hushed around those calls,
    where it arises, rather than in the test configuration (it ended every test run with ~280 warnings)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning)
        yield


def _conv_block(x, filters: int):
    """Two 3x3 conv -> ReLU -> BN, then pool and dropout: the PyImageSearch LivenessNet block."""
    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.MaxPooling2D(2)(x)
    return layers.Dropout(0.25)(x)


def build_livenessnet(size: int = 32) -> keras.Model:
    """PyImageSearch's small LivenessNet (2 conv blocks of 16/32 filters, Dense 64), with Rescaling in front."""
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    x = _conv_block(x, 16)
    x = _conv_block(x, 32)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="livenessnet")


def build_mobilenetv3(size: int = 96) -> keras.Model:
    """MobileNetV3Small, minimalistic (ReLU, no SE, no hard-swish) so int8 export stays free of Q/DQ-heavy
    activations; its built-in Rescaling takes 0-255 input. Trained from scratch: no weights are downloaded."""
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3),
        include_top=False,
        weights=None,
        minimalistic=True,
        include_preprocessing=True,
    )
    _set_bn_momentum(backbone, BN_MOMENTUM)
    x = layers.GlobalAveragePooling2D()(backbone.output)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(backbone.input, outputs, name="mobilenetv3")


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Keras' default 0.999 makes moving statistics lag far behind short trainings (bad eval accuracy)."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


BUILDERS: dict[str, Callable[[int], keras.Model]] = {
    "livenessnet": build_livenessnet,
    "mobilenetv3": build_mobilenetv3,
}


def build_model(name: str, size: int) -> keras.Model:
    """The model called ``name`` at ``size`` x ``size`` input."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return BUILDERS[name](size)
