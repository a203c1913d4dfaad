"""liveness-gather: turn videos, images or cropped face sets into context crops + index.csv for training."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..runtime.errors import NothingGathered, run_cli
from ..runtime.types import DetectorVariant
from .data import GatherOptions, gather


def build_parser() -> argparse.ArgumentParser:
    defaults = GatherOptions()
    p = argparse.ArgumentParser(
        prog="liveness-gather",
        description="Detect the largest face per image/video frame and write square context crops to "
        "OUT/real, OUT/spoof and OUT/index.csv. Labels come from --label or from folder names "
        "(real/live/genuine/bonafide vs spoof/fake/attack/imposter, any depth; spoof/<type>/ gives the attack).",
    )
    p.add_argument("--input", required=True, help="video or image file, or a folder of them (recursive)")
    p.add_argument("--out", required=True, help="output folder (OUT/real, OUT/spoof, OUT/index.csv)")
    p.add_argument("--source", help="source name for index.csv and group ids (default: the input folder name)")
    p.add_argument("--label", choices=("real", "spoof"), help="label for every input (default: from folder names)")
    p.add_argument("--context", type=float, default=defaults.context, help="crop side / face box side")
    p.add_argument("--crop-mode", choices=("pad", "shift"), default=defaults.crop_mode,
                   help="pad: square, black outside the frame; shift: Silent-Face's crop, shifted inside the frame")
    p.add_argument("--crop-size", type=int, default=defaults.crop_size, help="output crop side in pixels")
    p.add_argument("--skip", type=int, default=defaults.skip, help="video frames skipped between two samples")
    p.add_argument("--confidence", type=float, default=defaults.confidence, help="minimum detector score")
    p.add_argument("--detector", choices=tuple(DetectorVariant), default=defaults.detector,
                   help="BlazeFace short-range (faces within ~2 m) or full-range")
    p.add_argument("--assume-cropped", action="store_true",
                   help="if no face is found, treat the whole image as the face box (for tight face crops)")
    p.add_argument("--append", action="store_true", help="add to an existing OUT/index.csv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = GatherOptions(
        source=args.source, label=args.label, context=args.context, crop_size=args.crop_size,
        crop_mode=args.crop_mode, skip=args.skip,
        confidence=args.confidence, detector=args.detector, assume_cropped=args.assume_cropped, append=args.append,
    )
    def body() -> int:
        summary = gather(args.input, args.out, options)
        print(summary.to_markdown())
        if not any(c.faces_written for c in summary.counts.values()):
            raise NothingGathered(f"no face crop written from {args.input} (see the table above)")
        return 0

    return run_cli("liveness-gather", body, "interrupted; index.csv keeps the crops written so far")

if __name__ == "__main__":
    sys.exit(main())
