"""One training run: gathered crops -> Keras model + run dir (model, config, labels, metrics, plots).

Inputs go through the runtime's ``Preprocessing.apply`` (same resize, colour order and 0-255 float as on the
device). The decision threshold is chosen on the validation side (at its EER: APCER = BPCER), never on test,
and test metrics are reported overall and per source.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..runtime.errors import SourceError
from ..runtime.preprocessing import Preprocessing
from .augment import AugmentOptions
from .distill import TeacherTargets
from .data import Sample, Split, group_split, holdout_unit, leave_source_out, load_index, read_index_rows
from .metrics import PadMetrics, TransferThreshold, eer, pad_metrics, transfer_threshold
from .models import DEFAULT_SIZES, LABELS, MODEL_NAMES, build_model, numpy2_deprecations_hushed

REPORTED_SEPARATELY = ("gc535_fas",)  # its real class is the worse camera: a confound, not a capture setup
ImageCache = dict[tuple[Path, int, str], np.ndarray]
BALANCE = ("class", "source")


@dataclass
class TrainOptions:
    """Everything that shapes a run; written verbatim to config.json. ``size`` 0 = the model's default."""

    model: str = "livenessnet"
    size: int = 0
    epochs: int = 40
    batch: int = 32
    lr: float = 1e-3
    patience: int = 8
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True
    augment_options: AugmentOptions = field(default_factory=AugmentOptions)
    sources: list[str] | None = None
    exclude_sources: list[str] | None = None
    verbose: int = 2
    init: str | None = None
    head: int = 3
    freeze: str | None = None
    average: float = 1.0
    balance: str = "class"
    teacher: list[str] | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 1.0
    distill_calibrate: bool = False
    extra_data: list[str] | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}")
        if self.size == 0:
            self.size = DEFAULT_SIZES[self.model]
        if self.size < 16 or self.epochs < 1 or self.batch < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("need size >= 16, epochs >= 1, batch >= 1, lr > 0 and patience >= 1")
        if not 0.0 < self.average <= 1.0 or self.balance not in BALANCE:
            raise ValueError(f"need 0 < average <= 1 and balance in {BALANCE}")
        if self.freeze is not None and self.model != "minifasnet":
            raise ValueError("--freeze applies to minifasnet only")
        if not 0.0 <= self.distill_alpha <= 1.0 or self.distill_temperature <= 0:
            raise ValueError("need 0 <= distill alpha <= 1 and distill temperature > 0")
        if self.extra_data and self.teacher:
            raise ValueError("--extra-data and --teacher do not combine (the teacher cache covers DATA's crops only)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    """What a run produced: the run dir, the validation threshold and the metrics written to metrics.json."""

    out_dir: Path
    threshold: float
    val: PadMetrics
    test: PadMetrics | None
    test_per_source: dict[str, PadMetrics]
    epochs_run: int
    train_seconds: float
    params: int
    test_samples: list[Sample] = field(default_factory=list, repr=False)
    p_test: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


def read_context(data_root: Path) -> float:
    """The crop context the gathered folder was made with (one value per folder, else the runs would mix)."""
    return float(_one_value(data_root, "context", None))


def read_crop_mode(data_root: Path) -> str:
    """The crop mode the gathered folder was made with (``pad`` for folders from before crop modes existed)."""
    return _one_value(data_root, "crop_mode", "pad")


def _one_value(data_root: Path, column: str, missing: str | None) -> str:
    rows = read_index_rows(data_root)
    if not rows:
        raise SourceError(f"no gathered samples in {data_root} (missing or empty index.csv)")
    values = {r.get(column) or missing for r in rows} - {None}
    if len(values) != 1:
        raise SourceError(f"{data_root}/index.csv must have exactly one {column} value, found {sorted(values)}")
    return values.pop()


def read_preprocessing(data_root: Path, size: int, color_order: str = "RGB") -> Preprocessing:
    """How crops of this gathered folder become model inputs: its context and crop mode, at ``size``."""
    return Preprocessing(size=size, context=read_context(data_root), color_order=color_order,
                         crop=read_crop_mode(data_root))


def load_samples(
    data_root: Path, sources: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> list[Sample]:
    """Samples of the gathered folder, optionally only the named sources and without the excluded ones."""
    samples = load_index(data_root)
    unknown = (set(sources or ()) | set(exclude or ())) - {s.source for s in samples}
    if unknown:
        raise SourceError(f"sources not in {data_root}: {', '.join(sorted(unknown))}")
    if sources:
        samples = [s for s in samples if s.source in set(sources)]
    return [s for s in samples if s.source not in set(exclude or ())]


def load_images(samples: Sequence[Sample], preprocessing: Preprocessing, cache: ImageCache | None = None) -> np.ndarray:
    """(N, size, size, 3) float32 model inputs through ``Preprocessing.apply``; ``cache`` reuses them across runs."""
    from tqdm import tqdm

    cache = {} if cache is None else cache
    out = np.empty((len(samples), preprocessing.size, preprocessing.size, 3), np.float32)
    for i, s in enumerate(tqdm(samples, desc="load crops", unit="img", leave=False, mininterval=2)):
        key = (s.path, preprocessing.size, preprocessing.color_order)
        if key not in cache:
            image = cv2.imread(str(s.path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"unreadable crop: {s.path}")
            cache[key] = preprocessing.apply(image)
        out[i] = cache[key]
    return out


def extra_training_samples(split: Split, folders: Sequence[str | Path]) -> list[tuple[Path, list[Sample]]]:
    """Per extra gathered folder (the same inputs gathered at another crop context), its crops of the split's
    training groups. Only training groups are taken, so no crop of a validation, test or held-out group (a
    near-duplicate view of an evaluated face) can enter training."""
    train_groups = set(split.groups["train"])
    picked = []
    for folder in map(Path, folders):
        samples = [s for s in load_index(folder) if s.group in train_groups]
        if not samples:
            raise SourceError(f"{folder} has no crops of the training groups; gather it from the same inputs")
        picked.append((folder, samples))
    return picked


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.label for s in samples], np.int32)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse class frequency, so the loss does not favour whichever class a split happens to have more of."""
    counts = np.bincount(y, minlength=len(LABELS))
    if (counts == 0).any():
        raise SourceError(f"training side lacks a class (real={counts[1]}, spoof={counts[0]})")
    return {c: float(len(y) / (len(LABELS) * n)) for c, n in enumerate(counts)}


def _datasets(
    x_train, y_train, x_val, y_val, options: TrainOptions, w_train=None, train_sources: Sequence[str] | None = None
):
    """Shuffled, augmented training batches and validation batches. ``balance="source"``: every batch draws
    from the training sources with equal probability (each source an endless shuffled stream), so a big
    source does not dominate; an epoch is then ``len(y_train) / batch`` steps."""
    import tensorflow as tf

    from .augment import augment_dataset

    def slices(idx=slice(None)):
        return (x_train[idx], y_train[idx]) if w_train is None else (x_train[idx], y_train[idx], w_train[idx])

    if options.balance == "source" and train_sources is not None:
        names = np.asarray(train_sources)
        streams = []
        for i, source in enumerate(sorted(set(names.tolist()))):
            idx = np.nonzero(names == source)[0]
            stream = tf.data.Dataset.from_tensor_slices(slices(idx))
            streams.append(stream.shuffle(len(idx), seed=options.seed + i, reshuffle_each_iteration=True).repeat())
        train = tf.data.Dataset.sample_from_datasets(streams, seed=options.seed)
    else:
        train = tf.data.Dataset.from_tensor_slices(slices())
        train = train.shuffle(len(y_train), seed=options.seed, reshuffle_each_iteration=True)
    if options.augment:
        train = augment_dataset(train, options.augment_options, options.seed)
    train = train.batch(options.batch).prefetch(tf.data.AUTOTUNE)
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(max(64, options.batch))
    return train, val


def new_model(options: TrainOptions):
    """The model to train: built, weights from ``options.init`` by layer name, early stages frozen."""
    from .models import freeze_through, load_init_weights

    model = build_model(options.model, options.size, options.head)
    if options.init:
        load_init_weights(model, options.init)
    if options.freeze:
        freeze_through(model, options.freeze)
    return model


def average_weights(model, start: list[np.ndarray], a: float) -> None:
    """Weight-space averaging ``(1 - a) * start + a * trained`` (BatchNorm statistics included): keeps more
    of the pretrained network's robustness at no inference cost."""
    if a < 1.0:
        model.set_weights([(1.0 - a) * w0 + a * w1 for w0, w1 in zip(start, model.get_weights())])


def fit_model(
    x_train, y_train, x_val, y_val, options: TrainOptions, soft: tuple[np.ndarray, np.ndarray] | None = None,
    train_sources: Sequence[str] | None = None,
):
    """Train with class weights and early stopping on validation loss; returns (best model, history dict).
    ``soft`` = teacher P(real) for train and val: the loss then mixes labels and teacher (see ``distill``)."""
    import keras

    keras.utils.set_random_seed(options.seed)
    model = new_model(options)
    with numpy2_deprecations_hushed():
        start = model.get_weights()
    weights = class_weights(y_train)
    if soft is None:
        loss, metric, w_train = "sparse_categorical_crossentropy", "accuracy", None
    else:
        from .distill import distillation_loss, label_accuracy, packed_targets

        loss = distillation_loss(options.distill_alpha, options.distill_temperature)
        metric = keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
        w_train = np.array([weights[int(c)] for c in y_train], np.float32)  # class_weight needs sparse labels
        y_train, y_val = packed_targets(y_train, soft[0]), packed_targets(y_val, soft[1])
    model.compile(optimizer=keras.optimizers.Adam(options.lr), loss=loss, metrics=[metric])
    train, val = _datasets(x_train, y_train, x_val, y_val, options, w_train, train_sources)
    steps = math.ceil(len(y_train) / options.batch) if options.balance == "source" and train_sources else None
    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=options.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, options.patience // 2), min_lr=1e-5),
    ]
    with numpy2_deprecations_hushed():  # EarlyStopping's and ReduceLROnPlateau's reads of the variables
        history = model.fit(
            train, validation_data=val, epochs=options.epochs, class_weight=weights if soft is None else None,
            callbacks=callbacks, verbose=options.verbose, shuffle=False,  # tf.data already shuffles, seeded
            steps_per_epoch=steps,
        )
        average_weights(model, start, options.average)
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def predict_real(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """P(real) per input (softmax column 1)."""
    if len(x) == 0:
        return np.zeros(0, np.float32)
    return np.asarray(model.predict(x, batch_size=batch, verbose=0))[:, LABELS.index("real")]


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray) -> float:
    """P(real) threshold at the validation EER (undefined, so refused, when validation lacks a class)."""
    if len(set(y_val.tolist())) < 2:
        raise SourceError("the validation split lacks a class: no threshold can be chosen on it")
    return float(eer(y_val, p_val)[1])


def _metrics(samples: Sequence[Sample], p: np.ndarray, threshold: float) -> PadMetrics:
    return pad_metrics(_labels(samples), p, threshold, [s.attack for s in samples])


def _per_source(samples: Sequence[Sample], p: np.ndarray, threshold: float) -> dict[str, PadMetrics]:
    out = {}
    for source in sorted({s.source for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.source == source]
        out[source] = _metrics([samples[i] for i in idx], p[idx], threshold)
    return out


def check_split(split: Split, sides: Sequence[str]) -> None:
    """Refuse before training a split that cannot give honest numbers: every side in ``sides`` needs both
    classes (training learns both, the threshold is chosen at the validation EER, test metrics need both)."""
    for side in sides:
        samples = getattr(split, side)
        real = sum(s.label == 1 for s in samples)
        if real == 0 or real == len(samples):
            groups = len({s.group for s in samples})
            raise SourceError(
                f"the {side} split has {real} real and {len(samples) - real} spoof crops from {groups} group(s) "
                "and needs both classes; gather more groups or change --val-fraction/--test-fraction"
            )


def train_run(
    data_root: str | Path, out_dir: str | Path, options: TrainOptions, split: Split | None = None,
    cache: ImageCache | None = None, teacher: TeacherTargets | None = None, data_base: Path | None = None,
) -> RunResult:
    """Train ``options.model`` on ``data_root`` (group split unless ``split`` is given) and write the run dir.
    With ``options.teacher`` the teacher's P(real) comes from ``teacher`` or from OUT/teacher.json."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    preprocessing = read_preprocessing(data_root, options.size)
    sides = ("train", "val") if split is not None else ("train", "val", "test")  # LOSO's test side is a whole source
    if split is None:
        samples = load_samples(data_root, options.sources, options.exclude_sources)
        split = group_split(samples, options.val_fraction, options.test_fraction, options.seed)
    check_split(split, sides)
    for folder in (data_root, *map(Path, options.extra_data or ())):
        data_path_for_config(folder, data_base)  # a folder outside the data root fails now, not after training
    out_dir.mkdir(parents=True, exist_ok=True)
    soft = None
    if options.teacher:
        from .distill import calibrate_per_source, load_or_compute, relative_file

        if teacher is None:
            teacher = load_or_compute(out_dir / "teacher.json", data_root, split.train + split.val, options.teacher)
        seen = split.train + split.val
        p = teacher.p_real([relative_file(s, data_root) for s in seen], options.distill_temperature)
        if options.distill_calibrate:
            p = calibrate_per_source(p, _labels(seen), [s.source for s in seen])
        soft = (p[:len(split.train)], p[len(split.train):])
    cache = {} if cache is None else cache
    x_train, x_val, x_test = (load_images(side, preprocessing, cache) for side in (split.train, split.val, split.test))
    y_train, y_val = _labels(split.train), _labels(split.val)
    train_sources = [s.source for s in split.train]
    extra = extra_training_samples(split, options.extra_data or ())
    for folder, samples in extra:  # training side only: validation, threshold and test stay on DATA's crops
        x_train = np.concatenate([x_train, load_images(samples, read_preprocessing(folder, options.size), cache)])
        y_train = np.concatenate([y_train, _labels(samples)])
        train_sources += [s.source for s in samples]
    start = time.perf_counter()
    model, history = fit_model(x_train, y_train, x_val, y_val, options, soft, train_sources)
    train_seconds = time.perf_counter() - start

    p_val, p_test = predict_real(model, x_val), predict_real(model, x_test)
    threshold = choose_threshold(y_val, p_val)
    result = RunResult(
        out_dir=out_dir,
        threshold=threshold,
        val=_metrics(split.val, p_val, threshold),
        test=_metrics(split.test, p_test, threshold) if split.test else None,
        test_per_source=_per_source(split.test, p_test, threshold),
        epochs_run=len(history.get("loss", [])),
        train_seconds=train_seconds,
        params=int(model.count_params()),
        test_samples=list(split.test),
        p_test=p_test,
    )
    save_model(model, options, out_dir / "model.keras")
    _write_run_dir(result, data_root, preprocessing, split, options, history, data_base,
                   {folder: len(samples) for folder, samples in extra})
    _write_json(out_dir / "predictions.json", predictions(split.test, p_test, data_root))
    _write_plots(out_dir, history, split, p_val, p_test, threshold)
    return result


def save_model(model, options: TrainOptions, path: Path) -> None:
    """Save the weights in a fresh, uncompiled copy: no optimizer state (3x the size), nothing export needs."""
    clean = build_model(options.model, options.size, options.head)
    with numpy2_deprecations_hushed():
        clean.set_weights(model.get_weights())
        clean.save(path)


def predictions(samples: Sequence[Sample], p_real: np.ndarray, data_root: Path) -> list[dict]:
    """Per-sample test predictions (for thresholds chosen on pooled out-of-source predictions)."""
    return [{"file": s.path.relative_to(data_root).as_posix(), "source": s.source, "group": s.group,
             "label": int(s.label), "attack": s.attack, "p_real": float(p)} for s, p in zip(samples, p_real)]


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def data_path_for_config(data_dir: Path, data_base: Path | None) -> str:
    """``data_dir`` relative to the data root ``data_base`` (default: its parent), so a committed config.json
    holds no path of this machine."""
    base = (data_base or data_dir.parent).resolve()
    try:
        return data_dir.resolve().relative_to(base).as_posix()
    except ValueError:
        raise SourceError(f"{data_dir} is not inside the data root {base}") from None


def _write_run_dir(
    result: RunResult, data_root: Path, preprocessing: Preprocessing, split: Split, options: TrainOptions,
    history: dict[str, list[float]], data_base: Path | None = None, extra: dict[Path, int] | None = None,
) -> None:
    counts = split.counts()
    extra_rows = [{"path": data_path_for_config(folder, data_base), "n": n} for folder, n in (extra or {}).items()]
    config = {
        "name": options.model,
        "preprocessing": preprocessing.to_dict(),
        "labels": LABELS,
        "threshold": result.threshold,
        "threshold_rule": "validation EER (APCER = BPCER on the val side)",
        "input_shape": [options.size, options.size, 3],
        "seed": options.seed,
        "data": {
            "path": data_path_for_config(data_root, data_base),
            "path_relative_to": "the data root given to liveness-train (--data-root) and export-models (--data-root)",
            "sources": sorted({s.source for side in (split.train, split.val, split.test) for s in side}),
            "counts": counts,
            "extra_training": extra_rows,
        },
        "split": {side: {"groups": split.groups.get(side, []), "n": len(getattr(split, side))}
                  for side in ("train", "val", "test")},
        "train_options": {**options.to_dict(), "init": Path(options.init).name if options.init else None,
                          "extra_data": [row["path"] for row in extra_rows] or None},
        "training": {
            "seconds": round(result.train_seconds, 1),
            "epochs_run": result.epochs_run,
            "best_epoch": int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None,
        },
        "params": result.params,
    }
    _write_json(result.out_dir / "config.json", config)
    _write_json(result.out_dir / "labels.json", LABELS)
    _write_json(result.out_dir / "metrics.json", metrics_dict(result, options.seed))


def adopt_transfer_threshold(run_dir: str | Path, loso_json: str | Path) -> float:
    """Make a run ship the threshold and band chosen on pooled LOSO predictions (``loso_json`` from
    ``liveness-train loso`` or ``average`` of the same recipe) instead of its in-domain validation EER;
    metrics.json then reports every held-out source's APCER/BPCER/ACER at that threshold."""
    run_dir = Path(run_dir)
    summary = json.loads(Path(loso_json).read_text())
    if "transfer" not in summary:
        raise SourceError(f"{loso_json} has no pooled-LOSO threshold (needs two or more held-out sources)")
    t = summary["transfer"]
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config.update(threshold=t["threshold"], band=t["band"], threshold_rule=t["rule"],
                  threshold_source=Path(loso_json).name)
    metrics.update(threshold=t["threshold"], validation_eer_threshold=metrics.get("threshold"), transfer=t,
                   loso_at_threshold=summary.get("at_transfer_threshold", {}))
    rows = json.loads((run_dir / "predictions.json").read_text())
    if rows:  # the in-domain test side, re-scored at the shipped threshold
        y, p = np.array([r["label"] for r in rows]), np.array([r["p_real"] for r in rows])
        attacks = [r["attack"] for r in rows]
        metrics["test"] = pad_metrics(y, p, t["threshold"], attacks).to_dict()
        sources = np.array([r["source"] for r in rows])
        metrics["test_per_source"] = {
            source: pad_metrics(y[sources == source], p[sources == source], t["threshold"],
                                [a for a, s in zip(attacks, sources) if s == source]).to_dict()
            for source in sorted(set(sources.tolist()))
        }
    _write_json(run_dir / "config.json", config)
    _write_json(run_dir / "metrics.json", metrics)
    return float(t["threshold"])


def metrics_dict(result: RunResult, seed: int) -> dict:
    """metrics.json: validation and test PadMetrics, test per source, the threshold and the seed."""
    return {
        "threshold": result.threshold,
        "seed": seed,
        "val": result.val.to_dict(),
        "test": result.test.to_dict() if result.test else None,
        "test_per_source": {k: v.to_dict() for k, v in result.test_per_source.items()},
    }


def _write_plots(
    out_dir: Path, history: dict[str, list[float]], split: Split, p_val: np.ndarray, p_test: np.ndarray,
    threshold: float,
) -> None:
    from .report import plot_confusion, plot_roc, plot_training_curves

    plot_training_curves(history, out_dir / "training_curves.png")
    side, y, p = ("test", _labels(split.test), p_test) if len(split.test) else ("val", _labels(split.val), p_val)
    plot_confusion(y, p, threshold, out_dir / "confusion_matrix.png", title=f"{side} (threshold {threshold:.3f})")
    curves = {"val": (_labels(split.val), p_val)}
    if len(split.test):
        curves["test"] = (_labels(split.test), p_test)
    plot_roc(curves, out_dir / "roc.png")


@dataclass
class LosoResult:
    """One run per held-out source: its test metrics at the threshold chosen on the other sources' val side."""

    model: str
    context: float
    runs: dict[str, RunResult]

    def table(self) -> list[dict]:
        """Rows (source, n, acer, apcer, bpcer, auc, eer, accuracy) plus a ``mean`` row over sources."""
        keys = ("acer", "apcer", "bpcer", "auc", "eer", "accuracy")
        rows = []
        for source, run in self.runs.items():
            m = run.test
            rows.append({"source": source, "n_real": m.n_real, "n_spoof": m.n_spoof,
                         **{k: float(getattr(m, k)) for k in keys}, "threshold": run.threshold})
        if rows:
            mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
            rows.append({"source": "mean", "n_real": sum(r["n_real"] for r in rows),
                         "n_spoof": sum(r["n_spoof"] for r in rows), **mean, "threshold": math.nan})
        return rows

    def pooled(self) -> tuple[list[Sample], np.ndarray]:
        """Every run's held-out samples and P(real), pooled: each prediction from a model that never saw it."""
        samples = [s for run in self.runs.values() for s in run.test_samples]
        return samples, np.concatenate([run.p_test for run in self.runs.values()]) if self.runs else np.zeros(0)

    def transfer(self) -> TransferThreshold:
        """The threshold and band chosen on the pooled held-out predictions (units reported separately
        excluded), every held-out unit weighted equally."""
        samples, p = self.pooled()
        units = [holdout_unit(s.source) for s in samples]
        keep = np.array([u not in REPORTED_SEPARATELY for u in units])
        y = np.array([s.label for s in samples])
        return transfer_threshold(y[keep], p[keep], np.array(units, dtype=object)[keep])

    def at_threshold(self, threshold: float) -> dict[str, PadMetrics]:
        """Each held-out unit's metrics at one shared threshold (e.g. the transferred one)."""
        return {unit: _metrics(run.test_samples, run.p_test, threshold) for unit, run in self.runs.items()}


def holdout_folds(sources: Sequence[str], holdouts: Sequence[str] | None) -> dict[str, list[str]]:
    """Fold name -> held-out sources. A holdout is a source or a glob (``selfrec_*``) whose matches are held out
    together as one fold, named by the pattern without its wildcards."""
    folds: dict[str, list[str]] = {}
    for pattern in holdouts or sources:
        matched = fnmatch.filter(sources, pattern)
        if not matched:
            raise SourceError(f"no source matches {pattern!r}; sources: {', '.join(sources)}")
        name = pattern if matched == [pattern] else re.sub(r"[*?\[\]]", "", pattern).strip("_-") or "pooled"
        folds[name] = matched
    return folds


def loso_run(
    data_root: str | Path, out_dir: str | Path, options: TrainOptions, holdouts: Sequence[str] | None = None,
    data_base: Path | None = None,
) -> LosoResult:
    """Leave-one-source-out: for every fold (a source or a pooled glob), train on the rest (group split into
    train/val) and test on it. Writes OUT/<fold>/ run dirs and every fold's test predictions pooled in
    OUT/pooled_predictions.json (each from a model that never saw that source)."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    samples = load_samples(data_root, options.sources, options.exclude_sources)
    folds = holdout_folds(sorted({s.source for s in samples}), holdouts)
    teacher = None
    if options.teacher:
        from .distill import load_or_compute

        teacher = load_or_compute(out_dir / "teacher.json", data_root, samples, options.teacher)
    cache: ImageCache = {}
    runs = {}
    for name, held in folds.items():
        split = leave_source_out(samples, held, options.val_fraction, options.seed)
        runs[name] = train_run(data_root, out_dir / name, options, split=split, cache=cache, teacher=teacher,
                               data_base=data_base)
    pooled = [dict(row, fold=name, threshold=run.threshold) for name, run in runs.items()
              for row in json.loads((run.out_dir / "predictions.json").read_text())]
    _write_json(out_dir / "pooled_predictions.json", pooled)
    return LosoResult(options.model, read_context(data_root), runs)
