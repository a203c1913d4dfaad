"""Writers for bench results: Markdown tables, JSON, and PNG plots (matplotlib imported lazily, Agg backend)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..train.report import plot_roc
from .accuracy import AccuracyRun
from .latency import BenchRun, ConfigResult

BAR_STAGES = ("detect", "crop", "infer", "decide", "landmarks")
STAGE_LABELS = {
    "detect": "detect (+ tracking)",
    "crop": "crop + preprocess + quality checks",
    "infer": "liveness inference",
    "decide": "smoothing + decision",
    "landmarks": "face landmarks + challenge",
    "other": "other",
    "capture": "read/decode (not in total)",
}
STAGE_COLOURS = {
    "detect": "#4c72b0",
    "crop": "#dd8452",
    "infer": "#55a868",
    "decide": "#c44e52",
    "landmarks": "#8172b3",
    "other": "#8c8c8c",
    "capture": "#dddddd",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def can_plot() -> bool:
    """matplotlib is optional on devices; without it the reports are written without their PNGs."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        print("bench: matplotlib is not installed: no PNG plots (pip install matplotlib)", file=sys.stderr)
        return False
    return True


def human_bytes(n: int) -> str:
    if n <= 0:
        return "—"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def speedup(result: ConfigResult, baseline: ConfigResult | None) -> float | None:
    """How many times more frames per second than the baseline (ratio of mean totals, i.e. of FPS)."""
    if baseline is None or not result.ok:
        return None
    return baseline.stages["total"].mean / result.stages["total"].mean


def _row_size(r: ConfigResult) -> str:
    """The liveness model's file (detector rows: the detector; the baseline: Keras model + SSD)."""
    if r.config.kind == "detector":
        return human_bytes(r.detector_bytes)
    if r.config.kind == "baseline":
        return human_bytes(r.model_bytes + r.detector_bytes)
    return human_bytes(r.model_bytes)


def latency_table(run: BenchRun) -> str:
    """The summary table (total = everything after the frame is decoded) and the per-stage medians."""
    base = run.baseline()
    lines = [
        "| configuration | status | model size | median ms | p90 | p99 | FPS | speed-up vs baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in run.results:
        if not r.ok:
            lines.append(f"| {r.config.name} | {r.status}: {r.error} | — | — | — | — | — | — |")
            continue
        t = r.stages["total"]
        s = speedup(r, base)
        lines.append(
            f"| {r.config.name} | ok | {_row_size(r)} | {t.median:.2f} | {t.p90:.2f} | {t.p99:.2f} | {t.fps:.0f} | "
            + (f"{s:.1f}x |" if s is not None else "— |")
        )
    lines += [
        "",
        "| configuration | read/decode | detect | crop | infer | decide | landmarks | total | load ms | peak RSS MB "
        "| faces/frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run.results:
        if r.ok:
            cells = [f"{r.stages[s].median:.2f}" if s in r.stages else "—" for s in ("capture", *BAR_STAGES, "total")]
            lines.append(
                f"| {r.config.name} | {' | '.join(cells)} | {r.load_ms:.0f} | {r.peak_rss_mb:.0f} | "
                f"{r.faces_per_frame:.2f} |"
            )
    return "\n".join(lines) + "\n"


def write_json(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(_portable(data), indent=1) + "\n")


def _portable(value: object) -> object:
    """Absolute paths below the working folder written relative to it, so a report made in a checkout and
    shared (or committed) names no folder of the machine that made it."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        try:
            return Path(value).relative_to(Path.cwd()).as_posix()
        except ValueError:
            return value
    return value


def _stage_means(r: ConfigResult) -> dict[str, float]:
    """Mean ms per stage (means add up, medians do not); ``other`` is what the pipeline spent between stages,
    ``capture`` the read/decode before it (outside the bench's total)."""
    means = {s: r.stages[s].mean for s in BAR_STAGES if s in r.stages}
    means["other"] = max(0.0, r.stages["total"].mean - sum(means.values()))
    means["capture"] = r.stages["capture"].mean
    return means


def plot_stages(run: BenchRun, path: str | Path) -> None:
    """Stacked mean ms per stage, one bar per configuration; the right panel leaves the baseline out to zoom in."""
    plt = _pyplot()
    ok = [r for r in run.results if r.ok]
    panels = [("all configurations", ok), ("runtime only (zoom)", [r for r in ok if r.config.kind != "baseline"])]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.45 * max(4, len(ok)) + 1.5))
    for ax, (title, rows) in zip(axes, panels):
        names = [r.config.name for r in rows]
        left = np.zeros(len(rows))
        for stage in (*BAR_STAGES, "other", "capture"):
            values = np.array([_stage_means(r).get(stage, 0.0) for r in rows])
            label = STAGE_LABELS.get(stage, stage)
            ax.barh(names, values, left=left, color=STAGE_COLOURS[stage], label=label,
                    hatch="//" if stage == "capture" else None, edgecolor="white", linewidth=0.5)
            left += values
        ax.invert_yaxis()
        ax.set_xlabel("mean ms per frame")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_distributions(run: BenchRun, path: str | Path) -> None:
    """Every frame's total ms per configuration (dots), with the p25-p75 box, p1-p99 line and median tick."""
    plt = _pyplot()
    ok = [r for r in run.results if r.ok]
    fig, ax = plt.subplots(figsize=(10, 0.4 * max(4, len(ok)) + 1.5))
    rng = np.random.default_rng(0)
    for i, r in enumerate(ok):
        x = np.asarray(r.samples["total"])
        p1, p25, p50, p75, p99 = np.percentile(x, [1, 25, 50, 75, 99])
        ax.scatter(x, i + rng.uniform(-0.25, 0.25, x.size), s=3, alpha=0.3, color="#4c72b0", linewidths=0)
        ax.hlines(i, p1, p99, color="black", linewidth=1)
        ax.hlines(i, p25, p75, color="black", linewidth=6, alpha=0.5)
        ax.plot([p50], [i], "|", color="#c44e52", markersize=16, markeredgewidth=2)
    ax.set_yticks(range(len(ok)), [r.config.name for r in ok])
    ax.set_ylim(len(ok) - 0.5, -0.5)
    if ok:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_formatter("{x:g}")
    ax.set_xlabel("total ms per frame (decode excluded), log scale; line p1-p99, box p25-p75, red tick median")
    ax.set_title("Latency distribution per configuration")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_latency_report(run: BenchRun, out_dir: str | Path) -> dict[str, Path]:
    """latency.md, latency.json, latency_stages.png, latency_distribution.png in ``out_dir`` (the paths written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out / "latency.md",
        "json": out / "latency.json",
        "stages": out / "latency_stages.png",
        "distribution": out / "latency_distribution.png",
    }
    env = run.environment
    header = (
        f"# bench latency\n\n{env.get('cpu')} ({env.get('cores')} cores), Python {env.get('python')}, "
        f"ONNX Runtime {env.get('onnxruntime')}, LiteRT {env.get('litert')}, OpenCV {env.get('opencv')}, "
        f"TensorFlow {env.get('tensorflow')}; load average at start {env.get('load_average')}.\n"
        "Times are ms per frame after decoding (total = detect + crop + infer + decide + overhead); "
        "FPS = 1000 / mean total.\n\n"
    )
    paths["table"].write_text(header + latency_table(run))
    write_json(run.to_dict(), paths["json"])
    if not can_plot():
        return {k: v for k, v in paths.items() if v.suffix != ".png"}
    plot_stages(run, paths["stages"])
    plot_distributions(run, paths["distribution"])
    return paths


def compare_runs(a: BenchRun, b: BenchRun) -> str:
    """Ratios B/A of the median total and of FPS for every configuration both runs measured."""
    b_by_name = {r.config.name: r for r in b.results if r.ok}
    lines = [
        f"A: {a.environment.get('cpu')} ({a.environment.get('created')})  "
        f"B: {b.environment.get('cpu')} ({b.environment.get('created')})",
        "",
        "| configuration | A median ms | B median ms | B/A median | A FPS | B FPS | B/A FPS |",
        "|---|---|---|---|---|---|---|",
    ]
    for ra in a.results:
        rb = b_by_name.get(ra.config.name)
        if not ra.ok or rb is None:
            continue
        ta, tb = ra.stages["total"], rb.stages["total"]
        lines.append(
            f"| {ra.config.name} | {ta.median:.2f} | {tb.median:.2f} | {tb.median / ta.median:.2f} | "
            f"{ta.fps:.0f} | {tb.fps:.0f} | {tb.fps / ta.fps:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "—" if v is None or np.isnan(v) else f"{100 * v:.1f}%"


def accuracy_table(run: AccuracyRun) -> str:
    """Threshold-free and at-threshold metrics per configuration, then what the pipeline decided per class."""
    data = run.to_dict()["data"]
    attacks = ", ".join(f"{a} {n}" for a, n in data["spoof_per_attack"].items())
    lines = [
        f"{data['n_real']} real, {data['n_spoof']} spoof images ({attacks}). Scores: P(real) of the largest face, "
        "0 when no face is found (rejected). APCER is the worst attack type.",
        "",
        "| configuration | status | AUC | EER | APCER | APCER per attack | BPCER | ACER | BPCER@APCER10% "
        "| BPCER@APCER1% | faces found real / spoof |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run.results:
        if r.status != "ok":
            lines.append(f"| {r.name} | failed: {r.error} |" + " — |" * 9)
            continue
        m = r.metrics
        per_attack = ", ".join(f"{a} {_pct(v)}" for a, v in m.apcer_per_attack.items())
        auc = "—" if np.isnan(m.auc) else f"{m.auc:.3f}"
        lines.append(
            f"| {r.name} | ok (t={r.threshold:.3f}) | {auc} | {_pct(m.eer)} | {_pct(m.apcer)} | {per_attack} | "
            f"{_pct(m.bpcer)} | {_pct(m.acer)} | {_pct(m.bpcer_at_apcer_10)} | {_pct(m.bpcer_at_apcer_1)} | "
            f"{_pct(r.face_found_rate(1))} / {_pct(r.face_found_rate(0))} |"
        )
    lines += [
        "",
        "Pipeline decisions (hysteresis band and quality checks; anything but `real` is rejected):",
        "",
        "| configuration | APCER | BPCER | ACER | real images: real / spoof / uncertain / no face "
        "| spoof images: real / spoof / uncertain / no face |",
        "|---|---|---|---|---|---|",
    ]
    for r in run.results:
        if r.status == "ok":
            d = r.decision_metrics
            real, spoof = r.decision_counts(1), r.decision_counts(0)
            lines.append(
                f"| {r.name} | {_pct(d.apcer)} | {_pct(d.bpcer)} | {_pct(d.acer)} | "
                f"{' / '.join(map(str, real.values()))} | {' / '.join(map(str, spoof.values()))} |"
            )
    return "\n".join(lines) + "\n"


def plot_roc_det(run: AccuracyRun, path: str | Path) -> None:
    """ROC and DET per configuration, drawn by the training report's ``plot_roc`` (one plotting code path)."""
    curves = {
        f"{r.name} (AUC {r.metrics.auc:.3f})": ([o.label for o in r.outcomes], [o.score for o in r.outcomes])
        for r in run.results
        if r.status == "ok" and r.metrics.n_real and r.metrics.n_spoof
    }
    plot_roc(curves, Path(path))


def write_accuracy_report(run: AccuracyRun, out_dir: str | Path) -> dict[str, Path]:
    """accuracy.md, accuracy.json (every image's outcome too) and accuracy_roc_det.png in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "accuracy.md", "json": out / "accuracy.json", "roc": out / "accuracy_roc_det.png"}
    sources = ", ".join(run.options["data"])
    paths["table"].write_text(f"# bench accuracy\n\nData: {sources}\n\n" + accuracy_table(run))
    write_json(run.to_dict(), paths["json"])
    if not can_plot():
        return {k: v for k, v in paths.items() if v.suffix != ".png"}
    plot_roc_det(run, paths["roc"])
    return paths
