"""What file names and folder names mean, in one place: which files are images or videos, and which folders
say ``real`` or ``spoof`` (and the attack type). Gathering, calibration, ``bench accuracy`` and the image
source all read these, so a folder that one accepts the others accept too."""
from __future__ import annotations

from typing import Sequence

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
REAL_NAMES = frozenset({"real", "live", "genuine", "bonafide", "bona_fide", "bona-fide"})
SPOOF_NAMES = frozenset({"spoof", "fake", "attack", "imposter", "impostor"})
LABELS = {"spoof": 0, "real": 1}
NO_ATTACK = "none"
UNKNOWN_ATTACK = "unknown"


def label_from_parts(parts: Sequence[str]) -> tuple[str | None, str]:
    """(label, attack) from folder names; the deepest real/spoof synonym wins, case-insensitive.

    The attack type is the folder right below the spoof folder (spoof/print/x.jpg -> "print"), else "unknown";
    real samples have attack "none". ``parts`` are folder names only (not the file name).
    """
    for i in range(len(parts) - 1, -1, -1):
        name = parts[i].lower()
        if name in REAL_NAMES:
            return "real", NO_ATTACK
        if name in SPOOF_NAMES:
            return "spoof", parts[i + 1] if i + 1 < len(parts) else UNKNOWN_ATTACK
    return None, UNKNOWN_ATTACK
