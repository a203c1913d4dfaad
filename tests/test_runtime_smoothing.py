"""Smoothing and hysteresis on scripted score sequences: one noisy frame must not flip a decision."""
from __future__ import annotations

import pytest

from liveness_edge.runtime.smoothing import REAL, SPOOF, UNCERTAIN, ScoreSmoother, SmoothingOptions, TrackDecider


def decisions(scores, options=SmoothingOptions(min_track_age=1), threshold=0.5):
    decider = TrackDecider(options, threshold)
    return [decider.update(p).decision for p in scores]


def test_ema_and_window_averages():
    ema = ScoreSmoother(SmoothingOptions(method="ema", alpha=0.5))
    assert [ema.update(p) for p in (1.0, 0.0, 0.0)] == pytest.approx([1.0, 0.5, 0.25])
    win = ScoreSmoother(SmoothingOptions(method="window", window=3))
    assert [win.update(p) for p in (0.9, 0.0, 0.3, 0.6)] == pytest.approx([0.9, 0.45, 0.4, 0.3])


def test_single_noisy_frame_does_not_flip_to_spoof_and_is_not_real_itself():
    seq = [0.9] * 5 + [0.1] + [0.9] * 3
    assert decisions(seq) == [REAL] * 5 + [UNCERTAIN] + [REAL] * 3  # the frame's own score is not real
    raw = [REAL if p > 0.5 else SPOOF for p in seq]
    assert SPOOF in raw  # without smoothing the spike would have flipped it


def test_hysteresis_band_holds_state_until_crossed():
    options = SmoothingOptions(method="window", window=1, margin=0.1, min_track_age=1)
    # 0.55 and 0.45 are inside the 0.4-0.6 band: the state set by the last crossing holds
    seq = [0.7, 0.55, 0.45, 0.41, 0.39, 0.45, 0.59, 0.61]
    # a real state holds only while each frame's own score clears the threshold (fail closed)
    assert decisions(seq, options) == [REAL, REAL, UNCERTAIN, UNCERTAIN, SPOOF, SPOOF, SPOOF, REAL]


def test_starts_undecided_inside_band_fail_closed():
    options = SmoothingOptions(method="window", window=1, margin=0.1, min_track_age=1)
    decider = TrackDecider(options, 0.5)
    d = decider.update(0.55)
    assert d.decision == UNCERTAIN and "undecided band" in d.reason


def test_warm_up_keeps_young_tracks_uncertain():
    out = decisions([0.95] * 5, SmoothingOptions(method="window", window=4))
    assert out == [UNCERTAIN] * 3 + [REAL] * 2


def test_quality_problem_frames_are_uncertain_and_not_averaged():
    decider = TrackDecider(SmoothingOptions(method="ema", alpha=0.5, min_track_age=1), 0.5)
    assert decider.update(0.9).decision == REAL
    bad = decider.update(0.0, "too dark (mean 10 < 40)")
    assert bad.decision == UNCERTAIN and bad.reason.startswith("too dark")
    assert bad.p_smoothed == pytest.approx(0.9)  # the unreliable 0.0 was not averaged in
    assert decider.update(0.9).decision == REAL


def test_band_from_threshold_and_explicit_values():
    assert SmoothingOptions(margin=0.05).band(0.3) == pytest.approx((0.25, 0.35))
    assert SmoothingOptions(margin=0.2).band(0.9) == pytest.approx((0.7, 1.0))
    assert SmoothingOptions(real_above=0.8, spoof_below=0.2).band(0.5) == (0.2, 0.8)
    with pytest.raises(ValueError):
        SmoothingOptions(real_above=0.3, spoof_below=0.6).band(0.5)
    with pytest.raises(ValueError):
        SmoothingOptions(method="median")
