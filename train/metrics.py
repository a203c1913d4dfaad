"""Presentation-attack-detection metrics (ISO/IEC 30107-3 style) with numpy only, so benchmarks reuse them.

Convention everywhere: label 1 = real (bona fide), 0 = spoof (attack); the score is P(real) and the decision is
"real" iff ``p_real >= threshold``. APCER = share of attacks accepted as real (per attack type, the reported
APCER is the worst type), BPCER = share of bona fide rejected. Undefined values (no real or no spoof samples,
nothing predicted real) are NaN, never an exception or a numpy warning.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

NAN = float("nan")
ALL_ATTACKS = "all"


@dataclass(frozen=True)
class PadMetrics:
    """Metrics at one threshold plus threshold-free ones (auc, eer, bpcer_at_apcer_*).

    accuracy/precision/recall/f1 treat **real as the positive class** (recall = 1 - BPCER). ``apcer`` is the
    maximum over ``apcer_per_attack`` (ISO/IEC 30107-3); ``acer`` = (apcer + bpcer) / 2. ``bpcer_at_apcer_10``
    and ``bpcer_at_apcer_1`` are the BPCER at the lowest threshold whose (worst-type) APCER is <= 10 % / 1 %.
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    apcer: float
    apcer_per_attack: dict[str, float]
    bpcer: float
    acer: float
    auc: float
    eer: float
    bpcer_at_apcer_10: float
    bpcer_at_apcer_1: float
    threshold: float
    n_real: int
    n_spoof: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; NaN becomes None because JSON has no NaN."""
        return {k: _json_value(v) for k, v in asdict(self).items()}


def _json_value(v: object) -> object:
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else NAN


def _check(y_true: Sequence[int] | np.ndarray, p_real: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(p_real, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but p_real has {p.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 1 (real) and 0 (spoof) only")
    if not np.isfinite(p).all():
        raise ValueError("p_real must be finite")
    return y.astype(np.int64), p


def _thresholds(p: np.ndarray) -> np.ndarray:
    """Every distinct score (ascending) plus one just above the maximum, where nothing is accepted."""
    if p.size == 0:
        return np.zeros(0)
    unique = np.unique(p)
    return np.append(unique, np.nextafter(unique[-1], np.inf))


def _accept_rate(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of ``scores`` >= each threshold (NaN when there are no scores); ties count as accepted."""
    if scores.size == 0:
        return np.full(thresholds.shape, NAN)
    below = np.searchsorted(np.sort(scores), thresholds, side="left")
    return (scores.size - below) / scores.size


def roc_points(y_true: Sequence[int], p_real: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds ascending, APCER, BPCER) at every distinct score plus one above the maximum.

    Tied scores share one threshold, so each point is an operating point a real threshold can reach.
    """
    y, p = _check(y_true, p_real)
    t = _thresholds(p)
    return t, _accept_rate(p[y == 0], t), 1.0 - _accept_rate(p[y == 1], t)


def auc(y_true: Sequence[int], p_real: Sequence[float]) -> float:
    """ROC AUC = P(score of a real > score of a spoof), ties counting one half (Mann-Whitney U)."""
    y, p = _check(y_true, p_real)
    n_real, n_spoof = int(y.sum()), int((y == 0).sum())
    if n_real == 0 or n_spoof == 0:
        return NAN
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    u = ranks[y == 1].sum() - n_real * (n_real + 1) / 2.0
    return float(u / (n_real * n_spoof))


def eer(y_true: Sequence[int], p_real: Sequence[float]) -> tuple[float, float]:
    """(equal error rate, threshold): where APCER = BPCER, linearly interpolated between the two ROC points
    around the crossing; the threshold is the one of those two points with the smaller |APCER - BPCER|."""
    t, apcer, bpcer = roc_points(y_true, p_real)
    if t.size == 0 or np.isnan(apcer[0]) or np.isnan(bpcer[0]):
        return NAN, NAN
    d = apcer - bpcer  # non-increasing: +1 at the lowest threshold, -1 just above the highest
    j = int(np.argmax(d <= 0))
    i = max(j - 1, 0)
    if d[j] == 0 or i == j:
        return float(apcer[j]), float(t[j])
    alpha = d[i] / (d[i] - d[j])
    rate = apcer[i] + alpha * (apcer[j] - apcer[i])
    best = i if abs(d[i]) < abs(d[j]) else j
    return float(rate), float(t[best])


def _worst_apcer_curve(y: np.ndarray, p: np.ndarray, attacks: np.ndarray | None, t: np.ndarray) -> np.ndarray:
    spoof = y == 0
    if attacks is None:
        return _accept_rate(p[spoof], t)
    curves = [_accept_rate(p[spoof & (attacks == a)], t) for a in np.unique(attacks[spoof])]
    return np.max(curves, axis=0) if curves else np.full(t.shape, NAN)


def threshold_for_apcer(
    y_true: Sequence[int], p_real: Sequence[float], target: float, attacks: Sequence[str] | None = None
) -> float:
    """The lowest threshold whose APCER (worst attack type if ``attacks`` is given) is <= ``target``: the
    operating point with the fewest rejected bona fide under that attack-acceptance budget. NaN if no spoof."""
    y, p = _check(y_true, p_real)
    t = _thresholds(p)
    curve = _worst_apcer_curve(y, p, None if attacks is None else np.asarray(attacks, dtype=object), t)
    if t.size == 0 or np.isnan(curve[0]):
        return NAN
    return float(t[int(np.argmax(curve <= target))])


def _bpcer_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    real = p[y == 1]
    return NAN if math.isnan(threshold) else _ratio(int((real < threshold).sum()), real.size)


def pad_metrics(
    y_true: Sequence[int], p_real: Sequence[float], threshold: float, attacks: Sequence[str] | None = None
) -> PadMetrics:
    """All metrics at ``threshold``. ``attacks`` (one entry per sample, ignored for real samples) gives the
    per-attack-type APCER; without it every spoof counts as one type, reported as ``"all"`` (empty without spoof)."""
    y, p = _check(y_true, p_real)
    kinds = None if attacks is None else np.asarray(attacks, dtype=object).reshape(-1)
    if kinds is not None and kinds.shape != y.shape:
        raise ValueError(f"attacks has {kinds.size} values but y_true has {y.size}")
    accepted = p >= threshold
    real, spoof = y == 1, y == 0
    tp, fp = int((accepted & real).sum()), int((accepted & spoof).sum())
    n_real, n_spoof = int(real.sum()), int(spoof.sum())
    masks = {ALL_ATTACKS: spoof} if kinds is None else {str(a): spoof & (kinds == a) for a in np.unique(kinds[spoof])}
    per_attack = {a: _ratio(int((accepted & m).sum()), int(m.sum())) for a, m in sorted(masks.items()) if m.any()}
    apcer = max(per_attack.values()) if per_attack else NAN
    bpcer = _ratio(n_real - tp, n_real)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, n_real)
    f1 = NAN if math.isnan(precision) or math.isnan(recall) else (
        0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    )
    return PadMetrics(
        accuracy=_ratio(int((accepted == real).sum()), y.size),
        precision=precision,
        recall=recall,
        f1=f1,
        apcer=apcer,
        apcer_per_attack=per_attack,
        bpcer=bpcer,
        acer=(apcer + bpcer) / 2.0,
        auc=auc(y, p),
        eer=eer(y, p)[0],
        bpcer_at_apcer_10=_bpcer_at(y, p, threshold_for_apcer(y, p, 0.10, kinds)),
        bpcer_at_apcer_1=_bpcer_at(y, p, threshold_for_apcer(y, p, 0.01, kinds)),
        threshold=float(threshold),
        n_real=n_real,
        n_spoof=n_spoof,
    )


@dataclass(frozen=True)
class TransferThreshold:
    """A threshold (and hysteresis band) chosen on out-of-source predictions, every unit weighted equally.

    ``eer`` is the unit-averaged APCER (= BPCER) at ``threshold``. The band's ``real_above`` edge is the
    lowest score whose unit-averaged APCER is at most half of ``eer``, its ``spoof_below`` edge the highest
    score whose unit-averaged BPCER is at most half of ``eer``: a decision outside the band makes at most half
    the errors of that kind that one at the threshold makes.
    """

    threshold: float
    spoof_below: float
    real_above: float
    eer: float
    units: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold, "band": [self.spoof_below, self.real_above], "unit_mean_eer": self.eer,
            "units": self.units,
            "rule": "unit-averaged APCER = BPCER on pooled out-of-source predictions; band edges where the "
                    "unit-averaged BPCER (low) / APCER (high) fall to half of that EER",
        }


def _unit_curves(
    y: np.ndarray, p: np.ndarray, units: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = sorted({str(u) for u in units})
    apcers = [_accept_rate(p[(units == u) & (y == 0)], t) for u in names]
    bpcers = [1.0 - _accept_rate(p[(units == u) & (y == 1)], t) for u in names]
    with np.errstate(all="ignore"):
        apcer, bpcer = np.nanmean(np.array(apcers), axis=0), np.nanmean(np.array(bpcers), axis=0)
    return apcer, bpcer, names


def transfer_threshold(
    y_true: Sequence[int], p_real: Sequence[float], units: Sequence[str]
) -> TransferThreshold:
    """Threshold and band from pooled out-of-source predictions (each from a model that never saw that
    unit), every unit (held-out source) weighted equally so a big source does not set the threshold alone."""
    y, p = _check(y_true, p_real)
    u = np.asarray(units, dtype=object).reshape(-1)
    if u.shape != y.shape or not (y == 0).any() or not (y == 1).any():
        raise ValueError("need one unit per sample and both classes")
    t = _thresholds(p)
    apcer, bpcer, names = _unit_curves(y, p, u, t)
    d = apcer - bpcer
    j = int(np.argmax(d <= 0))
    i = max(j - 1, 0)
    best = i if abs(d[i]) < abs(d[j]) else j
    rate = float((apcer[best] + bpcer[best]) / 2.0)
    high = float(t[int(np.argmax(apcer <= rate / 2.0))])
    ok_low = np.nonzero(bpcer <= rate / 2.0)[0]
    low = float(t[ok_low[-1]]) if ok_low.size else float(t[0])
    threshold = float(t[best])
    return TransferThreshold(threshold, min(low, threshold), max(high, threshold), rate, names)
