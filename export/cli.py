"""``export-models``: argparse -> ExportOptions -> export_models / verify_models; errors as one line."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..extras import import_quietly, require_train_extra
from ..runtime.errors import run_cli
from ..runtime.manifest import ARTIFACTS_DIR
from .options import FORMATS, PRECISIONS, ExportOptions, OnnxQuantOptions

DEFAULT_RUNS = ("livenessnet", "mobilenetv3", "minifasnet")
VERIFY_OUT = Path("verify_results")


def _list(allowed: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (got {text!r})")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export-models",
        description="Convert trained Keras runs to ONNX and TFLite (float32 and int8), check every file against "
        "Keras on held-out crops through the runtime, and write manifest.json + verification.md. Files are "
        "staged and only shipped when every check passed.",
        epilog="Exit codes: 0 ok, 2 export/verification failed or bad arguments, 3 bad run or model file, "
        "4 bad manifest, 5 missing crops/data.",
    )
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="training run folders with model.keras + config.json (default: artifacts/livenessnet "
                   "artifacts/mobilenetv3 artifacts/minifasnet)")
    p.add_argument("--out", type=Path, help=f"output folder holding manifest.json (default: {ARTIFACTS_DIR}); "
                   f"with --verify: the folder for its report (default: {VERIFY_OUT})")
    p.add_argument("--formats", type=_list(FORMATS), default=FORMATS, help="comma list (default: onnx,tflite)")
    p.add_argument("--precision", type=_list(PRECISIONS), default=PRECISIONS, help="comma list (default: fp32,int8)")
    p.add_argument("--calibration", type=Path, metavar="DIR",
                   help="face crops for int8 calibration (a gathered folder with index.csv, or real/ and spoof/ "
                   "image folders; default: the run's own training groups)")
    p.add_argument("--data-root", type=Path, metavar="DIR",
                   help="folder that the runs' config.json data paths are relative to (e.g. the folder holding "
                   "the gathered sets)")
    p.add_argument("--calibration-size", type=int, default=300, help="crops used for calibration (default: 300)")
    p.add_argument("--heldout-size", type=int, default=1000, help="max held-out crops to verify on (default: 1000)")
    p.add_argument("--verify", action="store_true",
                   help="only verify the files the manifest lists (sha256, Keras agreement, latency); reads the "
                   "manifest and its files, writes only to --out, exit non-zero when a file does not match")
    p.add_argument("--manifest", type=Path, default=ARTIFACTS_DIR / "manifest.json",
                   help="with --verify: the manifest to check (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="inference threads when timing (default: 1)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--fp32-tolerance", type=float, default=1e-3,
                   help="max |ΔP(real)| of a float32 file vs Keras before the export fails (default: 1e-3)")
    p.add_argument("--max-int8-drift", type=float, default=0.05,
                   help="max mean |ΔP(real)| of an int8 file vs Keras before the export fails (default: 0.05)")
    p.add_argument("--onnx-float-convs", type=int, metavar="N",
                   help="leading convolutions kept in float in the int8 ONNX (default: measured per model "
                   "among 1,2,4,6,8 on this machine: the fastest within --max-int8-drift)")
    p.add_argument("--tflite-weights", choices=("auto", "per-channel", "per-tensor"), default="auto",
                   help="int8 TFLite weight scales (default auto: per-tensor, the smaller file, unless it drifts "
                   "clearly more than per-channel)")
    p.add_argument("--no-detector", action="store_true", help="do not (re)convert the BlazeFace detectors")
    return p


def options_from(args: argparse.Namespace) -> ExportOptions:
    return ExportOptions(
        out=args.out or (VERIFY_OUT if args.verify else ARTIFACTS_DIR),
        formats=args.formats,
        precisions=args.precision,
        calibration=args.calibration,
        data_root=args.data_root,
        calibration_size=args.calibration_size,
        heldout_size=args.heldout_size,
        threads=args.threads,
        opset=args.opset,
        fp32_tolerance=args.fp32_tolerance,
        max_int8_drift=args.max_int8_drift,
        detector=not args.no_detector,
        tune_onnx=args.onnx_float_convs is None,
        tune_tflite=args.tflite_weights == "auto",
        tflite_per_channel=args.tflite_weights != "per-tensor",
        onnx_quant=OnnxQuantOptions(float_convs=1 if args.onnx_float_convs is None else args.onnx_float_convs),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as e:
        parser.error(str(e))
    runs = args.runs or [(args.manifest.parent if args.verify else ARTIFACTS_DIR) / name for name in DEFAULT_RUNS]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if code := run_cli("export-models", lambda: require_train_extra("exporting or verifying models")):
        return code
    exporter = import_quietly(".exporter", __package__)

    def body() -> int:
        if args.verify:
            result = exporter.verify_models(runs, options, args.manifest)
        else:
            result = exporter.export_models(runs, options)
        print(result.report_path.read_text())
        print(f"wrote {result.manifest_path} and {result.report_path}")
        return 0

    return run_cli("export-models", body, "interrupted; nothing shipped")


if __name__ == "__main__":
    raise SystemExit(main())
