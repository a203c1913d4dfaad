"""Drawing results onto the frame (in place: the frame is not needed unannotated afterwards)."""
from __future__ import annotations

import cv2
import numpy as np

from .challenge import ChallengeStatus
from .smoothing import REAL, SPOOF
from .types import FaceResult, FrameResult

COLOURS = {REAL: (0, 200, 0), SPOOF: (0, 0, 230)}  # BGR
UNCERTAIN_COLOUR = (0, 190, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """Text on a filled box so it reads on any background; shrunk to fit the image's width."""
    thickness = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    room = image.shape[1] - x
    if w > room > 0:
        scale *= room / w
        thickness = max(1, int(round(scale * 2)))
        (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    y = max(y, h + base)
    cv2.rectangle(image, (x, y - h - base), (x + w, y + base // 2), colour, cv2.FILLED)
    cv2.putText(image, text, (x, y - base // 2), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def face_label(face: FaceResult, band: tuple[float, float] | None = None) -> str:
    """``#1 real  P(real) 0.93``: the score is named, so ``spoof  P(real) 0.04`` cannot read as "4 % spoof".

    Hysteresis keeps a decision until the score leaves the band around the threshold; a decision shown with
    a score on the other side of the threshold is marked ``(held)`` instead of looking like a contradiction.
    """
    text = f"#{face.track} {face.decision}  P(real) {face.p_real_smoothed:.2f}"
    if band is not None:
        low, high = band
        p = face.p_real_smoothed
        if (face.decision == REAL and p < high) or (face.decision == SPOOF and p > low):
            text += " (held)"
    return text


def draw(
    image: np.ndarray, result: FrameResult, fps: float | None = None, band: tuple[float, float] | None = None
) -> np.ndarray:
    """Boxes coloured by decision with track id and P(real), and a status line with FPS and stage times.
    ``band`` (spoof below, real above) is the pipeline's hysteresis band, shown in the status line."""
    scale = max(0.45, min(image.shape[:2]) / 900.0)
    thickness = max(2, int(round(scale * 3)))
    for face in result.faces:
        colour = COLOURS.get(face.decision, UNCERTAIN_COLOUR)
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        _label(image, face_label(face, band), x1, y1 - thickness, colour, scale)
        if face.reason:
            _label(image, face.reason, x1, y2 + int(30 * scale), colour, scale * 0.8)
    t = result.times
    status = f"det {t.detect:.1f} | live {t.liveness:.1f} | total {t.total:.1f} ms"
    if fps:
        status = f"{fps:.1f} FPS | " + status
    if band is not None:
        status += f" | real >= {band[1]:.2f}, spoof <= {band[0]:.2f}"
    _label(image, status, 0, 0, (40, 40, 40), scale * 0.8)
    if result.challenge is not None:
        _challenge_prompt(image, result.challenge, scale)
    return image


def _challenge_prompt(image: np.ndarray, status: ChallengeStatus, scale: float) -> None:
    """What the person must do now (and the seconds left), large, at the bottom; green/red once decided."""
    colour = {"passed": COLOURS[REAL], "failed": COLOURS[SPOOF]}.get(status.state, (120, 60, 0))
    text = status.prompt
    if status.remaining_s is not None:
        text += f"  ({max(0.0, status.remaining_s):.0f} s)"
    (_, h), _ = cv2.getTextSize(text, FONT, scale * 1.4, 2)
    _label(image, text, 0, image.shape[0] - h // 2, colour, scale * 1.4)
