"""Reading image files safely: the pixel count is checked from the header before anything is decoded, and a
truncated JPEG is an error instead of a half-grey picture judged as a face.

OpenCV decodes whatever it is given (a 389 KB PNG can claim 30,000 x 30,000 pixels and take gigabytes), and
libjpeg fills a cut-off JPEG with grey after a warning on stderr. So the header is read here first (JPEG,
PNG, BMP, WebP, TIFF), a JPEG must reach its end-of-image marker, and libjpeg's messages are caught.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from .terminal import native_stderr

DEFAULT_MAX_PIXELS = 50_000_000
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_TRUNCATION_HINTS = ("premature end", "corrupt jpeg data", "truncated")


class ImageProblem(ValueError):
    """Why an image file was not decoded (the caller names the file and picks skip or error)."""


def _jpeg(data: bytes) -> tuple[tuple[int, int] | None, bool]:
    """(size, complete): walk the marker segments and entropy-coded scans up to the end-of-image marker."""
    size, i, n = None, 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            return size, False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0xD9:
            return size, True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        if i + 4 > n:
            return size, False
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            size = size or (w, h)
        i += 2 + length
        if marker == 0xDA:  # scan data runs to the next marker that is not a stuffed 0xFF00 or a restart
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return size, False
                following = data[j + 1]
                if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    i = j + 1
                    continue
                i = j
                break
    return size, False


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt, raw = ("H", entry[8:10]) if kind == 3 else ("I", entry[8:12])  # SHORT or LONG
            found[tag] = struct.unpack(order + fmt, raw)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        b0, b1, b2, b3 = data[21:25]
        return 1 + (((b1 & 0x3F) << 8) | b0), 1 + (((b3 & 0x0F) << 10) | (b2 << 2) | ((b1 & 0xC0) >> 6))
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG, BMP, WebP or TIFF file; None if unrecognised."""
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)[0]
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
    except struct.error:
        return None
    return None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """BGR pixels of an encoded image (EXIF orientation applied, like a photo viewer); ``ImageProblem`` when
    the header is unknown, the image is larger than ``max_pixels``, truncated or not decodable."""
    size = image_size(data)
    if size is None:
        raise ImageProblem("not a JPEG, PNG, BMP, WebP or TIFF image, or its header is damaged")
    w, h = size
    if w * h > max_pixels:
        raise ImageProblem(
            f"{w}x{h} is {w * h / 1e6:.0f} megapixels, over the {max_pixels / 1e6:g} MP limit (--max-megapixels)"
        )
    if data[:2] == b"\xff\xd8" and not _jpeg(data)[1]:
        raise ImageProblem("truncated JPEG (no end-of-image marker)")
    with native_stderr() as caught:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    said = "; ".join(caught.lines)
    if image is None:
        raise ImageProblem("not decodable, or corrupt" + (f" ({said})" if said else ""))
    if any(hint in said.lower() for hint in _TRUNCATION_HINTS):
        raise ImageProblem(f"truncated or corrupt ({said})")
    return image
