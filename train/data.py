"""Face gathering (videos, images, already-cropped sets -> context crops + index.csv) and honest group splits.

Training crops are made with the runtime's own detector and ``Preprocessing.cut`` (the one crop function, in
the mode asked for) so that training and the device see the same pixels. Every crop carries a ``group``
(subject, client, session, video or whole set) so that splits never put near-duplicate frames of one group on two sides.
"""
from __future__ import annotations

import csv
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..runtime.crop import CROP_MODES
from ..runtime.detector import DetectorOptions, FaceDetector
from ..runtime.errors import SourceError, SplitLeak, UsageError
from ..runtime.labels import (  # noqa: F401  (re-exported: the one folder/suffix vocabulary)
    IMAGE_SUFFIXES,
    LABELS,
    NO_ATTACK,
    REAL_NAMES,
    SPOOF_NAMES,
    UNKNOWN_ATTACK,
    VIDEO_SUFFIXES,
    label_from_parts,
)
from ..runtime.preprocessing import Preprocessing
from ..runtime.types import Face

INDEX_COLUMNS = (
    "file", "label", "attack", "source", "group", "source_file", "frame",
    "x1", "y1", "x2", "y2", "detector_score", "context", "crop_size", "crop_mode",
)
EPOCH_RE = re.compile(r"(?<!\d)(1[0-9]{9})\d*(?!\d)")  # 2001..2033 in seconds, extra sub-second digits allowed
CAMERA_PREFIX = r"(?:IMG|DSC|DSCN|DSCF|PXL|VID|MVI|MOV)_"  # camera-roll names only, not e.g. frame_00042
SEQUENCE_RE = re.compile(rf"^({CAMERA_PREFIX}\d+)_(\d+)(?:_|$)", re.I)  # IMG_0700_123: frame 123 of clip IMG_0700
SHOT_RE = re.compile(rf"^({CAMERA_PREFIX})(\d+)(?:_|$)", re.I)  # IMG_0356_*: one camera-roll shot
TIMESTAMP_GAP_S = 60
SHOT_BLOCK = 10
MIN_GROUPS_TO_STRATIFY = 5
EXAMPLES_KEPT = 3


class GatherError(UsageError):
    """Bad gather arguments or an output folder that would be overwritten (a usage error, exit 2)."""


# ---------------------------------------------------------------------------------------------------------------
# Labels, attack types and groups from paths
# ---------------------------------------------------------------------------------------------------------------


def _epoch_seconds(name: str) -> int | None:
    match = EPOCH_RE.search(name)
    return int(match.group(1)) if match else None


def _timestamp_clusters(stamps: dict[str, int]) -> dict[str, str]:
    """Cluster epoch timestamps: a new cluster starts after a gap of more than ``TIMESTAMP_GAP_S`` seconds."""
    out: dict[str, str] = {}
    previous, start = None, None
    for key, t in sorted(stamps.items(), key=lambda kv: (kv[1], kv[0])):
        if previous is None or t - previous > TIMESTAMP_GAP_S:
            start = t
        out[key] = f"t{start}"
        previous = t
    return out


def _name_group(stem: str) -> str | None:
    """Camera-style names: frames of one clip (IMG_0700_123) share the clip; single shots (IMG_0356) are
    bucketed in blocks of ``SHOT_BLOCK`` consecutive numbers, since neighbouring shots show the same scene."""
    match = SEQUENCE_RE.match(stem)
    if match:
        return match.group(1)
    match = SHOT_RE.match(stem)
    if match:
        number = int(match.group(2))
        return f"{match.group(1)}{number // SHOT_BLOCK * SHOT_BLOCK:0{len(match.group(2))}d}+"
    return None


def read_group_index(root: Path) -> dict[str, str]:
    """Group per file from ``root/index.csv`` (column ``group``, else ``subject``), keyed by relative path and,
    where unambiguous, by file name. Empty when there is no usable index."""
    path = root / "index.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        column = "group" if "group" in columns else "subject" if "subject" in columns else None
        if column is None or "file" not in columns:
            return {}
        rows = [(r["file"], r[column]) for r in reader if r.get("file") and r.get(column)]
    by_path = {Path(file).as_posix(): group for file, group in rows}
    names = Counter(Path(file).name for file, _ in rows)
    by_name = {Path(file).name: group for file, group in rows if names[Path(file).name] == 1}
    return {**by_name, **by_path}


def assign_groups(source: str, root: Path, files: Sequence[Path]) -> dict[Path, str]:
    """The split unit of every file, prefixed with the source: index.csv group/subject, else the video file,
    else epoch-timestamp clusters or camera clip/shot names, else the whole source as one group."""
    index = read_group_index(root)
    stamps: dict[str, int] = {}
    groups: dict[Path, str] = {}
    for path in files:
        rel = _relative(path, root)
        if rel in index or path.name in index:
            groups[path] = index.get(rel, index.get(path.name, ""))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            groups[path] = rel
        elif (t := _epoch_seconds(path.stem)) is not None:
            stamps[rel] = t
        elif (name := _name_group(path.stem)) is not None:
            groups[path] = name
        else:
            groups[path] = "all"
    clusters = _timestamp_clusters(stamps)
    for path in files:
        groups.setdefault(path, clusters.get(_relative(path, root), "all"))
    return {path: f"{source}:{group}" for path, group in groups.items()}


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else path.name


# ---------------------------------------------------------------------------------------------------------------
# Gathering
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatherOptions:
    """How faces are found and cropped. ``skip`` frames are skipped between two sampled video frames."""

    source: str | None = None
    label: str | None = None
    context: float = 2.7
    crop_size: int = 128
    crop_mode: str = "pad"
    skip: int = 10
    confidence: float = 0.5
    detector: str = "short"
    assume_cropped: bool = False
    append: bool = False
    jpeg_quality: int = 95


@dataclass
class GatherCounts:
    """What happened to the inputs of one (source, label)."""

    images_read: int = 0
    faces_written: int = 0
    no_face: int = 0
    unreadable: int = 0
    multi_face: int = 0
    assumed_cropped: int = 0
    no_face_examples: list[str] = field(default_factory=list)
    unreadable_examples: list[str] = field(default_factory=list)

    @property
    def no_face_rate(self) -> float:
        return self.no_face / self.images_read if self.images_read else float("nan")


@dataclass
class GatherSummary:
    """Counts per (source, label); ``unlabelled`` lists files no label could be found for."""

    out: Path
    counts: dict[tuple[str, str], GatherCounts] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)

    def for_key(self, source: str, label: str) -> GatherCounts:
        return self.counts.setdefault((source, label), GatherCounts())

    def to_markdown(self) -> str:
        """The table the CLI prints: images read (video frames sampled), faces written and what was skipped."""
        lines = [
            f"Gathered into {self.out} (largest face per image; `multi-face` = images with more than one face)",
            "",
            "| source | label | images read | faces written | no face | no-face rate | unreadable | multi-face"
            " | assumed cropped |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for (source, label), c in sorted(self.counts.items()):
            lines.append(
                f"| {source} | {label} | {c.images_read} | {c.faces_written} | {c.no_face} | {c.no_face_rate:.1%} |"
                f" {c.unreadable} | {c.multi_face} | {c.assumed_cropped} |"
            )
        for (source, label), c in sorted(self.counts.items()):
            if c.no_face_examples:
                lines.append(f"\nno face ({source}/{label}), e.g.: " + ", ".join(c.no_face_examples))
            if c.unreadable_examples:
                lines.append(f"\nunreadable ({source}/{label}), e.g.: " + ", ".join(c.unreadable_examples))
        if self.unlabelled:
            lines.append(f"\n{len(self.unlabelled)} files without a real/spoof folder or --label were skipped, e.g.: "
                         + ", ".join(self.unlabelled[:EXAMPLES_KEPT]))
        return "\n".join(lines)


@dataclass(frozen=True)
class _Input:
    path: Path
    rel: str
    label: str
    attack: str
    group: str


def list_inputs(root: Path) -> list[Path]:
    """Image and video files under ``root`` (or ``root`` itself), sorted for reproducible output."""
    if root.is_file():
        return [root]
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _labelled_inputs(root: Path, options: GatherOptions, source: str, summary: GatherSummary) -> list[_Input]:
    base = root.parent if root.is_file() else root
    files = list_inputs(root)
    groups = assign_groups(source, base, files)
    inputs = []
    for path in files:
        rel = _relative(path, base)
        label, attack = label_from_parts((base.name, *Path(rel).parts[:-1]))
        if options.label is not None:
            attack = attack if label == options.label else (NO_ATTACK if options.label == "real" else UNKNOWN_ATTACK)
            label = options.label
        if label is None:
            summary.unlabelled.append(rel)
            continue
        inputs.append(_Input(path, rel, label, attack, groups[path]))
    return inputs


def _frames(item: _Input, skip: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """(frame number, BGR image or None if unreadable); images are frame -1, videos every ``skip + 1``-th frame."""
    if item.path.suffix.lower() not in VIDEO_SUFFIXES:
        yield -1, _read_image(item.path)
        return
    capture = cv2.VideoCapture(str(item.path))
    try:
        index, sampled = 0, 0
        while capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                break
            if index % (skip + 1) == 0:
                sampled += 1
                yield index, frame
            index += 1
        if sampled == 0:
            yield -1, None
    finally:
        capture.release()


def _read_image(path: Path) -> np.ndarray | None:
    """Decode an image from bytes (works for any path encoding); None for unreadable or corrupt files."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        return None


def largest_face(faces: Iterable[Face]) -> Face | None:
    """The face with the largest box area: the subject in front of the camera, not people in the background."""
    return max(faces, key=lambda f: f.width * f.height, default=None)


def output_name(source: str, rel: str, frame: int) -> str:
    """``<source>__<relative path flattened>[__f<frame>].jpg``: unique per input and traceable to it."""
    flat = "__".join(Path(rel).with_suffix("").parts)
    suffix = f"__f{frame:06d}" if frame >= 0 else ""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{source}__{flat}{suffix}") + ".jpg"


def read_index_rows(out: Path) -> list[dict[str, str]]:
    """Rows of ``out/index.csv`` as dicts (empty when there is none)."""
    path = out / "index.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_index_rows(out: Path, rows: Sequence[dict[str, object]]) -> None:
    """Write ``out/index.csv`` atomically (temp file + rename), so an interrupted run keeps the old index."""
    tmp = out / "index.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "index.csv")


def gather(
    input_path: str | Path, out: str | Path, options: GatherOptions = GatherOptions(),
    detector: FaceDetector | None = None,
) -> GatherSummary:
    """Detect the largest face in every image / sampled video frame under ``input_path`` and write context crops
    to ``out/real`` and ``out/spoof`` plus ``out/index.csv``. Bad files are counted and skipped, never fatal."""
    root, out = Path(input_path), Path(out)
    _check(root, out, options)
    source = options.source or (root.parent.name if root.is_file() else root.name)
    summary = GatherSummary(out)
    inputs = _labelled_inputs(root, options, source, summary)
    detector = detector or FaceDetector.from_file(
        options=DetectorOptions(variant=options.detector, min_score=options.confidence)
    )
    rows = {r["file"]: r for r in read_index_rows(out)}
    for label in LABELS:
        (out / label).mkdir(parents=True, exist_ok=True)
    try:
        for item in tqdm(inputs, desc=f"gather {source}", unit="file"):
            for frame_no, frame in _frames(item, options.skip):
                row = _gather_one(item, frame_no, frame, source, out, options, detector, summary)
                if row is not None:
                    rows[row["file"]] = row
    finally:
        write_index_rows(out, list(rows.values()))
    return summary


def _check(root: Path, out: Path, options: GatherOptions) -> None:
    if not root.exists():
        raise SourceError(f"input not found: {root}")
    if options.label is not None and options.label not in LABELS:
        raise GatherError(f"--label must be real or spoof, not {options.label!r}")
    if options.context <= 0 or options.crop_size < 8 or options.skip < 0 or not 0 < options.confidence < 1:
        raise GatherError("need context > 0, crop size >= 8, skip >= 0 and 0 < confidence < 1")
    if options.crop_mode not in CROP_MODES:
        raise GatherError(f"--crop-mode must be one of {', '.join(CROP_MODES)}, not {options.crop_mode!r}")
    if (out / "index.csv").is_file() and not options.append:
        raise GatherError(f"{out / 'index.csv'} exists; pass --append to add to it")


def _gather_one(
    item: _Input, frame_no: int, frame: np.ndarray | None, source: str, out: Path, options: GatherOptions,
    detector: FaceDetector, summary: GatherSummary,
) -> dict[str, object] | None:
    counts = summary.for_key(source, item.label)
    where = item.rel if frame_no < 0 else f"{item.rel}#{frame_no}"
    if frame is None:
        counts.unreadable += 1
        _example(counts.unreadable_examples, where)
        return None
    counts.images_read += 1
    faces = detector.detect(frame)
    counts.multi_face += len(faces) > 1
    face = largest_face(faces)
    if face is not None:
        box, score = face.box, face.score
    elif options.assume_cropped:
        h, w = frame.shape[:2]
        box, score = (0.0, 0.0, float(w), float(h)), 0.0
        counts.assumed_cropped += 1
    else:
        counts.no_face += 1
        _example(counts.no_face_examples, where)
        return None
    crop = Preprocessing(options.crop_size, options.context, crop=options.crop_mode).cut(frame, box)
    name = f"{item.label}/{output_name(source, item.rel, frame_no)}"
    if not cv2.imwrite(str(out / name), crop.image, [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]):
        raise SourceError(f"cannot write {out / name}")
    counts.faces_written += 1
    return {
        "file": name, "label": item.label, "attack": item.attack, "source": source, "group": item.group,
        "source_file": item.rel, "frame": frame_no,
        "x1": f"{box[0]:.1f}", "y1": f"{box[1]:.1f}", "x2": f"{box[2]:.1f}", "y2": f"{box[3]:.1f}",
        "detector_score": f"{score:.4f}", "context": options.context, "crop_size": options.crop_size,
        "crop_mode": options.crop_mode,
    }


def _example(examples: list[str], where: str) -> None:
    if len(examples) < EXAMPLES_KEPT:
        examples.append(where)


# ---------------------------------------------------------------------------------------------------------------
# Reading gathered data and splitting it by group
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One gathered crop: ``label`` 1 = real, 0 = spoof."""

    path: Path
    label: int
    attack: str
    source: str
    group: str


def load_index(root: str | Path) -> list[Sample]:
    """All samples of a gathered folder (``root/index.csv``), paths made absolute."""
    root = Path(root)
    rows = read_index_rows(root)
    if not rows:
        raise SourceError(f"no gathered samples in {root} (missing or empty index.csv)")
    return [Sample(root / r["file"], LABELS[r["label"]], r["attack"], r["source"], r["group"]) for r in rows]


SIDES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Samples per side and the groups that went there (for the training report)."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    groups: dict[str, list[str]]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """{side: {source: {"real": n, "spoof": n}}} for reports and sanity checks."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for side in SIDES:
            table: dict[str, dict[str, int]] = defaultdict(lambda: {"real": 0, "spoof": 0})
            for s in getattr(self, side):
                table[s.source]["real" if s.label == 1 else "spoof"] += 1
            out[side] = dict(sorted(table.items()))
        return out


def group_split(
    samples: Sequence[Sample], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Whole groups to train/val/test, stratified per source and class make-up of the group.

    Sources with at least ``MIN_GROUPS_TO_STRATIFY`` groups are split inside: their groups are bucketed into
    real-only / spoof-only / mixed strata, each stratum shuffled by ``seed`` and dealt to the side with the
    largest unfilled fraction of its target sample count; a stratum of 3+ groups gives val and test at least
    one group each, so both classes of such a source are present on every side. Smaller sources (the one-person ``selfrec_*``
    sets) go wholly to one side: shuffled by ``seed`` and dealt the same way by sample count, so some of them
    become held-out sets in val/test.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("need val_fraction, test_fraction >= 0 and val_fraction + test_fraction < 1")
    rng = random.Random(seed)
    targets = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    by_group: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_group[s.group].append(s)
    groups_of_source: dict[str, list[str]] = defaultdict(list)
    for group, members in by_group.items():
        groups_of_source[members[0].source].append(group)
    side_of: dict[str, str] = {}
    small: list[list[str]] = []
    for source in sorted(groups_of_source):
        groups = sorted(groups_of_source[source])
        if len(groups) < MIN_GROUPS_TO_STRATIFY:
            small.append(groups)
            continue
        strata: dict[tuple[bool, bool], list[str]] = defaultdict(list)
        for g in groups:
            labels = {s.label for s in by_group[g]}
            strata[(1 in labels, 0 in labels)].append(g)
        for key in sorted(strata):
            units = [[g] for g in strata[key]]
            rng.shuffle(units)
            side_of.update(_deal(units, by_group, targets, guarantee=len(units) >= 3))
    rng.shuffle(small)
    side_of.update(_deal(small, by_group, targets, guarantee=False))
    split = Split(
        *([s for s in samples if side_of[s.group] == side] for side in SIDES),
        groups={side: sorted(g for g, v in side_of.items() if v == side) for side in SIDES},
    )
    assert_disjoint(split)
    return split


def _deal(
    units: list[list[str]], by_group: dict[str, list[Sample]], targets: dict[str, float], guarantee: bool
) -> dict[str, str]:
    """Give each unit (a list of groups that stay together) to the side that has the largest unfilled fraction
    of its target sample count (relative, so val and test get units early and train is not always first)."""
    total = sum(len(by_group[g]) for unit in units for g in unit)
    filled = dict.fromkeys(SIDES, 0)
    placed: dict[str, list[list[str]]] = {side: [] for side in SIDES}
    for unit in units:
        side = max(SIDES, key=lambda s: 1.0 - filled[s] / (targets[s] * total) if targets[s] > 0 else -np.inf)
        placed[side].append(unit)
        filled[side] += sum(len(by_group[g]) for g in unit)
    if guarantee:
        for side in ("val", "test"):
            if targets[side] > 0 and not placed[side] and len(placed["train"]) > 1:
                smallest = min(placed["train"], key=lambda u: sum(len(by_group[g]) for g in u))
                placed["train"].remove(smallest)
                placed[side].append(smallest)
    return {g: side for side, side_units in placed.items() for unit in side_units for g in unit}


def assert_disjoint(split: Split) -> None:
    """Fail loudly (``SplitLeak``, also under ``python -O``) if a group sits on two sides: that would leak
    near-duplicate frames into evaluation."""
    sides = [set(split.groups[side]) for side in SIDES]
    if sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]:
        raise SplitLeak("a group is on two sides of the split")
    for side in SIDES:
        if not {s.group for s in getattr(split, side)} <= set(split.groups[side]):
            raise SplitLeak(f"a {side} sample lies outside its group's side")


def holdout_unit(source: str, pooled: Sequence[str] = ("selfrec",)) -> str:
    """The LOSO unit of a source, as ``loso --holdouts 'selfrec_*'`` names its fold: ``selfrec_x`` belongs to the
    pooled unit ``selfrec`` (one-person sets are too small to be held out one by one), others are their own."""
    return next((unit for unit in pooled if source.startswith(unit + "_")), source)


def leave_source_out(
    samples: Sequence[Sample], source: str | Sequence[str], val_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Test = every sample of ``source`` (an unseen capture setup; several sources are held out together);
    train/val = a group split of the rest."""
    held_out = {source} if isinstance(source, str) else set(source)
    held = [s for s in samples if s.source in held_out]
    if not held:
        raise ValueError(f"source {source!r} not in the samples")
    rest = group_split([s for s in samples if s.source not in held_out], val_fraction, 0.0, seed)
    split = Split(rest.train, rest.val, held, {**rest.groups, "test": sorted({s.group for s in held})})
    assert_disjoint(split)
    return split
