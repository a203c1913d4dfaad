"""Distillation: the mixed loss on hand-computed cases, the teacher's crop, the teacher cache, and --teacher end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from test_train import make_gathered  # noqa: E402

from liveness_edge.runtime.errors import SourceError  # noqa: E402
from liveness_edge.train.cli import main  # noqa: E402
from liveness_edge.train.data import load_index  # noqa: E402
from liveness_edge.train.models import numpy2_deprecations_hushed  # noqa: E402
from liveness_edge.train.distill import (  # noqa: E402
    TeacherSpec, TeacherTargets, _teacher_x, calibrate_per_source, distillation_loss, inside_region, load_or_compute,
    packed_targets, relative_file, resolve_teacher, shift_inside_box,
)
from liveness_edge.train.train import holdout_folds  # noqa: E402


def _loss(alpha: float, temperature: float, labels, teacher, probs) -> np.ndarray:
    y_true = packed_targets(np.array(labels), np.array(teacher))
    return np.asarray(distillation_loss(alpha, temperature)(y_true, np.array(probs, np.float32)))


def test_distillation_loss_matches_hand_computed_values():
    # student P(real) 0.8, label real, teacher P(real) 0.6; alpha 0.5
    hard = -math.log(0.8)
    soft_t1 = -(0.6 * math.log(0.8) + 0.4 * math.log(0.2))
    # at T = 2 the student's [0.2, 0.8] becomes [sqrt .2, sqrt .8] normalised = [1/3, 2/3]
    soft_t2 = -(0.6 * math.log(2 / 3) + 0.4 * math.log(1 / 3))
    assert _loss(0.5, 1.0, [1], [0.6], [[0.2, 0.8]])[0] == pytest.approx(0.5 * hard + 0.5 * soft_t1, rel=1e-5)
    assert _loss(0.5, 2.0, [1], [0.6], [[0.2, 0.8]])[0] == pytest.approx(0.5 * hard + 0.5 * 4 * soft_t2, rel=1e-5)
    # spoof label, student P(real) 0.1, teacher 0.2, alpha 0.25: 0.75 * 0.1053605 + 0.25 * 0.5448054
    assert _loss(0.25, 1.0, [0], [0.2], [[0.9, 0.1]])[0] == pytest.approx(0.2152218, rel=1e-5)


def test_distillation_loss_ends_are_labels_only_and_teacher_only():
    probs = [[0.3, 0.7], [0.6, 0.4]]
    labels_only = _loss(0.0, 3.0, [0, 1], [0.9, 0.1], probs)
    np.testing.assert_allclose(labels_only, [-math.log(0.3), -math.log(0.4)], rtol=1e-5)
    teacher_only = _loss(1.0, 1.0, [0, 1], [0.7, 0.4], probs)  # teacher equals the student: its entropy
    np.testing.assert_allclose(teacher_only, [-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)),
                                              -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))], rtol=1e-5)


def test_per_source_calibration_keeps_ranks_and_never_flips_the_teacher():
    p = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.6, 0.3, 0.7, 0.8, 0.05, 0.1])
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1])
    sources = ["a"] * 4 + ["b"] * 4 + ["c"] * 3
    out = calibrate_per_source(p, labels, sources)
    assert list(np.argsort(out[:4])) == list(np.argsort(p[:4]))  # monotone inside a source
    assert out[[0, 2]].min() > 0.5 > out[[1, 3]].max()
    np.testing.assert_allclose(out[4:8], 0.5, atol=1e-6)  # ranked backwards: the base rate 2 / 4, no flip
    np.testing.assert_allclose(out[8:], p[8:], rtol=1e-6)  # one class only: the teacher as it is


def test_shift_inside_box_on_hand_computed_boxes():
    # centred: 20 px box x 2.7 = 54 px about (64, 64)
    assert shift_inside_box((54, 54, 74, 74), (0, 0, 128, 128), 2.7) == (37, 37, 91, 91)
    # near the right edge: shifted left to end at the region's edge, not padded
    assert shift_inside_box((100, 50, 120, 70), (0, 0, 128, 128), 2.7) == (74, 33, 128, 87)
    # 20 x 30 box in a 100 x 80 region: scale drops to 80 / 30, box shifted to the top-left corner
    assert shift_inside_box((10, 10, 30, 40), (0, 0, 100, 80), 2.7) == (0, 0, 53, 80)


def test_inside_region_trims_the_padding_of_a_context_square():
    rng = np.random.default_rng(0)
    crop = np.zeros((128, 128, 3), np.uint8)
    crop[10:100, 20:120] = rng.integers(30, 220, (90, 100, 3))  # frame 100 x 90 seen from square origin (-20, -10)
    assert inside_region(crop, (-20, -10, 108, 118)) == (20, 10, 120, 100)


def test_a_shift_crop_at_the_teachers_context_is_only_resized_and_another_context_is_refused(tmp_path):
    import cv2

    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (40, 30, 3), np.uint8)  # shift crops keep the face box's aspect, not square
    cv2.imwrite(str(tmp_path / "a.png"), crop)
    spec = TeacherSpec(tmp_path / "t.keras", 20, 2.7, "BGR", "0" * 64)
    row = {"file": "a.png", "context": "2.7", "crop_mode": "shift", "x1": "5", "y1": "5", "x2": "25", "y2": "35"}
    x = _teacher_x(tmp_path, row, spec)
    np.testing.assert_array_equal(x, cv2.resize(crop, (20, 20), interpolation=cv2.INTER_AREA).astype(np.float32))
    rgb = _teacher_x(tmp_path, row, TeacherSpec(spec.path, 20, 2.7, "RGB", spec.sha256))
    np.testing.assert_array_equal(rgb, x[..., ::-1])
    with pytest.raises(SourceError, match="gather at the teacher's context"):
        _teacher_x(tmp_path, dict(row, context="4.0"), spec)


def test_teacher_targets_round_trip_and_fuse_by_mean_softmax(tmp_path):
    targets = TeacherTargets(
        [{"file": "a.keras", "sha256": "0" * 64}, {"file": "b.keras", "sha256": "1" * 64}],
        {"real/x.jpg": np.array([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]]),
         "spoof/y.jpg": np.array([[2.0, -1.0, 0.5], [1.0, 1.0, -3.0]])},
    )
    path = tmp_path / "teacher.json"
    targets.save(path)
    loaded = TeacherTargets.load(path)
    assert loaded.teachers == targets.teachers
    files = ["real/x.jpg", "spoof/y.jpg"]
    assert loaded.p_real(files)[0] == pytest.approx((3 / 5 + 1 / 3) / 2, rel=1e-5)
    np.testing.assert_allclose(loaded.p_real(files, 2.0), targets.p_real(files, 2.0), rtol=1e-5)
    assert json.loads(path.read_text())["files"]["real/x.jpg"]["p_real"] == pytest.approx(0.4666667, rel=1e-5)
    with pytest.raises(SourceError, match="lacks"):
        loaded.p_real(["real/z.jpg"])


def _tiny_teacher(path: Path, seed: int) -> Path:
    """A 3-logit 16 px network saved as .keras: stands in for MiniFASNet (BGR 0-255 in, logits out)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    with numpy2_deprecations_hushed():  # Keras reads each variable with np.array when saving
        keras.Model(inputs, keras.layers.Dense(3)(x)).save(path)
    return path


@pytest.fixture(scope="module")
def small_gathered(tmp_path_factory) -> Path:
    return make_gathered(tmp_path_factory.mktemp("gathered"), sources=2, groups=4, per_group=2)


def test_teacher_cache_is_reused_for_the_same_teacher_only(small_gathered, tmp_path):
    teacher_a, teacher_b = _tiny_teacher(tmp_path / "a.keras", 1), _tiny_teacher(tmp_path / "b.keras", 2)
    samples = load_index(small_gathered)
    cache = tmp_path / "run" / "teacher.json"
    first = load_or_compute(cache, small_gathered, samples, [teacher_a])
    files = [relative_file(s, small_gathered) for s in samples]
    assert set(first.logits) == set(files) and all(z.shape == (1, 3) for z in first.logits.values())
    assert resolve_teacher(teacher_a).to_dict()["size"] == 16
    payload = json.loads(cache.read_text())
    marked = files[0]
    payload["files"][marked]["logits"] = [[0.0, 50.0, 0.0]]  # a value the tiny teacher cannot produce
    cache.write_text(json.dumps(payload))
    assert load_or_compute(cache, small_gathered, samples, [teacher_a]).p_real([marked])[0] == pytest.approx(1.0)
    again = load_or_compute(cache, small_gathered, samples, [teacher_b])
    assert again.teachers[0]["file"] == "b.keras" and again.p_real([marked])[0] < 0.99


def test_a_run_dir_teacher_takes_its_crop_from_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _tiny_teacher(run / "model.keras", 3)
    (run / "config.json").write_text(json.dumps({"preprocessing": {"size": 16, "context": 4.0,
                                                                   "color_order": "RGB"}}))
    spec = resolve_teacher(run)
    assert (spec.size, spec.context, spec.color_order) == (16, 4.0, "RGB")
    with pytest.raises(SourceError):
        resolve_teacher(tmp_path / "missing.keras")


def test_holdout_globs_pool_sources_into_one_fold():
    sources = ["nuaa", "selfrec_a", "selfrec_b", "replayattack"]
    assert holdout_folds(sources, ["nuaa", "selfrec_*"]) == {"nuaa": ["nuaa"], "selfrec": ["selfrec_a", "selfrec_b"]}
    assert list(holdout_folds(sources, None)) == sources
    with pytest.raises(SourceError, match="no source matches"):
        holdout_folds(sources, ["gc535*"])


def test_fit_with_a_teacher_caches_it_and_records_the_options(small_gathered, tmp_path, capsys):
    teacher = _tiny_teacher(tmp_path / "teacher.keras", 4)
    out = tmp_path / "run"
    assert main(["fit", str(small_gathered), "--model", "livenessnet", "--out", str(out), "--epochs", "1",
                 "--batch", "8", "--quiet", "--teacher", str(teacher), "--distill-alpha", "0.7",
                 "--distill-temperature", "2", "--distill-calibrate"]) == 0
    config = json.loads((out / "config.json").read_text())
    options = config["train_options"]
    assert (options["distill_alpha"], options["distill_temperature"], options["distill_calibrate"]) == (0.7, 2.0, True)
    cached = json.loads((out / "teacher.json").read_text())
    trained_on = config["split"]["train"]["n"] + config["split"]["val"]["n"]
    assert len(cached["files"]) == trained_on and cached["teachers"][0]["file"] == "teacher.keras"
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == config["split"]["test"]["n"]
    assert all(0.0 <= p["p_real"] <= 1.0 and p["label"] in (0, 1) for p in predictions)
    assert "accuracy" in json.loads((out / "metrics.json").read_text())["test"]


def test_bad_teacher_options_give_one_line_errors(small_gathered, tmp_path, capsys):
    base = ["fit", str(small_gathered), "--model", "livenessnet", "--out", str(tmp_path / "o"), "--epochs", "1"]
    assert main(base + ["--teacher", str(tmp_path / "nope.keras")]) == SourceError.exit_code
    assert main(base + ["--teacher", str(tmp_path), "--distill-alpha", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert all(line.startswith("liveness-train: error:") for line in err.strip().splitlines())
