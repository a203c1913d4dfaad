"""Box arithmetic in one place. Boxes are (x1, y1, x2, y2) in frame pixels."""
from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` (4,) against boxes ``b`` (N, 4)."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def clipped(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box's integer pixel extent inside a ``width`` x ``height`` frame (may be empty)."""
    x1, y1, x2, y2 = box
    return max(int(x1), 0), max(int(y1), 0), min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)


def inside_fraction(box: Box, width: int, height: int) -> float:
    """Share of the box's area that lies inside the frame."""
    ix1, iy1, ix2, iy2 = clipped(box, width, height)
    return min(max(ix2 - ix1, 0) * max(iy2 - iy1, 0) / max(area(box), 1.0), 1.0)


def jumped(old: Box, new: Box, max_shift: float, max_scale: float) -> bool:
    """True when ``new`` is not a plausible next position of ``old``: its centre moved more than ``max_shift``
    times the smaller box side, or its side changed by more than the factor ``max_scale``."""
    side_old, side_new = max(old[2] - old[0], old[3] - old[1]), max(new[2] - new[0], new[3] - new[1])
    if min(side_old, side_new) <= 0:
        return True
    if max(side_old, side_new) / min(side_old, side_new) > max_scale:
        return True
    dx = (new[0] + new[2] - old[0] - old[2]) / 2.0
    dy = (new[1] + new[3] - old[1] - old[3]) / 2.0
    return float(np.hypot(dx, dy)) > max_shift * min(side_old, side_new)
