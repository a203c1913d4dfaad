"""Plots of a run (curves, confusion matrix, ROC/DET), the two-model comparison and the LOSO summary.

matplotlib and Keras are imported inside the functions, so ``bench accuracy`` can reuse ``plot_roc`` on a
device without TensorFlow.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..runtime.errors import ModelError
from .metrics import roc_points

if TYPE_CHECKING:
    from .train import LosoResult

COMPARED_METRICS = ("accuracy", "precision", "recall", "f1", "apcer", "bpcer", "acer", "auc", "eer",
                    "bpcer_at_apcer_10", "bpcer_at_apcer_1", "threshold", "n_real", "n_spoof")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(y: np.ndarray, p_real: np.ndarray, threshold: float, path: Path, title: str = "") -> None:
    """2x2 confusion matrix (rows = truth, columns = decision at ``threshold``) in ``LABELS`` order."""
    plt = _pyplot()
    pred = (np.asarray(p_real) >= threshold).astype(int)
    cm = np.zeros((2, 2), int)
    for t, q in zip(np.asarray(y, int), pred):
        cm[t, q] += 1
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black", fontsize=14)
    ax.set_xticks([0, 1], ["spoof", "real"])
    ax.set_yticks([0, 1], ["spoof", "real"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """ROC (1 - BPCER vs APCER) and DET (BPCER vs APCER on normal-deviate axes), one line per named side."""
    plt = _pyplot()
    nd = NormalDist()
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.9]
    fig, (roc, det) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (y, p) in curves.items():
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        _, apcer, bpcer = roc_points(y, p)
        apcer, bpcer = np.asarray(apcer, float), np.asarray(bpcer, float)
        roc.plot(apcer, 1.0 - bpcer, label=name)
        clip = lambda v: np.clip(v, 1e-3, 1 - 1e-3)  # noqa: E731 - probit is infinite at 0 and 1
        det.plot([nd.inv_cdf(a) for a in clip(apcer)], [nd.inv_cdf(b) for b in clip(bpcer)], label=name)
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set_xlabel("APCER (spoof accepted)")
    roc.set_ylabel("1 - BPCER (real accepted)")
    roc.set_title("ROC")
    det.set_xticks([nd.inv_cdf(t) for t in ticks], [f"{t:g}" for t in ticks])
    det.set_yticks([nd.inv_cdf(t) for t in ticks], [f"{t:g}" for t in ticks])
    lim = (nd.inv_cdf(0.0008), nd.inv_cdf(0.95))
    det.set_xlim(*lim)
    det.set_ylim(*lim)
    det.set_xlabel("APCER")
    det.set_ylabel("BPCER")
    det.set_title("DET")
    for ax in (roc, det):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class RunSummary:
    """What ``compare`` needs of a run dir."""

    name: str
    config: dict
    metrics: dict
    keras_bytes: int
    params: int
    ms_per_face: float


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"not a training run dir (missing {path.name}): {path.parent}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"corrupt {path}: {e}") from None


def keras_ms_per_face(model_path: Path, input_shape: list[int], runs: int = 100, warmup: int = 10) -> float:
    """Mean wall time of a direct ``model(x)`` call on one face (batch 1) after warm-up, in ms."""
    import keras

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for a broken file; the CLI needs one clear message
        raise ModelError(f"cannot load {model_path}: {e}") from None
    x = np.random.default_rng(0).uniform(0, 255, (1, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        model(x, training=False)
    start = time.perf_counter()
    for _ in range(runs):
        model(x, training=False)
    return (time.perf_counter() - start) / runs * 1000.0


def summarize_run(run_dir: Path, timing_runs: int = 100) -> RunSummary:
    """Config, metrics, file size and Keras latency of one run dir."""
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise ModelError(f"missing {model_path}")
    return RunSummary(
        name=config.get("name", run_dir.name), config=config, metrics=metrics,
        keras_bytes=model_path.stat().st_size, params=int(config.get("params", 0)),
        ms_per_face=keras_ms_per_face(model_path, config["input_shape"], runs=timing_runs),
    )


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.4f}"
    return str(v)


def compare(runs: Sequence[str | Path], out: str | Path, timing_runs: int = 100) -> str:
    """Side-by-side test metrics, size and Keras latency of two or more run dirs -> ``out``.md (returned) and
    ``out``.png. Per-source rows cover every source any run reports (for a zero-shot run dir: each unit)."""
    if len(runs) < 2:
        raise ValueError("compare needs at least two run dirs")
    rs = [summarize_run(Path(r), timing_runs) for r in runs]

    def row(label: str, values: list[object]) -> str:
        return f"| {label} | " + " | ".join(str(v) for v in values) + " |"

    lines = [
        "| | " + " | ".join(r.name for r in rs) + " |",
        "|---|" + "---:|" * len(rs),
        row("input", [f"{r.config['input_shape'][0]} px" for r in rs]),
        row("context / crop", [f"{p['context']} / {p.get('crop', 'pad')}"
                               for p in (r.config["preprocessing"] for r in rs)]),
        row("parameters", [f"{r.params:,}" for r in rs]),
        row(".keras size (KB)", [f"{r.keras_bytes / 1024:.0f}" for r in rs]),
        row("Keras ms/face (model(x), batch 1)", [f"{r.ms_per_face:.2f}" for r in rs]),
        row("training s", [r.config.get("training", {}).get("seconds") for r in rs]),
        row("threshold", [_fmt(float(r.metrics.get("threshold", np.nan))) for r in rs]),
    ]
    tests = [r.metrics.get("test") or {} for r in rs]
    lines += [row(f"test {k}", [_fmt(t.get(k)) for t in tests]) for k in COMPARED_METRICS if any(k in t for t in tests)]
    sources = sorted(set().union(*(r.metrics.get("test_per_source", {}) for r in rs)))
    for key in ("acer", "auc"):
        for src in sources:
            lines.append(row(f"{src} {key}", [_fmt(r.metrics.get("test_per_source", {}).get(src, {}).get(key))
                                              for r in rs]))
    same_test = all(r.config.get("split", {}).get("test") == rs[0].config.get("split", {}).get("test") for r in rs)
    note = "All runs used the same test groups." if same_test else "WARNING: the runs used different test groups."
    text = "\n".join(lines) + f"\n\n{note} Metrics at each model's own shipped threshold.\n"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    _plot_compare(rs, out.with_suffix(".png"))
    return text


def _bars(ax, names: list[str], series: dict[str, list[float]], title: str) -> None:
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(series) - 1) / 2, names, rotation=30, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()


def _plot_compare(rs: Sequence[RunSummary], path: Path) -> None:
    plt = _pyplot()
    keys = ["accuracy", "apcer", "bpcer", "acer", "auc", "eer"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    _bars(left, keys, {r.name: [float((r.metrics.get("test") or {}).get(k, np.nan)) for k in keys] for r in rs},
          "test metrics")
    _bars(right, ["ms/face"], {r.name: [r.ms_per_face] for r in rs}, "Keras latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loso_markdown(result: "LosoResult") -> str:
    """The LOSO table: one row per held-out source plus the mean over sources."""
    lines = [
        f"Leave-one-source-out, {result.model}, context {result.context}"
        " (threshold chosen on the validation side of the other sources)",
        "",
        "| held-out source | n real | n spoof | ACER | APCER | BPCER | AUC | EER | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.table():
        lines.append(
            f"| {r['source']} | {r['n_real']} | {r['n_spoof']} | {_fmt(r['acer'])} | {_fmt(r['apcer'])} |"
            f" {_fmt(r['bpcer'])} | {_fmt(r['auc'])} | {_fmt(r['eer'])} | {_fmt(r['accuracy'])} |"
        )
    if len(result.runs) > 1:
        t = result.transfer()
        lines += [
            "",
            f"At the threshold transferred from the pooled held-out predictions: {t.threshold:.3f}, hysteresis band"
            f" [{t.spoof_below:.3f}, {t.real_above:.3f}] (units {', '.join(t.units)} weighted equally)",
            "",
            "| held-out source | APCER (worst type) | BPCER | ACER |",
            "|---|---:|---:|---:|",
        ]
        for unit, m in result.at_threshold(t.threshold).items():
            lines.append(f"| {unit} | {_fmt(m.apcer)} | {_fmt(m.bpcer)} | {_fmt(m.acer)} |")
    return "\n".join(lines) + "\n"


def write_loso_summary(result: "LosoResult", prefix: str | Path) -> str:
    """``prefix``.md, .json and .png of a LOSO result; returns the Markdown."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    text = loso_markdown(result)
    prefix.with_suffix(".md").write_text(text)
    rows = result.table()
    payload = {
        "model": result.model, "context": result.context,
        "rows": [{k: None if isinstance(v, float) and np.isnan(v) else v for k, v in r.items()} for r in rows],
        "runs": {s: r.out_dir.name for s, r in result.runs.items()},  # beside this summary; no machine paths
    }
    if len(result.runs) > 1:
        t = result.transfer()
        payload["transfer"] = t.to_dict()
        payload["at_transfer_threshold"] = {u: m.to_dict() for u, m in result.at_threshold(t.threshold).items()}
    prefix.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    plt = _pyplot()
    names = [r["source"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4.5))
    _bars(ax, names, {k.upper(): [r[k] for r in rows] for k in ("acer", "auc", "eer")},
          f"LOSO {result.model} (context {result.context})")
    fig.tight_layout()
    fig.savefig(prefix.with_suffix(".png"), dpi=100)
    plt.close(fig)
    return text
