"""Score gathered crops with a model file as it is (no training): the zero-shot baseline of a pretrained
network on every source, and the fusion of two networks (mean of their P(real), i.e. the sum of softmaxes).

Every source is out-of-source for a network trained elsewhere, so its pooled predictions also choose the
transferable threshold (``metrics.transfer_threshold``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import Sample, holdout_unit
from .metrics import PadMetrics, TransferThreshold, pad_metrics, transfer_threshold
from .train import REPORTED_SEPARATELY, load_images, load_samples, predictions, read_preprocessing

def p_real_of_file(model_file: str | Path, data_root: str | Path, samples: Sequence[Sample]) -> np.ndarray:
    """P(real) of a Keras model file on gathered crops. A model whose input is named ``*bgr*`` (the shared
    Silent-Face port) gets BGR pixels; a model ending in a linear layer gives logits, softmaxed here; with
    3 classes, class 1 is real (Silent-Face's order), with 2, ``LABELS`` order (1 = real) too."""
    import keras

    model = keras.models.load_model(model_file, compile=False)
    bgr = "bgr" in model.inputs[0].name.lower()
    pre = read_preprocessing(Path(data_root), int(model.inputs[0].shape[1]), "BGR" if bgr else "RGB")
    x = load_images(samples, pre)
    out = np.asarray(model.predict(x, batch_size=128, verbose=0), np.float64)
    last = model.layers[-1]
    if getattr(last, "activation", None) is not None and last.activation.__name__ == "linear":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    return out[:, 1]


@dataclass
class ZeroShotResult:
    """Per-unit and per-source metrics at a fixed threshold and at the transferred one."""

    names: list[str]
    fixed_threshold: float
    transfer: TransferThreshold
    per_unit: dict[str, dict[str, PadMetrics]]
    per_source: dict[str, PadMetrics]

    def to_dict(self) -> dict:
        return {
            "models": self.names, "fixed_threshold": self.fixed_threshold, "transfer": self.transfer.to_dict(),
            "per_unit": {u: {k: m.to_dict() for k, m in v.items()} for u, v in self.per_unit.items()},
            "per_source": {s: m.to_dict() for s, m in self.per_source.items()},
        }


def zero_shot(
    model_files: Sequence[str | Path], data_roots: Sequence[str | Path], out: str | Path,
    fixed_threshold: float = 0.5, sources: Sequence[str] | None = None,
) -> ZeroShotResult:
    """Score every crop with each model on its own gathered folder (same sources, same file names; the
    context and crop mode each model needs), fuse by the mean P(real), and write ``out``.{json,md} plus the
    per-sample predictions ``out``.predictions.json."""
    if len(model_files) != len(data_roots) or not model_files:
        raise ValueError("give one gathered folder per model file")
    per_root = [{s.path.name: s for s in load_samples(Path(r), sources)} for r in data_roots]
    common = sorted(set.intersection(*(set(d) for d in per_root)))
    if not common:
        raise ValueError("the gathered folders share no crop file names")
    samples = [per_root[0][name] for name in common]
    p = np.mean([p_real_of_file(m, r, [d[name] for name in common])
                 for m, r, d in zip(model_files, data_roots, per_root)], axis=0)
    result = summarise([Path(m).name for m in model_files], samples, p, fixed_threshold)
    write_zero_shot(result, samples, p, Path(out), Path(data_roots[0]))
    return result


def summarise(names: list[str], samples: Sequence[Sample], p: np.ndarray, fixed: float) -> ZeroShotResult:
    """Metrics per unit and source at ``fixed`` and at the threshold transferred from all units but the
    ones reported separately."""
    y = np.array([s.label for s in samples])
    units = np.array([holdout_unit(s.source) for s in samples], dtype=object)
    attacks = [s.attack for s in samples]
    keep = ~np.isin(units, REPORTED_SEPARATELY)
    transfer = transfer_threshold(y[keep], p[keep], units[keep])
    per_unit: dict[str, dict[str, PadMetrics]] = {}
    for unit in sorted(set(units)):
        idx = np.nonzero(units == unit)[0]
        per_unit[unit] = {label: pad_metrics(y[idx], p[idx], t, [attacks[i] for i in idx])
                          for label, t in (("fixed", fixed), ("transfer", transfer.threshold))}
    per_source = {}
    for source in sorted({s.source for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.source == source]
        per_source[source] = pad_metrics(y[idx], p[idx], transfer.threshold, [attacks[i] for i in idx])
    return ZeroShotResult(names, fixed, transfer, per_unit, per_source)


def write_zero_shot(
    result: ZeroShotResult, samples: Sequence[Sample], p: np.ndarray, out: Path, data_root: Path
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    rows = predictions(samples, p, data_root)
    out.parent.joinpath(out.name + ".predictions.json").write_text(json.dumps(rows) + "\n")
    out.parent.joinpath(out.name + ".md").write_text(zero_shot_markdown(result))


def zero_shot_markdown(result: ZeroShotResult) -> str:
    """One row per unit: AUC, EER, then APCER (worst type) / BPCER / ACER at both thresholds."""
    t = result.transfer
    lines = [
        f"Zero-shot {' + '.join(result.names)}; transferred threshold {t.threshold:.3f}, "
        f"band [{t.spoof_below:.3f}, {t.real_above:.3f}] (units {', '.join(t.units)})",
        "",
        f"| unit | n real | n spoof | AUC | EER | APCER@{result.fixed_threshold} | BPCER@{result.fixed_threshold} |"
        f" ACER@{result.fixed_threshold} | APCER@t | BPCER@t | ACER@t |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for unit, m in result.per_unit.items():
        f, tr = m["fixed"], m["transfer"]
        rows.append((unit, f, tr))
        lines.append(f"| {unit} | {f.n_real} | {f.n_spoof} | {f.auc:.3f} | {f.eer:.3f} | {f.apcer:.3f} |"
                     f" {f.bpcer:.3f} | {f.acer:.3f} | {tr.apcer:.3f} | {tr.bpcer:.3f} | {tr.acer:.3f} |")
    main = [(f, tr) for unit, f, tr in rows if unit not in REPORTED_SEPARATELY]
    if main:
        keys = ("auc", "eer", "apcer", "bpcer", "acer")
        mean = {k: float(np.nanmean([getattr(f, k) for f, _ in main])) for k in keys}
        mt = {k: float(np.nanmean([getattr(tr, k) for _, tr in main])) for k in ("apcer", "bpcer", "acer")}
        lines.append(f"| mean (without {', '.join(REPORTED_SEPARATELY)}) | | | {mean['auc']:.3f} | {mean['eer']:.3f} |"
                     f" {mean['apcer']:.3f} | {mean['bpcer']:.3f} | {mean['acer']:.3f} | {mt['apcer']:.3f} |"
                     f" {mt['bpcer']:.3f} | {mt['acer']:.3f} |")
    return "\n".join(lines) + "\n"


def write_pretrained_run(
    model_file: str | Path, data_dir: str | Path, run_dir: str | Path, result: ZeroShotResult,
    data_base: Path | None = None,
) -> None:
    """A run dir for the pretrained network as it is (no training): model.keras rebuilt with this project's
    builder (RGB input via the kernel flip), config.json whose threshold and band are the transferred ones,
    metrics.json with every unit's metrics at that threshold. No group was trained on, so all are held out;
    export calibrates int8 on a sample of them."""
    from .data import load_index
    from .models import LABELS, build_minifasnet, load_init_weights, numpy2_deprecations_hushed
    from .train import _write_json, data_path_for_config, read_preprocessing

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_minifasnet()
    load_init_weights(model, model_file)
    with numpy2_deprecations_hushed():
        model.save(run_dir / "model.keras")
    groups = sorted({s.group for s in load_index(data_dir)})
    t = result.transfer
    config = {
        "name": "minifasnet",
        "preprocessing": read_preprocessing(data_dir, int(model.inputs[0].shape[1])).to_dict(),
        "labels": LABELS,
        "threshold": t.threshold,
        "band": [t.spoof_below, t.real_above],
        "threshold_rule": t.to_dict()["rule"],
        "input_shape": [int(d) for d in model.inputs[0].shape[1:]],
        "data": {"path": data_path_for_config(data_dir, data_base),
                 "path_relative_to": "the data root given to export-models (--data-root)",
                 "sources": sorted(result.per_source)},
        "split": {"train": {"groups": groups, "n": 0,
                            "note": "zero-shot: nothing was trained on; int8 calibration samples these crops"},
                  "test": {"groups": groups, "n": sum(m.n_real + m.n_spoof for m in result.per_source.values())}},
        "init": {"file": Path(model_file).name, "origin": "Silent-Face-Anti-Spoofing (minivision-ai), Apache-2.0",
                 "trained": False},
        "params": int(model.count_params()),
    }
    _write_json(run_dir / "config.json", config)
    _write_json(run_dir / "labels.json", LABELS)
    _write_json(run_dir / "metrics.json", {
        "threshold": t.threshold, "transfer": t.to_dict(),
        "test_per_source": {u: m["transfer"].to_dict() for u, m in result.per_unit.items()},
        "test_per_dataset": {s: m.to_dict() for s, m in result.per_source.items()},
        "fixed_threshold": result.fixed_threshold,
        "at_fixed_threshold": {u: m["fixed"].to_dict() for u, m in result.per_unit.items()},
    })
