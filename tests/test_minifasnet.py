"""MiniFASNet: the builder against the shared port's logits, the exact RGB kernel flip, the shift-inside
crop on hand-computed boxes, threshold selection from pooled out-of-source predictions, training from scratch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from liveness_edge.runtime.crop import context_crop, shifted_box
from liveness_edge.runtime.preprocessing import Preprocessing
from liveness_edge.train.metrics import eer, transfer_threshold

pytestmark = [  # Keras 3 under NumPy 2 (get/set_weights) and functional-call structure notes: not ours to fix
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning"),
]

# ---------------------------------------------------------------------------------------------------------------
# shift-inside crop (no Keras needed)
# ---------------------------------------------------------------------------------------------------------------


def test_shift_box_inside_the_frame_is_the_scaled_box():
    # box 40x20 centred at (100, 100), context 2 -> 80x40 around the centre, Silent-Face's int() cut
    assert shifted_box((80, 90, 120, 110), 2.0, 640, 480) == (60, 80, 141, 121)


def test_shift_box_at_the_top_left_corner_is_shifted_not_padded():
    # box (0, 0, 20, 20) x 3 = 60x60 centred at (10, 10): (-20, -20, 40, 40) -> shifted right/down by 20
    assert shifted_box((0, 0, 20, 20), 3.0, 200, 100) == (0, 0, 61, 61)


def test_shift_box_at_the_bottom_right_corner():
    # frame 200x100, box (180, 80, 200, 100) x 2 = 40x40 around (190, 90): right/bottom beyond 199/99
    # right 210 -> left 170 - 11 = 159, right 199; bottom 110 -> top 70 - 11 = 59, bottom 99
    assert shifted_box((180, 80, 200, 100), 2.0, 200, 100) == (159, 59, 200, 100)


def test_shift_box_larger_than_the_frame_is_scaled_down_to_fit():
    # box 300x150 centred at (100, 50) in a 200x100 frame: scale = min(99/150, 199/300, 2.7) = 0.66
    # -> 198 x 99: left 1, right 199; top 0.5, bottom 99.5 > 99 -> shifted up to 0 .. 99
    assert shifted_box((-50, -25, 250, 125), 2.7, 200, 100) == (1, 0, 200, 100)


def test_shift_crop_keeps_only_frame_pixels():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :50] = 255  # columns 0-49 white
    # 20x20 box x 10 would be 200x200; scale min(99/20, 199/20, 10) = 4.95 -> 99x99 around (50, 50),
    # bottom 99.5 > 99 -> shifted up: (0, 0) .. (99, 99) inclusive
    crop = context_crop(frame, (40, 40, 60, 60), 10.0, 16, mode="shift")
    assert crop.square == (0, 0, 100, 100)
    assert crop.inside_fraction == 1.0 and crop.image.shape == (16, 16, 3)
    assert crop.image[:, :7].min() == 255 and crop.image[:, 9:].max() == 0  # left half white, right black
    pad = context_crop(frame, (40, 40, 60, 60), 10.0, 16, mode="pad")
    assert pad.inside_fraction < 1.0


def test_preprocessing_carries_the_crop_mode_and_cuts_with_it():
    pre = Preprocessing(size=16, context=2.7, crop="shift")
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert Preprocessing.from_dict({"size": 16, "context": 2.7}).crop == "pad"  # manifests from before
    frame = np.full((50, 60, 3), 7, np.uint8)
    assert pre.cut(frame, (0, 0, 10, 10)).inside_fraction == 1.0
    with pytest.raises(ValueError):
        Preprocessing(size=16, context=2.7, crop="mirror")


# ---------------------------------------------------------------------------------------------------------------
# threshold that transfers
# ---------------------------------------------------------------------------------------------------------------


def test_transfer_threshold_weights_units_equally_on_a_synthetic_case():
    """Unit A (900 samples): spoof 0.1-0.4, real 0.6-0.9; unit B (100): spoof 0-0.2, real 0.3-0.5. Between
    0.3 and 0.4, APCER_A = (0.4 - t) / 0.3 and BPCER_B = (t - 0.3) / 0.2; equal unit-averaged errors at
    t = 0.34 with APCER = BPCER = 0.2 / 2 = 0.1. The band edges halve them: APCER_A <= 0.1 from t = 0.37,
    BPCER_B <= 0.1 up to t = 0.32. A sample-pooled EER would follow the big unit A towards 0.4."""
    p = np.concatenate([np.linspace(0.6, 0.9, 450), np.linspace(0.1, 0.4, 450),
                        np.linspace(0.3, 0.5, 50), np.linspace(0.0, 0.2, 50)])
    y = np.array([1] * 450 + [0] * 450 + [1] * 50 + [0] * 50)
    units = ["A"] * 900 + ["B"] * 100
    t = transfer_threshold(y, p, units)
    assert t.threshold == pytest.approx(0.34, abs=0.005)
    assert t.eer == pytest.approx(0.10, abs=0.01)
    assert t.spoof_below == pytest.approx(0.32, abs=0.005) and t.real_above == pytest.approx(0.37, abs=0.005)
    assert t.units == ["A", "B"]
    assert json.loads(json.dumps(t.to_dict()))["band"] == [t.spoof_below, t.real_above]
    assert eer(y, p)[1] > 0.36


def test_transfer_threshold_on_separable_units_has_zero_error():
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.6, 0.3, 0.35])
    t = transfer_threshold(y, p, ["a"] * 4 + ["b"] * 4)
    assert t.eer == 0.0 and 0.35 < t.threshold <= 0.6


# ---------------------------------------------------------------------------------------------------------------
# the Keras builder
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mf():
    pytest.importorskip("tensorflow")
    from liveness_edge.train import models

    return models


def _logits(model, x):
    import keras

    return np.asarray(keras.Model(model.inputs, model.get_layer("prob").output)(x, training=False))


@pytest.mark.parametrize("name", ["minifasnetv2"])
def test_builder_reproduces_the_shared_logits(mf, shared_pretrained, name):
    path = shared_pretrained / "minifasnet" / f"{name}_80x80.keras"
    ref = np.load(shared_pretrained / "minifasnet" / f"{name}_80x80_verify.npz")
    model = mf.build_minifasnet(80)
    loaded = mf.load_init_weights(model, path)
    assert len(loaded) == len([layer for layer in model.layers if layer.weights and layer.name != "merge"])
    rgb = ref["x"][..., ::-1].astype(np.float32)  # the built model takes RGB, the port BGR
    np.testing.assert_allclose(_logits(model, rgb), ref["torch_logits"], atol=1e-4)
    p = np.asarray(model(rgb, training=False))
    e = np.exp(ref["torch_logits"] - ref["torch_logits"].max(axis=1, keepdims=True))
    np.testing.assert_allclose(p[:, 1], (e / e.sum(axis=1, keepdims=True))[:, 1], atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_rgb_kernel_flip_is_exact(mf, tmp_path):
    """A BGR model file loaded into the RGB builder gives the same logits on the channel-swapped input."""
    bgr = mf.build_minifasnet(80)
    rng = np.random.default_rng(1)
    bgr.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) if w.ndim > 1 else w for w in bgr.get_weights()])
    path = tmp_path / "bgr.keras"
    bgr.save(path)
    rgb = mf.build_minifasnet(80)
    mf.load_init_weights(rgb, path, bgr=True)
    k_bgr = bgr.get_layer("conv1.conv").get_weights()[0]
    np.testing.assert_array_equal(rgb.get_layer("conv1.conv").get_weights()[0], k_bgr[:, :, ::-1, :])
    x = rng.uniform(0, 255, (4, 80, 80, 3)).astype(np.float32)
    np.testing.assert_allclose(_logits(rgb, x[..., ::-1]), _logits(bgr, x), rtol=1e-5, atol=1e-4)


def test_two_class_head_starts_from_the_pretrained_one(mf, tmp_path):
    three = mf.build_minifasnet(80)
    path = tmp_path / "three.keras"
    three.save(path)
    two = mf.build_minifasnet(80, head=2)
    mf.load_init_weights(two, path)
    w3, w2 = three.get_layer("prob").get_weights()[0], two.get_layer("prob2").get_weights()[0]
    np.testing.assert_array_equal(w2[:, 1], w3[:, 1])
    np.testing.assert_allclose(w2[:, 0], (w3[:, 0] + w3[:, 2]) / 2)


def test_other_sizes_pool_globally_and_freezing_stops_early_stages(mf):
    model = mf.build_minifasnet(32)
    assert model.output_shape == (None, 2) and "gap" in [layer.name for layer in model.layers]
    frozen = mf.freeze_through(model, "conv_34")
    assert frozen > 0 and not model.get_layer("conv_3.model.0.conv.conv").trainable
    assert model.get_layer("conv_4.model.0.conv.conv").trainable
    with pytest.raises(ValueError):
        mf.build_minifasnet(40)


def test_training_without_init_works(mf, tmp_path):
    from test_train import make_gathered

    from liveness_edge.train.cli import main

    data = make_gathered(tmp_path / "g", groups=5, per_group=2)
    out = tmp_path / "run"
    assert main(["fit", str(data), "--model", "minifasnet", "--size", "32", "--out", str(out), "--epochs", "1",
                 "--batch", "16", "--head", "2", "--balance", "source", "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train_options"]["init"] is None and config["name"] == "minifasnet"
    assert config["data"]["path"] == "g"  # relative to the data root: no path of this machine


def test_liveness_wrapper_reads_three_logits_and_two_probabilities():
    """Silent-Face's output (3 logits, class 1 real) is softmaxed; a 2-class softmax is read as it is."""
    from runtime_helpers import TINY_SIZE

    from liveness_edge.runtime.backends.base import TensorInfo
    from liveness_edge.runtime.liveness import LivenessModel

    class Fixed:
        def __init__(self, out: list[float]) -> None:
            self.path = "fixed"
            self.inputs = [TensorInfo("x", (1, TINY_SIZE, TINY_SIZE, 3), np.dtype(np.float32))]
            self.outputs = [TensorInfo("y", (1, len(out)), np.dtype(np.float32))]
            self.out = np.array([out], np.float32)

        def run(self, x: np.ndarray) -> list[np.ndarray]:
            return [self.out]

    pre = Preprocessing(size=TINY_SIZE, context=2.7, crop="shift")
    crop = np.zeros((TINY_SIZE, TINY_SIZE, 3), np.uint8)
    logits = [2.0, 5.0, 1.0]
    three = LivenessModel(Fixed(logits), pre, ["attack_a", "real", "attack_b"])
    assert three.predict(crop) == pytest.approx(np.exp(5) / (np.exp(2) + np.exp(5) + np.exp(1)), rel=1e-5)
    two = LivenessModel(Fixed([0.3, 0.7]), pre, ["spoof", "real"])
    assert two.predict(crop) == pytest.approx(0.7)


def test_a_run_adopts_the_pooled_loso_threshold_and_reports_it(tmp_path):
    pytest.importorskip("tensorflow")
    from liveness_edge.train.train import adopt_transfer_threshold

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"threshold": 0.5}))
    (run / "metrics.json").write_text(json.dumps({"threshold": 0.5}))
    rows = [{"file": f"{i}.jpg", "source": "s", "label": i % 2, "attack": "print" if i % 2 == 0 else "none",
             "p_real": p} for i, p in enumerate([0.1, 0.6, 0.7, 0.9])]
    (run / "predictions.json").write_text(json.dumps(rows))
    loso = tmp_path / "loso.json"
    transfer = {"threshold": 0.65, "band": [0.3, 0.8], "rule": "r", "unit_mean_eer": 0.1, "units": ["a", "b"]}
    loso.write_text(json.dumps({"transfer": transfer, "at_transfer_threshold": {"a": {"acer": 0.1}}}))
    assert adopt_transfer_threshold(run, loso) == 0.65
    config, metrics = (json.loads((run / f).read_text()) for f in ("config.json", "metrics.json"))
    assert config["threshold"] == 0.65 and config["band"] == [0.3, 0.8]
    assert metrics["validation_eer_threshold"] == 0.5 and metrics["loso_at_threshold"] == {"a": {"acer": 0.1}}
    # at 0.65: real 0.6 rejected (BPCER 1/2), spoof 0.7 accepted (APCER 1/2)
    assert metrics["test"]["bpcer"] == 0.5 and metrics["test"]["apcer"] == 0.5
