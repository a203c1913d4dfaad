"""End to end: a tiny gathered folder -> liveness-train fit / loso / compare -> complete run dirs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from liveness_edge.train.cli import main  # noqa: E402
from liveness_edge.train.data import INDEX_COLUMNS  # noqa: E402
from liveness_edge.train.train import TrainOptions, class_weights, load_images, load_samples, train_run  # noqa: E402
from liveness_edge.runtime.preprocessing import Preprocessing  # noqa: E402

RUN_FILES = ("model.keras", "config.json", "labels.json", "metrics.json",
             "training_curves.png", "confusion_matrix.png", "roc.png")
CONFIG_KEYS = {"name", "preprocessing", "labels", "threshold", "input_shape", "seed", "data", "split",
               "train_options", "training", "params"}
FAST = ["--epochs", "2", "--batch", "16", "--quiet"]


def _crop(rng: np.random.Generator, real: bool) -> np.ndarray:
    """Synthetic 128 px crops: 'real' = noisy texture, 'spoof' = smooth and tinted, so a model can learn a little."""
    base = rng.uniform(40, 200, (128, 128, 3))
    if real:
        base += rng.normal(0, 30, base.shape)
    else:
        base = cv2.GaussianBlur(base, (0, 0), 3) + np.array([30.0, 0.0, -20.0])
    return np.clip(base, 0, 255).astype(np.uint8)


def make_gathered(root: Path, sources: int = 2, groups: int = 6, per_group: int = 4, seed: int = 0) -> Path:
    """A gathered folder in liveness-gather's layout: real/ spoof/ JPEG crops + index.csv with groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("real", "spoof"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for s in range(sources):
        for g in range(groups):
            for label in ("real", "spoof"):
                for i in range(per_group):
                    name = f"{label}/src{s}__g{g}__{i}.jpg"
                    cv2.imwrite(str(root / name), _crop(rng, label == "real"))
                    rows.append({
                        "file": name, "label": label, "attack": "none" if label == "real" else "replay",
                        "source": f"src{s}", "group": f"src{s}:{label}{g}", "source_file": name, "frame": -1,
                        "x1": 40, "y1": 40, "x2": 88, "y2": 88, "detector_score": 0.9, "context": 2.7,
                        "crop_size": 128,
                    })
    with (root / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> Path:
    return make_gathered(tmp_path_factory.mktemp("gathered"))


def _check_run_dir(run: Path, name: str, size: int) -> dict:
    for f in RUN_FILES:
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    config = json.loads((run / "config.json").read_text())
    assert CONFIG_KEYS <= set(config)
    assert config["name"] == name and config["input_shape"] == [size, size, 3]
    assert config["labels"] == ["spoof", "real"] == json.loads((run / "labels.json").read_text())
    assert Preprocessing.from_dict(config["preprocessing"]) == Preprocessing(size=size, context=2.7)
    assert 0.0 <= config["threshold"] <= 1.0
    sides = {side: set(config["split"][side]["groups"]) for side in ("train", "val", "test")}
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"threshold", "seed", "val", "test", "test_per_source"} <= set(metrics)
    assert {"acer", "apcer", "bpcer", "auc", "eer", "accuracy"} <= set(metrics["test"])
    assert metrics["test"]["n_real"] + metrics["test"]["n_spoof"] == config["split"]["test"]["n"]
    assert metrics["threshold"] == config["threshold"]
    return config


@pytest.mark.slow
def test_fit_both_models_and_compare(gathered, tmp_path, capsys):
    """Both models train a few steps through the CLI, leave complete run dirs, and compare reads them."""
    import keras

    runs = {}
    for name, size in (("livenessnet", 32), ("mobilenetv3", 64)):
        out = tmp_path / name
        assert main(["fit", str(gathered), "--model", name, "--out", str(out), "--size", str(size), *FAST]) == 0
        config = _check_run_dir(out, name, size)
        model = keras.models.load_model(out / "model.keras", compile=False)
        assert model.input_shape == (None, size, size, 3)
        assert config["train_options"]["epochs"] == 2
        runs[name] = out
    assert main(["compare", str(runs["livenessnet"]), str(runs["mobilenetv3"]), "--out", str(tmp_path / "cmp"),
                 "--timing-runs", "5"]) == 0
    text = (tmp_path / "cmp.md").read_text()
    assert "livenessnet" in text and "mobilenetv3" in text and "same test groups" in text
    assert (tmp_path / "cmp.png").stat().st_size > 0
    assert "test acer" in capsys.readouterr().out


@pytest.mark.slow
def test_loso_writes_one_run_per_source_and_a_summary(gathered, tmp_path):
    out = tmp_path / "loso"
    assert main(["loso", str(gathered), "--model", "livenessnet", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    for source in ("src0", "src1"):
        config = _check_run_dir(out / source, "livenessnet", 32)
        assert all(g.startswith(source) for g in config["split"]["test"]["groups"])
        assert not any(g.startswith(source) for g in config["split"]["train"]["groups"])
    summary = json.loads((out / "loso.json").read_text())
    assert [r["source"] for r in summary["rows"]] == ["src0", "src1", "mean"]
    assert (out / "loso.md").is_file() and (out / "loso.png").stat().st_size > 0


def test_images_go_through_runtime_preprocessing(gathered):
    samples = load_samples(gathered)[:3]
    prep = Preprocessing(size=24, context=2.7)
    x = load_images(samples, prep)
    expected = prep.apply(cv2.imread(str(samples[0].path)))
    assert x.shape == (3, 24, 24, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], expected)


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([1, 1, 1, 0]))
    assert w[0] * 1 == pytest.approx(w[1] * 3)


def test_bad_inputs_give_one_line_and_nonzero_exit(tmp_path, gathered, capsys):
    assert main(["fit", str(tmp_path / "missing"), "--model", "livenessnet", "--out", str(tmp_path / "o")]) != 0
    assert main(["fit", str(gathered), "--model", "livenessnet", "--out", str(tmp_path / "o"),
                 "--sources", "nope"]) != 0
    assert main(["compare", str(tmp_path), str(tmp_path)]) != 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "metrics.json").write_text("{}")
    assert main(["compare", str(broken), str(broken)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert all(line.startswith("liveness-train: error:") for line in err.strip().splitlines())
    with pytest.raises(ValueError, match="unknown model"):
        TrainOptions(model="vgg")


def test_train_run_refuses_a_split_without_validation(gathered, tmp_path):
    from liveness_edge.runtime.errors import SourceError
    from liveness_edge.train.data import Split

    samples = load_samples(gathered)
    with pytest.raises(SourceError):
        train_run(gathered, tmp_path / "o", TrainOptions(epochs=1), split=Split(samples, [], [], {}))


def _regathered(gathered: Path, out: Path, context: float) -> Path:
    """The same inputs gathered again at another context: same files, groups and labels, another crop."""
    rows = list(csv.DictReader((gathered / "index.csv").open()))
    for label in ("real", "spoof"):
        (out / label).mkdir(parents=True)
    for r in rows:
        cv2.imwrite(str(out / r["file"]), cv2.imread(str(gathered / r["file"]))[16:112, 16:112])
        r["context"] = context
    with (out / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_extra_data_adds_crops_of_the_training_groups_only(gathered, tmp_path):
    from liveness_edge.runtime.errors import SourceError
    from liveness_edge.train.data import leave_source_out
    from liveness_edge.train.train import extra_training_samples

    tight = _regathered(gathered, tmp_path / "tight", 1.0)
    split = leave_source_out(load_samples(gathered), "src1", seed=0)
    [(folder, extra)] = extra_training_samples(split, [tight])
    assert folder == tight and all(s.path.parent.parent == tight for s in extra)
    assert sorted(s.path.name for s in extra) == sorted(s.path.name for s in split.train)
    assert {s.group for s in extra} == set(split.groups["train"])  # no val group, no held-out src1 group
    other = make_gathered(tmp_path / "other", sources=1, groups=2, per_group=1)
    rows = [dict(r, group="elsewhere:" + r["group"]) for r in csv.DictReader((other / "index.csv").open())]
    with (other / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SourceError, match="no crops of the training groups"):
        extra_training_samples(split, [other])
    with pytest.raises(ValueError, match="do not combine"):
        TrainOptions(extra_data=[str(tight)], teacher=["t.keras"])


@pytest.mark.slow
def test_fit_with_extra_data_records_it_relative_to_the_data_root(gathered, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = Path(shutil.copytree(gathered, root / "ctx2.7"))
    tight = _regathered(gathered, root / "ctx1.0", 1.0)
    out = tmp_path / "run"
    outside = _regathered(gathered, tmp_path / "outside", 1.0)
    assert main(["fit", str(data), "--data-root", str(root), "--extra-data", str(outside), "--model", "livenessnet",
                 "--out", str(out), *FAST]) == 5
    assert not out.exists()  # refused before training, nothing half-written
    assert main(["fit", str(data), "--data-root", str(root), "--extra-data", str(tight), "--model", "livenessnet",
                 "--out", str(out), "--size", "32", *FAST]) == 0
    config = _check_run_dir(out, "livenessnet", 32)
    n_train = config["split"]["train"]["n"]
    assert config["data"]["extra_training"] == [{"path": "ctx1.0", "n": n_train}]
    assert config["train_options"]["extra_data"] == ["ctx1.0"]
    assert str(tmp_path) not in (out / "config.json").read_text()
