"""The liveness classifiers. All take raw 0-255 RGB pixels as float and normalise inside the graph (the
project-wide convention), so an int8 export can take the camera's bytes directly.

Outputs are softmax probabilities over ``LABELS`` (index 1 = real), the order the runtime expects.
``minifasnet`` is Silent-Face-Anti-Spoofing's MiniFASNetV2 (Apache-2.0), built here layer by layer with the
layer names of the Keras port in ``../shared/pretrained/minifasnet`` so its weights load by name (``init``).
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
from keras import layers

LABELS = ["spoof", "real"]
BN_MOMENTUM = 0.9
MODEL_NAMES = ("livenessnet", "mobilenetv3", "minifasnet")
DEFAULT_SIZES = {"livenessnet": 32, "mobilenetv3": 96, "minifasnet": 80}
HEADS = (3, 2)
# MiniFASNetV2's channel plan (Silent-Face ``keep_dict['1.8M_']``): 49 widths, consumed block by block below.
MINIFASNET_V2_KEEP = (
    32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128, 231, 231, 128, 52, 52,
    128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308, 128, 26, 26, 128, 26, 26, 128, 512, 512,
)
# Stages in graph order: ``freeze`` = the last stage kept frozen while fine-tuning.
MINIFASNET_STAGES = (
    "conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep", "conv_6_dw",
    "gap", "linear", "bn", "prob", "prob2",
)
PRETRAINED_SIZE = 80


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


def _mf_conv(x, name: str, filters: int, kernel: int = 1, stride: int = 1, depthwise: bool = False,
             prelu: bool = True):
    """Conv (no bias) -> BN -> PReLU, PyTorch's symmetric padding as explicit ZeroPadding2D + valid conv."""
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}.pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, use_bias=False, name=f"{name}.conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, use_bias=False, name=f"{name}.conv")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name=f"{name}.bn")(x)
    return layers.PReLU(shared_axes=[1, 2], name=f"{name}.prelu")(x) if prelu else x


def _mf_depth_wise(x, name: str, expand: int, out: int, stride: int, residual: bool):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ identity when ``residual``)."""
    y = _mf_conv(x, f"{name}.conv", expand)
    y = _mf_conv(y, f"{name}.conv_dw", expand, 3, stride, depthwise=True)
    y = _mf_conv(y, f"{name}.project", out, prelu=False)
    return layers.Add(name=f"{name}.add")([x, y]) if residual else y


def build_minifasnet(size: int = PRETRAINED_SIZE, head: int = 3, dropout: float = 0.2) -> keras.Model:
    """MiniFASNetV2 on RGB 0-255 input, output [P(spoof), P(real)].

    ``head`` 3 is the pretrained 3-logit head (classes 0 and 2 are attacks, 1 real) followed by a fixed merge
    of the two attack classes, so P(real) is exactly the original softmax's class 1; ``head`` 2 is a fresh
    2-class Dense layer (``prob2``). At 80 px ``conv_6_dw`` (5x5 depthwise) pools the 5x5 map as in the
    original; at other sizes (multiples of 16) global average pooling takes its place.
    """
    if size % 16 or head not in HEADS:
        raise ValueError(f"minifasnet needs a size that is a multiple of 16 and head 2 or 3 (got {size}, {head})")
    k = MINIFASNET_V2_KEEP
    inputs = keras.Input((size, size, 3), name="image")
    x = _mf_conv(inputs, "conv1", k[0], 3, 2)
    x = _mf_conv(x, "conv2_dw", k[1], 3, 1, depthwise=True)
    x = _mf_depth_wise(x, "conv_23", k[2], k[4], 2, residual=False)
    # (stage, residual blocks, index of its width in ``k``); stages 4 and 5 start with a stride-2 transition
    plan = (("conv_3", 4, 4), ("conv_4", 6, 19), ("conv_5", 2, 40))
    transitions = {"conv_4": ("conv_34", 17), "conv_5": ("conv_45", 38)}
    for stage, blocks, start in plan:
        if stage in transitions:
            name, i = transitions[stage]
            x = _mf_depth_wise(x, name, k[i], k[i + 2], 2, residual=False)
        for b in range(blocks):
            i = start + 3 * b
            x = _mf_depth_wise(x, f"{stage}.model.{b}", k[i + 1], k[i + 3], 1, residual=True)
    x = _mf_conv(x, "conv_6_sep", k[47])
    if size == PRETRAINED_SIZE:
        x = layers.DepthwiseConv2D(size // 16, use_bias=False, name="conv_6_dw.conv")(x)
        x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name="conv_6_dw.bn")(x)
        x = layers.Flatten(name="flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(128, use_bias=False, name="linear")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name="bn")(x)
    x = layers.Dropout(dropout, name="drop")(x)
    if head == 3:
        x = layers.Dense(3, use_bias=False, name="prob")(x)
        x = layers.Softmax(name="softmax3")(x)
        merge = layers.Dense(2, use_bias=False, trainable=False, name="merge")
        outputs = merge(x)
        merge.set_weights([np.array([[1, 0], [0, 1], [1, 0]], np.float32)])
    else:
        x = layers.Dense(2, use_bias=False, name="prob2")(x)
        outputs = layers.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name="minifasnet")


def load_init_weights(model: keras.Model, init: str | Path, bgr: bool | None = None) -> list[str]:
    """Copy weights by layer name from the model file ``init``; returns the names of the layers loaded.

    A BGR file (``bgr``; by default: its input is named ``*bgr*``, as the shared Silent-Face port's is) gets
    its first convolution's kernel reversed along the input channels, which makes it take RGB exactly at no
    cost. A fresh 2-class head (``prob2``) starts from the 3-logit head: real = class 1, spoof = the mean of
    classes 0 and 2. The fixed ``merge`` layer is never copied.
    """
    with numpy2_deprecations_hushed():
        return _copy_weights(model, keras.models.load_model(init, compile=False), init, bgr)


def _copy_weights(model: keras.Model, source: keras.Model, init: str | Path, bgr: bool | None) -> list[str]:
    bgr = "bgr" in source.inputs[0].name.lower() if bgr is None else bgr
    found = {layer.name: layer for layer in source.layers}
    loaded = []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name == "prob2" and "prob" in found:
            w = found["prob"].get_weights()[0]
            layer.set_weights([np.stack([(w[:, 0] + w[:, 2]) / 2, w[:, 1]], axis=1)])
            loaded.append(layer.name)
            continue
        other = found.get(layer.name)
        if other is None or layer.name == "merge":
            continue
        new = other.get_weights()
        if [w.shape for w in new] != [w.shape for w in weights]:
            continue
        if bgr and layer.name == "conv1.conv":
            new = [rgb_kernel(new[0])]
        layer.set_weights(new)
        loaded.append(layer.name)
    if not loaded:
        raise ValueError(f"{init} shares no layer (name and shape) with {model.name}")
    return loaded


def rgb_kernel(kernel: np.ndarray) -> np.ndarray:
    """A first-convolution kernel for RGB input from one for BGR input (reverse the input-channel axis)."""
    return np.ascontiguousarray(kernel[:, :, ::-1, :])


def freeze_through(model: keras.Model, stage: str) -> int:
    """Freeze every MiniFASNet stage up to and including ``stage`` (frozen BN layers keep their statistics);
    returns how many layers were frozen."""
    if stage not in MINIFASNET_STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(MINIFASNET_STAGES)}")
    last = MINIFASNET_STAGES.index(stage)
    frozen = 0
    for layer in model.layers:
        prefix = layer.name.split(".")[0]
        if prefix in MINIFASNET_STAGES and MINIFASNET_STAGES.index(prefix) <= last and layer.weights:
            layer.trainable = False
            frozen += 1
    return frozen


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "livenessnet": build_livenessnet,
    "mobilenetv3": build_mobilenetv3,
    "minifasnet": build_minifasnet,
}


def build_model(name: str, size: int, head: int = 3) -> keras.Model:
    """The model called ``name`` at ``size`` x ``size`` input (``head`` applies to minifasnet only)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return BUILDERS[name](size, head) if name == "minifasnet" else BUILDERS[name](size)
