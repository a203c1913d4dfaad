"""liveness-train: fit one model, run leave-one-source-out, score a model zero-shot, average LOSO runs with their
initial weights, or compare run dirs (thin argparse layer)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from ..extras import import_quietly, require_train_extra
from ..runtime.errors import UsageError, run_cli

def _add_train_options(p: argparse.ArgumentParser) -> None:
    MODEL_NAMES = import_quietly(".models", __package__).MODEL_NAMES  # Keras: after main() checked the extra

    p.add_argument("data", type=Path, help="gathered folder (index.csv + real/ spoof/ crops from liveness-gather)")
    p.add_argument("--model", choices=MODEL_NAMES, required=True, help="which classifier to train")
    p.add_argument("--out", type=Path, required=True, help="run dir to write (created if missing)")
    p.add_argument("--size", type=int, default=0, help="input side in px (default: livenessnet 32, mobilenetv3 96)")
    p.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=8, help="early-stopping patience on val loss (default 8)")
    p.add_argument("--seed", type=int, default=42, help="seed for split, shuffling, augmentation, init")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of groups for validation")
    p.add_argument("--sources", nargs="+", metavar="SOURCE", help="use only these sources of DATA")
    p.add_argument("--exclude-sources", nargs="+", metavar="SOURCE", help="leave these sources of DATA out")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    p.add_argument("--data-root", type=Path, help="folder the run's config.json stores DATA relative to "
                   "(default: DATA's parent); export-models --data-root finds the crops again from it")
    p.add_argument("--init", help="start from the weights of this Keras model file, matched by layer name "
                   "(e.g. ../shared/pretrained/minifasnet/minifasnetv2_80x80.keras); default: random init")
    p.add_argument("--head", type=int, choices=(3, 2), default=3,
                   help="minifasnet: 3 = pretrained 3-logit head (attack classes merged), 2 = new 2-class head")
    p.add_argument("--freeze", metavar="STAGE",
                   help="minifasnet: keep stages up to and including STAGE frozen (e.g. conv_34)")
    p.add_argument("--average", type=float, default=1.0,
                   help="weight-space averaging: keep (1-A)*initial + A*trained weights (default 1 = off)")
    p.add_argument("--balance", choices=("class", "source"), default="class",
                   help="source: every batch draws from the training sources equally (default: class weights only)")
    p.add_argument("--teacher", nargs="+", metavar="RUN_OR_FILE",
                   help="distil from this teacher (run dir or .keras; several = mean softmax); P(real) per crop "
                        "is cached in OUT/teacher.json")
    p.add_argument("--distill-alpha", type=float, default=0.5,
                   help="weight of the teacher's soft targets vs the labels, 0..1 (default 0.5)")
    p.add_argument("--distill-temperature", type=float, default=1.0,
                   help="softmax temperature for teacher and student in the soft term (default 1)")
    p.add_argument("--distill-calibrate", action="store_true",
                   help="rescale the teacher's P(real) per training source on its labels (Platt, slope >= 0)")
    p.add_argument("--extra-data", nargs="+", type=Path, metavar="DIR",
                   help="more gathered folders of the same inputs at other crop contexts: their crops of the "
                        "training groups join training (validation, threshold and test stay on DATA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liveness-train",
        description="Train the liveness classifiers on gathered face crops and report honest (group-split) metrics.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train one model on a group split; writes a run dir",
                         description="Train on a train/val/test split by group (subject, session, video, set).")
    _add_train_options(fit)
    fit.add_argument("--test-fraction", type=float, default=0.15, help="share of groups for test")
    fit.add_argument("--threshold-from", type=Path, metavar="LOSO_JSON",
                     help="ship the threshold and band chosen on the pooled held-out predictions of this LOSO "
                     "summary (loso.json or average_a*.json of the same recipe) instead of the validation EER")
    loso = sub.add_parser("loso", help="leave-one-source-out: one run per held-out source + summary",
                          description="For every source: train on the others, test on it. Writes OUT/<source>/ "
                                      "run dirs and OUT/loso.{md,json,png}.")
    _add_train_options(loso)
    loso.add_argument("--holdouts", nargs="+", metavar="SOURCE",
                      help="hold out only these sources (default all); a glob ('selfrec_*') is one pooled fold")
    loso.add_argument("--summary", type=Path, help="summary path prefix (default OUT/loso)")
    zs = sub.add_parser("zeroshot", help="score a model file as it is on gathered folders; optionally write it "
                        "as a run dir with the transferred threshold",
                        description="Zero-shot: per-source metrics of a (pretrained) model file that never saw these "
                                    "sources, the threshold and band chosen on its pooled predictions, and with "
                                    "--run a run dir (model.keras, config.json, metrics.json) ready for export.")
    zs.add_argument("--model-file", nargs="+", required=True, help="Keras model file(s); two are fused")
    zs.add_argument("--data", nargs="+", type=Path, required=True, help="gathered folder per model file")
    zs.add_argument("--out", type=Path, required=True, help="output prefix for .md, .json, .predictions.json")
    zs.add_argument("--run", type=Path, help="also write a minifasnet run dir built from the first model file")
    zs.add_argument("--data-root", type=Path, help="folder the --data paths are stored relative to in the run's "
                    "config.json (default: the parent of the first --data)")
    avg = sub.add_parser("average", help="weight-space averaging of finished LOSO runs with their initial weights",
                         description="For each A: (1-A)*initial + A*fine-tuned weights of every run under LOSO_DIR, "
                                     "scored on its held-out source; writes LOSO_DIR/average_a<100*A>.{md,json,png}.")
    avg.add_argument("loso_dir", type=Path)
    avg.add_argument("--init", required=True, help="the initial weights the runs were fine-tuned from")
    avg.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5], help="values of A (default 0.25 0.5)")
    avg.add_argument("--data-root", type=Path, help="folder the runs' config.json data paths are relative to")
    cmp = sub.add_parser("compare", help="compare two or more run dirs: test metrics, size, Keras latency",
                         description="Side-by-side test metrics, parameters, .keras size and Keras ms/face.")
    cmp.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="two or more run dirs")
    cmp.add_argument("--out", type=Path, help="output prefix for .md and .png (default: first RUN_DIR/../compare)")
    cmp.add_argument("--timing-runs", type=int, default=100, help="timed model(x) calls per model (default 100)")
    return parser


def _options(args: argparse.Namespace):
    from .train import TrainOptions

    return TrainOptions(
        model=args.model, size=args.size, epochs=args.epochs, batch=args.batch, lr=args.lr, patience=args.patience,
        seed=args.seed, val_fraction=args.val_fraction, test_fraction=getattr(args, "test_fraction", 0.0),
        augment=not args.no_augment, sources=args.sources, exclude_sources=args.exclude_sources,
        verbose=2 if args.quiet else 1,
        init=args.init, head=args.head, freeze=args.freeze, average=args.average, balance=args.balance,
        teacher=[str(t) for t in args.teacher] if args.teacher else None, distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature, distill_calibrate=args.distill_calibrate,
        extra_data=[str(d) for d in args.extra_data] if args.extra_data else None,
    )


def _fit(args: argparse.Namespace) -> None:
    from .train import train_run

    result = train_run(args.data, args.out, _options(args), data_base=args.data_root)
    if args.threshold_from:
        from .train import adopt_transfer_threshold

        result.threshold = adopt_transfer_threshold(args.out, args.threshold_from)
    test = result.test
    print(f"{args.model}: {result.epochs_run} epochs in {result.train_seconds:.0f} s, threshold {result.threshold:.3f}")
    if test is not None:
        print(f"test ACER {test.acer:.4f}  AUC {test.auc:.4f}  EER {test.eer:.4f}  accuracy {test.accuracy:.4f}")
    print(f"run dir: {result.out_dir}")


def _loso(args: argparse.Namespace) -> None:
    from .report import write_loso_summary
    from .train import loso_run

    result = loso_run(args.data, args.out, _options(args), args.holdouts, data_base=args.data_root)
    print(write_loso_summary(result, args.summary or args.out / "loso"))


def _zeroshot(args: argparse.Namespace) -> None:
    from .zeroshot import write_pretrained_run, zero_shot, zero_shot_markdown

    result = zero_shot(args.model_file, args.data, args.out)
    print(zero_shot_markdown(result))
    if args.run:
        write_pretrained_run(args.model_file[0], args.data[0], args.run, result, args.data_root)
        print(f"run dir: {args.run}")


def _average(args: argparse.Namespace) -> None:
    from .averaging import average_loso
    from .report import write_loso_summary

    for a, result in average_loso(args.loso_dir, args.init, args.alphas, args.data_root).items():
        print(f"A = {a}")
        print(write_loso_summary(result, args.loso_dir / f"average_a{round(a * 100):03d}"))


def _compare(args: argparse.Namespace) -> None:
    from .report import compare

    print(compare(args.runs, args.out or args.runs[0].parent / "compare", args.timing_runs))


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ banner out of error output
    if code := run_cli("liveness-train", lambda: require_train_extra("training")):
        return code  # a device install: even --help needs Keras (the model choices)
    args = build_parser().parse_args(argv)
    handlers = {"fit": _fit, "loso": _loso, "zeroshot": _zeroshot, "average": _average, "compare": _compare}

    def body() -> int:
        try:
            handlers[args.command](args)
        except ValueError as e:  # options dataclasses and data checks refuse what cannot work
            raise UsageError(str(e)) from e
        return 0

    return run_cli("liveness-train", body)
