"""tf.data augmentation on model-size, raw 0-255 float RGB images (the runtime's model input).

Besides the usual photometric/geometric jitter, every image is blurred, JPEG re-compressed and shrunk then
re-enlarged at random: several sources have class-dependent crop sizes (small, upscaled spoof crops in
some ``selfrec_*`` sets), and without resolution jitter a model learns "blurry = spoof" instead of attack cues.
All randomness is stateless and seeded per element, so a run with the same seed sees the same images.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentOptions:
    """Strengths of each augmentation; probabilities are per image."""

    flip: bool = True
    brightness: float = 0.15
    contrast: float = 0.25
    saturation: float = 0.3
    hue: float = 0.03
    rotation_deg: float = 10.0
    zoom: float = 0.1
    blur_prob: float = 0.3
    blur_sigma_max: float = 1.2
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    rescale_prob: float = 0.5
    rescale_min: float = 0.35

    def to_dict(self) -> dict:
        return asdict(self)


def _coin(seed: tf.Tensor, p: float) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed) < p


def _affine(image: tf.Tensor, seed: tf.Tensor, opts: AugmentOptions) -> tf.Tensor:
    """Small rotation about the centre plus zoom, reflecting at the borders (no new black edges)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    angle = tf.random.stateless_uniform([], seeds[0], -1.0, 1.0) * (opts.rotation_deg * math.pi / 180.0)
    scale = 1.0 + tf.random.stateless_uniform([], seeds[1], -opts.zoom, opts.zoom)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    c = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    transform = tf.stack([cos, -sin, c - cos * c + sin * c, sin, cos, c - sin * c - cos * c, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return out[0]


def _blur(image: tf.Tensor, seed: tf.Tensor, sigma_max: float) -> tf.Tensor:
    """Gaussian blur with a random sigma in (0.3, sigma_max], separable 5-tap kernel."""
    sigma = tf.random.stateless_uniform([], seed, 0.3, sigma_max)
    taps = tf.range(-2.0, 3.0)
    k = tf.exp(-(taps**2) / (2.0 * sigma**2))
    k = k / tf.reduce_sum(k)
    kx = tf.tile(tf.reshape(k, [1, 5, 1, 1]), [1, 1, 3, 1])
    ky = tf.tile(tf.reshape(k, [5, 1, 1, 1]), [1, 1, 3, 1])
    x = tf.pad(image[None], [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")
    return x[0]


def _rescale(image: tf.Tensor, seed: tf.Tensor, min_factor: float) -> tf.Tensor:
    """Shrink to a random fraction of the side with area averaging, then enlarge back (resolution jitter)."""
    size = tf.shape(image)[0]
    factor = tf.random.stateless_uniform([], seed, min_factor, 1.0)
    small = tf.maximum(8, tf.cast(tf.cast(size, tf.float32) * factor, tf.int32))
    x = tf.image.resize(image, [small, small], method="area")
    return tf.image.resize(x, [size, size], method="bilinear")


def _jpeg(image: tf.Tensor, seed: tf.Tensor, quality: tuple[int, int]) -> tf.Tensor:
    as_bytes = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    out = tf.image.stateless_random_jpeg_quality(as_bytes, quality[0], quality[1], seed)
    return tf.cast(out, tf.float32)


def augment_image(image: tf.Tensor, seed: tf.Tensor, opts: AugmentOptions) -> tf.Tensor:
    """One augmented copy of a 0-255 float HWC RGB image; ``seed`` is a shape-[2] int tensor."""
    s = tf.random.experimental.stateless_split(seed, 12)
    x = image / 255.0
    if opts.flip:
        x = tf.image.stateless_random_flip_left_right(x, s[0])
    x = tf.image.stateless_random_brightness(x, opts.brightness, s[1])
    x = tf.image.stateless_random_contrast(x, 1.0 - opts.contrast, 1.0 + opts.contrast, s[2])
    x = tf.image.stateless_random_saturation(x, 1.0 - opts.saturation, 1.0 + opts.saturation, s[3])
    x = tf.image.stateless_random_hue(x, opts.hue, s[4])
    x = tf.clip_by_value(x, 0.0, 1.0) * 255.0
    x = _affine(x, s[5], opts)
    x = tf.cond(_coin(s[6], opts.rescale_prob), lambda: _rescale(x, s[7], opts.rescale_min), lambda: x)
    x = tf.cond(_coin(s[8], opts.blur_prob), lambda: _blur(x, s[9], opts.blur_sigma_max), lambda: x)
    x = tf.cond(_coin(s[10], opts.jpeg_prob), lambda: _jpeg(x, s[11], opts.jpeg_quality), lambda: x)
    x = tf.clip_by_value(x, 0.0, 255.0)
    return tf.ensure_shape(x, image.shape)


def augment_dataset(ds: tf.data.Dataset, opts: AugmentOptions, seed: int) -> tf.data.Dataset:
    """Map ``augment_image`` over an (image, label[, weight]) dataset with a fresh, seeded draw every epoch."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def fn(elem, s):
        image, *rest = elem
        return (augment_image(image, s, opts), *rest)

    return tf.data.Dataset.zip((ds, seeds)).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
