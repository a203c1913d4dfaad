"""Weight-space averaging of LOSO runs after the fact: ``(1 - a) * initial + a * fine-tuned`` (BatchNorm
statistics included) for several ``a``, each scored on its run's held-out source. This is exactly what
``liveness-train loso --average a`` trains (averaging is applied after fitting), without training again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..runtime.errors import SourceError
from .data import Sample
from .train import LosoResult, RunResult, _metrics, load_images, read_preprocessing


def _held_out(run_dir: Path, data: Path) -> list[Sample]:
    rows = json.loads((run_dir / "predictions.json").read_text())
    return [Sample(data / r["file"], r["label"], r["attack"], r["source"], r.get("group", r["source"]))
            for r in rows]


def average_loso(loso_dir: str | Path, init: str | Path, alphas: Sequence[float], data_root: Path | None = None,
                 ) -> dict[float, LosoResult]:
    """One LosoResult per ``a``, from the run dirs under ``loso_dir`` (their model.keras, config.json and
    predictions.json) and the initial weights ``init``."""
    import keras

    from ..export.calibration import run_data_path
    from .models import build_model, load_init_weights, numpy2_deprecations_hushed

    loso_dir = Path(loso_dir)
    run_dirs = sorted(p.parent for p in loso_dir.glob("*/predictions.json"))
    if not run_dirs:
        raise SourceError(f"no LOSO run dirs with predictions.json under {loso_dir}")
    results: dict[float, dict[str, RunResult]] = {a: {} for a in alphas}
    for run_dir in run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        options = config["train_options"]
        data = run_data_path(config, data_root)
        samples = _held_out(run_dir, data)
        x = load_images(samples, read_preprocessing(data, options["size"]))
        tuned = keras.models.load_model(run_dir / "model.keras", compile=False)
        start = build_model(options["model"], options["size"], options.get("head", 3))
        load_init_weights(start, init)
        with numpy2_deprecations_hushed():
            w0, w1 = start.get_weights(), tuned.get_weights()
        for a in alphas:
            start.set_weights([(1.0 - a) * u + a * v for u, v in zip(w0, w1)])
            p = np.asarray(start.predict(x, batch_size=128, verbose=0))[:, 1]
            m = _metrics(samples, p, config["threshold"])
            results[a][run_dir.name] = RunResult(run_dir, config["threshold"], m, m, {}, 0, 0.0, 0,
                                                 samples, p)
    return {a: LosoResult(config["name"], config["preprocessing"]["context"], runs) for a, runs in results.items()}
