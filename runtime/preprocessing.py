"""How a face crop becomes a model input. Written by training into config.json, carried by export into the
manifest, read by the runtime: the numbers live in one place and this code applies them everywhere."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .crop import CROP_MODES, context_crop
from .types import Crop


@dataclass(frozen=True)
class Preprocessing:
    """``x = pixel * input_scale + input_offset`` on a ``size`` x ``size`` crop in ``color_order``.

    ``context`` is the crop side as a multiple of the face box (see ``crop.context_crop``); ``crop`` is the
    crop mode (``pad`` or ``shift``). Gathering, training, export calibration, the runtime and the bench all
    cut faces with ``Preprocessing.crop``, so a model always sees crops made the way it was trained on.
    The shipped models take raw 0-255 pixels (scale 1, offset 0) and normalise inside the graph, so an
    int8 model can take the camera's bytes as they are.
    """

    size: int
    context: float
    color_order: str = "RGB"
    input_scale: float = 1.0
    input_offset: float = 0.0
    crop: str = "pad"

    def __post_init__(self) -> None:
        if self.color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be RGB or BGR, not {self.color_order!r}")
        if self.size < 8 or self.context <= 0:
            raise ValueError(f"bad preprocessing size={self.size} context={self.context}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, not {self.crop!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            size=int(d["size"]),
            context=float(d["context"]),
            color_order=str(d.get("color_order", "RGB")),
            input_scale=float(d.get("input_scale", 1.0)),
            input_offset=float(d.get("input_offset", 0.0)),
            crop=str(d.get("crop", "pad")),
        )

    def cut(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float], size: int | None = None) -> Crop:
        """The face's context crop in this preprocessing's mode, at ``size`` (default: the model size)."""
        return context_crop(frame_bgr, box, self.context, size or self.size, self.crop)

    def pixels(self, crop_bgr: np.ndarray) -> np.ndarray:
        """uint8 HWC pixels at model size and colour order (resized only if the crop is not at size yet)."""
        if crop_bgr.shape[0] != self.size or crop_bgr.shape[1] != self.size:
            interp = cv2.INTER_AREA if crop_bgr.shape[0] > self.size else cv2.INTER_LINEAR
            crop_bgr = cv2.resize(crop_bgr, (self.size, self.size), interpolation=interp)
        if crop_bgr.ndim == 2:
            crop_bgr = cv2.cvtColor(crop_bgr, cv2.COLOR_GRAY2BGR)
        return crop_bgr[..., ::-1] if self.color_order == "RGB" else crop_bgr

    def apply(self, crop_bgr: np.ndarray) -> np.ndarray:
        """float32 HWC model input for one crop."""
        x = self.pixels(crop_bgr).astype(np.float32)
        if self.input_scale != 1.0 or self.input_offset != 0.0:
            x = x * self.input_scale + self.input_offset
        return x
