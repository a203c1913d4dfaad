"""liveness-train refuses, before training, data too small or split so that its numbers would be meaningless."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from liveness_edge.runtime.errors import SourceError  # noqa: E402
from liveness_edge.train.cli import main  # noqa: E402
from liveness_edge.train.data import Split, group_split, load_index  # noqa: E402
from liveness_edge.train.train import TrainOptions, choose_threshold, train_run  # noqa: E402
from test_train import make_gathered  # noqa: E402


def _fit_error(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["fit", *argv, "--model", "livenessnet", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize(("sources", "groups", "side"), [(1, 1, "val"), (2, 2, "test")])
def test_fit_refuses_an_empty_split_side(tmp_path, capsys, sources, groups, side):
    """(1, 1): one real and one spoof group, both dealt to train; (2, 2): no group left for test."""
    data = make_gathered(tmp_path / "data", sources=sources, groups=groups, per_group=3)
    split = group_split(load_index(data), 0.15, 0.15, 42)
    assert not getattr(split, side)  # the data really splits that way (else this test proves nothing)
    out = tmp_path / "run"
    code, err = _fit_error([str(data), "--out", str(out)], capsys)
    assert code == SourceError.exit_code
    assert f"the {side} split has 0 real and 0 spoof crops" in err and "gather more groups" in err
    assert not (out / "model.keras").exists()


def test_a_one_class_validation_side_is_refused_before_training(tmp_path):
    data = make_gathered(tmp_path / "data", sources=1, groups=4, per_group=2)
    samples = load_index(data)
    spoof_only = [s for s in samples if s.label == 0]
    split = Split(train=samples, val=spoof_only, test=samples, groups={})
    with pytest.raises(SourceError, match=r"the val split has 0 real and 8 spoof crops from 4 group\(s\)"):
        train_run(data, tmp_path / "run", TrainOptions(epochs=1), split=split)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_no_silent_default_threshold():
    with pytest.raises(SourceError, match="lacks a class"):
        choose_threshold(np.zeros(5, np.int32), np.linspace(0, 1, 5))
    assert 0 < choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) < 1
