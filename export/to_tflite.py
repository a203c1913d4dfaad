"""Keras -> TFLite, float32 and full-integer int8 (uint8 in, uint8 out)."""
from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np

from ..train.models import numpy2_deprecations_hushed
from .tools import quiet_output

TFLITE_INT8_SETTINGS = {
    "quantization": "full-integer post-training (TFLITE_BUILTINS_INT8), int8 weights",
    "input_type": "uint8 (scale 1, zero point 0: camera bytes as they are)",
    "output_type": "uint8 (softmax, scale 1/256)",
    "rewrite": "BatchNormalization on Dense outputs as a depthwise 1x1 affine (not folded into the next Dense)",
}


class ChannelAffine(keras.layers.Layer):
    """``x * scale + offset`` per channel of a (batch, C) tensor, computed as a depthwise 1x1 convolution on a
    (1, 1, C) view.

    The TFLite converter folds a BatchNormalization that follows Dense+ReLU into the next Dense, multiplying
    its input rows by gamma/sqrt(var + eps). Units that hardly fired in training have var ~ 0, so a few rows
    grow ~30x and per-channel int8 weights spend their range on them: LivenessNet's int8 logits were off by
    3.6 quantization steps (mean |ΔP(real)| 0.18). As a depthwise convolution the affine is not folded.
    """

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(1, 1, channels, 1), initializer="ones", name="kernel")
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", name="offset")

    def call(self, x, mask=None, training=None):
        channels = x.shape[-1]
        y = keras.ops.depthwise_conv(keras.ops.reshape(x, (-1, 1, 1, channels)), self.kernel, 1, "valid")
        return keras.ops.reshape(y + self.offset, (-1, channels))


def unfolded_dense_norms(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every BatchNormalization on a 2-D tensor replaced by the same ``ChannelAffine``
    (identical outputs in float)."""
    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization) and len(layer.input.shape) == 2:
            return ChannelAffine(name=f"{layer.name}_affine")
        return layer.__class__.from_config(layer.get_config())

    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization) and len(l.input.shape) == 2]
    if not norms:
        return model
    copy = keras.models.clone_model(model, clone_function=clone)
    with numpy2_deprecations_hushed():
        for layer in model.layers:
            if layer in norms:
                gamma, beta, mean, var = layer.get_weights()
                scale = gamma / np.sqrt(var + layer.epsilon)
                copy.get_layer(f"{layer.name}_affine").set_weights([scale.reshape(1, 1, -1, 1), beta - mean * scale])
            else:
                copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def batch_one(model: keras.Model) -> keras.Model:
    """The model behind a fixed (1, H, W, 3) input: static shapes let Flatten become one Reshape and the
    whole graph go to one XNNPACK partition."""
    inputs = keras.Input(tuple(model.input_shape[1:]), batch_size=1, name=model.inputs[0].name.split(":")[0])
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def keras_to_tflite(
    model: keras.Model, path: str | Path, representative: np.ndarray | None = None, per_channel: bool = True
) -> None:
    """Write ``model`` as TFLite: float32, or int8 when ``representative`` inputs (N, H, W, 3) are given.

    ``per_channel=False`` quantizes each weight tensor with one scale: TFLite stores a float32 scale and an
    int64 zero point per channel, ~12 bytes x 12k channels = 146 KB of MobileNetV3Small's 612 KB int8 file.
    """
    import tensorflow as tf

    if representative is not None:
        model = unfolded_dense_norms(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(batch_one(model))
    if representative is not None:
        def dataset():
            for x in representative:
                yield [x[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        converter._experimental_disable_per_channel = not per_channel
    with quiet_output(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "statistics for quantized inputs were expected": the edges set them
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)
