"""Face crops for int8 calibration and for verification, read through the runtime's own preprocessing.

By default both come from the training data a run recorded in its config.json: calibration from the run's
training groups (what the model was fitted on), verification from its held-out test groups (never seen).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..runtime.errors import SourceError
from ..runtime.preprocessing import Preprocessing
from ..train.data import IMAGE_SUFFIXES, LABELS, Sample, label_from_parts, list_inputs, load_index

UNKNOWN_LABEL = -1


@dataclass
class CropSet:
    """BGR uint8 face crops with labels (1 real, 0 spoof, -1 unknown) and attack types."""

    images: list[np.ndarray]
    labels: np.ndarray
    attacks: list[str]
    origin: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all()) and len(set(self.labels.tolist())) == 2


def samples_in_dir(root: str | Path) -> list[Sample]:
    """Crops of a folder: a gathered folder (index.csv) or any tree of images, labelled by real/spoof folders."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"calibration folder not found: {root}")
    if (root / "index.csv").is_file():
        return load_index(root)
    samples = []
    for path in list_inputs(root):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        label, attack = label_from_parts(path.relative_to(root).parts[:-1])
        samples.append(Sample(path, LABELS.get(label, UNKNOWN_LABEL), attack, root.name, root.name))
    if not samples:
        raise SourceError(f"no images in calibration folder {root}")
    return samples


def run_data_path(config: dict, data_root: Path | None) -> Path:
    """The gathered folder a run was trained on: config.json stores it relative to a data root (committed
    configs hold no path of the machine they were made on), resolved here against ``data_root``."""
    data = Path(config.get("data", {}).get("path", ""))
    return data if data.is_absolute() or data_root is None else Path(data_root) / data


def samples_of_run(config: dict, side: str, data_root: Path | None = None) -> list[Sample]:
    """The samples of one split side (train/val/test) of a run, found again from its config.json."""
    data = run_data_path(config, data_root)
    groups = set(config.get("split", {}).get(side, {}).get("groups", []))
    if not (data / "index.csv").is_file():
        hint = (f"pass --data-root ROOT (the folder holding {data.name}; train/gather_recipe.sh rebuilds it from "
                "../shared/data, see README 'Gathering faces') or --calibration DIR")
        raise SourceError(f"the run's training data {data} is not here (needed for {side} crops); {hint}")
    samples = [s for s in load_index(data) if s.group in groups]
    if not samples:
        raise SourceError(f"no {side} crops of this run found in {data} (its split groups are not in index.csv)")
    return samples


def pick(samples: Sequence[Sample], n: int, seed: int) -> list[Sample]:
    """Up to ``n`` samples, as many of each class as possible (seeded): calibration must see both classes."""
    rng = random.Random(seed)
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    for group in by_label.values():
        rng.shuffle(group)
    chosen: list[Sample] = []
    while len(chosen) < n and any(by_label.values()):
        for group in by_label.values():
            if group and len(chosen) < n:
                chosen.append(group.pop())
    return sorted(chosen, key=lambda s: str(s.path))


def load_crops(samples: Sequence[Sample], origin: str) -> CropSet:
    """Read the crops; unreadable files are an error (a calibration set with holes would be silently biased)."""
    images = []
    for s in samples:
        image = cv2.imread(str(s.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"unreadable crop: {s.path}")
        images.append(image)
    if not images:
        raise SourceError(f"no crops in {origin}")
    return CropSet(images, np.array([s.label for s in samples], np.int64), [s.attack for s in samples], origin)


def edge_images(preprocessing: Preprocessing) -> np.ndarray:
    """All-black and all-white crops as model inputs: they pin the calibrated input range to the full pixel
    range (0..255 for the shipped models), so the int8 input scale is exactly 1.0 with zero point 0 and
    camera bytes go in unchanged."""
    shape = (preprocessing.size, preprocessing.size, 3)
    return np.stack([preprocessing.apply(np.full(shape, v, np.uint8)) for v in (0, 255)])


def representative_inputs(crops: CropSet, preprocessing: Preprocessing) -> np.ndarray:
    """(N + 2, size, size, 3) float32 model inputs: every crop through ``Preprocessing.apply``, plus the edges."""
    x = np.stack([preprocessing.apply(image) for image in crops.images])
    return np.concatenate([x, edge_images(preprocessing)])

