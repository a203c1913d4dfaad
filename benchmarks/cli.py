"""``bench``: latency matrix (default), ``bench --compare A.json B.json``, and ``bench accuracy DATA...``.

A thin argparse layer over ``latency.run_matrix``, ``accuracy.run_accuracy`` and the report writers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..runtime.errors import SourceError, UsageError, run_cli
from ..runtime.manifest import DEFAULT_MANIFEST
from ..runtime.types import DetectorVariant


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _matrix_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=_names, default=(), help="e.g. livenessnet,mobilenetv3 (default: all shipped)")
    parser.add_argument("--backends", type=_names, default=(), help="onnx,tflite (default: all shipped)")
    parser.add_argument("--precision", type=_names, default=(), help="fp32,int8 (default: all shipped)")
    parser.add_argument("--detector", choices=tuple(DetectorVariant), default=DetectorVariant.SHORT,
                        help="BlazeFace variant")
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="artifacts manifest.json")


def latency_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="Per-stage latency of the liveness-edge pipeline over a matrix of models, backends, "
        "precisions and threads, each in a fresh process, against the classic OpenCV SSD + Keras pipeline. "
        "Also: 'bench accuracy DATA...' (run 'bench accuracy -h').",
    )
    _matrix_flags(p)
    p.add_argument("--threads", type=_ints, default=(1, 2), help="thread counts (default: 1,2)")
    p.add_argument("--source", default="", help="video, image or image folder (default: a clip generated from "
                   "the shipped sample images, 640x480)")
    p.add_argument("--frames", type=int, default=200, help="measured frames per configuration (default: 200)")
    p.add_argument("--warmup", type=int, default=20, help="frames run before measuring (default: 20)")
    p.add_argument("--no-baseline", action="store_true", help="skip the OpenCV SSD + Keras baseline row")
    p.add_argument("--no-detector-rows", action="store_true", help="skip the detector-only rows")
    p.add_argument("--no-challenge-rows", action="store_true",
                   help="skip the rows with an active challenge (face landmarks on every frame, 1 thread, int8)")
    p.add_argument("--baseline-model", default="", help="Keras model for the baseline (default: "
                   "<manifest dir>/livenessnet/model.keras)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration before it fails")
    p.add_argument("--out", default="bench_results", help="folder for latency.md/.json/.png (default: bench_results)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print B/A ratios of two saved runs")
    return p


def accuracy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench accuracy",
        description="Whole-pipeline accuracy over labelled folders (real/ and spoof/ at any depth; "
        "spoof/<attack>/ names the attack type), for each shipped model, backend and precision.",
    )
    p.add_argument("data", nargs="+", help="labelled folder(s)")
    _matrix_flags(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench_results", help="folder for accuracy.md/.json/.png (default: bench_results)")
    return p


def _load_run(path: str):
    from .latency import BenchRun

    try:
        return BenchRun.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SourceError(f"{path} is not a bench latency JSON: {type(e).__name__}: {e}") from e


def _check_counts(frames: int, warmup: int) -> None:
    if frames < 1 or warmup < 0:
        raise UsageError("--frames must be >= 1 and --warmup >= 0")


def run_latency(args: argparse.Namespace) -> int:
    from .latency import MatrixOptions, run_matrix
    from .report import compare_runs, latency_table, write_latency_report

    if args.compare:
        print(compare_runs(_load_run(args.compare[0]), _load_run(args.compare[1])), end="")
        return 0
    _check_counts(args.frames, args.warmup)
    options = MatrixOptions(
        models=args.models,
        backends=args.backends,
        precisions=args.precision,
        threads=args.threads,
        frames=args.frames,
        warmup=args.warmup,
        source=args.source,
        manifest=args.manifest,
        detector=args.detector,
        detector_rows=not args.no_detector_rows,
        challenge_rows=not args.no_challenge_rows,
        baseline=not args.no_baseline,
        baseline_model=args.baseline_model,
        timeout_s=args.timeout,
    )
    run = run_matrix(options)
    paths = write_latency_report(run, args.out)
    print(latency_table(run), end="")
    print(f"bench: wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0 if all(r.status != "failed" for r in run.results) else 1


def run_accuracy_cli(args: argparse.Namespace) -> int:
    from .accuracy import AccuracyOptions, run_accuracy
    from .report import accuracy_table, write_accuracy_report

    options = AccuracyOptions(
        data=tuple(args.data),
        models=args.models,
        backends=args.backends,
        precisions=args.precision,
        threads=args.threads,
        detector=args.detector,
        manifest=args.manifest,
    )
    run = run_accuracy(options)
    paths = write_accuracy_report(run, args.out)
    print(accuracy_table(run), end="")
    print(f"bench accuracy: wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0 if all(r.status == "ok" for r in run.results) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["accuracy"]:
        args = accuracy_parser().parse_args(argv[1:])
        return run_cli("bench", lambda: run_accuracy_cli(args))
    args = latency_parser().parse_args(argv)
    return run_cli("bench", lambda: run_latency(args))

if __name__ == "__main__":
    sys.exit(main())
