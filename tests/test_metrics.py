"""PAD metrics against cases small enough to compute by hand, ties, per-attack APCER and degenerate inputs."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from liveness_edge.train.metrics import auc, eer, pad_metrics, roc_points, threshold_for_apcer

# real scores 0.9, 0.8, 0.3; spoof scores 0.1 (print), 0.4 (replay), 0.7 (replay)
Y = [1, 1, 1, 0, 0, 0]
P = [0.9, 0.8, 0.3, 0.1, 0.4, 0.7]
ATTACKS = ["none", "none", "none", "print", "replay", "replay"]


def test_threshold_metrics_by_hand() -> None:
    m = pad_metrics(Y, P, threshold=0.5)
    # accepted as real: 0.9, 0.8 (real) and 0.7 (spoof) -> TP 2, FP 1, FN 1, TN 2
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.apcer == pytest.approx(1 / 3)
    assert m.apcer_per_attack == {"all": pytest.approx(1 / 3)}
    assert m.bpcer == pytest.approx(1 / 3)
    assert m.acer == pytest.approx(1 / 3)
    assert (m.n_real, m.n_spoof, m.threshold) == (3, 3, 0.5)


def test_threshold_free_metrics_by_hand() -> None:
    # 7 of the 9 (real, spoof) pairs are ordered correctly: 0.3 only beats 0.1
    assert auc(Y, P) == pytest.approx(7 / 9)
    # at t = 0.7: spoof accepted {0.7} = 1/3, real rejected {0.3} = 1/3
    rate, threshold = eer(Y, P)
    assert rate == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7)
    # APCER <= 10 % first at t = 0.8, where real 0.3 is rejected
    assert threshold_for_apcer(Y, P, 0.10) == pytest.approx(0.8)
    m = pad_metrics(Y, P, threshold=0.5)
    assert m.bpcer_at_apcer_10 == pytest.approx(1 / 3)
    assert m.bpcer_at_apcer_1 == pytest.approx(1 / 3)
    assert m.auc == pytest.approx(7 / 9)
    assert m.eer == pytest.approx(1 / 3)


def test_per_attack_apcer_takes_the_worst_type() -> None:
    m = pad_metrics(Y, P, threshold=0.5, attacks=ATTACKS)
    assert m.apcer_per_attack == {"print": 0.0, "replay": 0.5}
    assert m.apcer == 0.5
    assert m.acer == pytest.approx((0.5 + 1 / 3) / 2)
    # worst-type APCER <= 40 %: replay needs t > 0.4 (0.7 accepted = 1/2 at t=0.7), so t = 0.8
    assert threshold_for_apcer(Y, P, 0.40, ATTACKS) == pytest.approx(0.8)
    assert threshold_for_apcer(Y, P, 0.40) == pytest.approx(0.7)


def test_roc_points_with_ties() -> None:
    y = [1, 1, 0, 0]
    p = [0.6, 0.4, 0.6, 0.2]
    t, apcer, bpcer = roc_points(y, p)
    np.testing.assert_allclose(t[:3], [0.2, 0.4, 0.6])
    assert t[3] > 0.6
    np.testing.assert_allclose(apcer, [1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(bpcer, [0.0, 0.0, 0.5, 1.0])
    # the tied pair (0.6, 0.6) counts one half: (0.5 + 1 + 0 + 1) / 4
    assert auc(y, p) == pytest.approx(0.625)
    assert eer(y, p) == (pytest.approx(0.5), pytest.approx(0.6))
    m = pad_metrics(y, p, threshold=0.6)  # a score equal to the threshold is accepted as real
    assert (m.apcer, m.bpcer) == (0.5, 0.5)


def test_all_scores_tied_is_chance() -> None:
    y, p = [1, 0, 1, 0], [0.5] * 4
    assert auc(y, p) == 0.5
    assert eer(y, p)[0] == pytest.approx(0.5)


def test_eer_interpolates_between_roc_points() -> None:
    # real 0.5; spoof 0.6, 0.4: APCER 1, .5, .5, 0 and BPCER 0, 0, 1, 1 cross between t=0.5 and t=0.6
    rate, threshold = eer([1, 0, 0], [0.5, 0.6, 0.4])
    assert rate == pytest.approx(0.5)
    assert threshold == pytest.approx(0.6)


def test_auc_matches_the_area_under_the_roc_points() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1), 1)  # coarse rounding makes many ties
    _, apcer, bpcer = roc_points(y, p)
    tpr = 1.0 - bpcer
    area = float(np.sum((apcer[:-1] - apcer[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))
    assert auc(y, p) == pytest.approx(area)


def test_perfect_and_inverted_scores() -> None:
    assert auc([1, 0], [0.8, 0.2]) == 1.0
    assert eer([1, 0], [0.8, 0.2])[0] == 0.0
    assert auc([1, 0], [0.2, 0.8]) == 0.0
    assert eer([1, 0], [0.2, 0.8])[0] == 1.0


def test_one_class_and_empty_give_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_real = pad_metrics([1, 1], [0.7, 0.2], threshold=0.5)
        only_spoof = pad_metrics([0, 0], [0.3, 0.2], threshold=0.5, attacks=["print", "print"])
        empty = pad_metrics([], [], threshold=0.5)
    assert only_real.bpcer == 0.5 and only_real.recall == 0.5 and only_real.precision == 1.0
    for value in (only_real.apcer, only_real.acer, only_real.auc, only_real.eer, only_real.bpcer_at_apcer_10):
        assert math.isnan(value)
    assert only_spoof.apcer == 0.0 and only_spoof.apcer_per_attack == {"print": 0.0}
    assert math.isnan(only_spoof.precision) and math.isnan(only_spoof.bpcer) and math.isnan(only_spoof.f1)
    assert empty.n_real == empty.n_spoof == 0 and empty.apcer_per_attack == {}
    for value in (empty.accuracy, empty.apcer, empty.bpcer, empty.auc, empty.eer):
        assert math.isnan(value)
    assert math.isnan(eer([], [])[0]) and math.isnan(threshold_for_apcer([1], [0.5], 0.1))


def test_to_dict_is_strict_json() -> None:
    d = pad_metrics([1, 1], [0.7, 0.2], threshold=0.5, attacks=["none", "none"]).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["apcer"] is None and d["bpcer"] == 0.5


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        pad_metrics([1, 0], [0.5], threshold=0.5)
    with pytest.raises(ValueError):
        auc([1, 2], [0.5, 0.5])
    with pytest.raises(ValueError):
        roc_points([1, 0], [0.5, float("nan")])


def test_imports_with_numpy_alone() -> None:
    code = (
        "import sys, liveness_edge.train.metrics as m; "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'cv2', 'matplotlib')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
