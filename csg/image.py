"""Photos in and out: ``(H, W, 3)`` uint8 RGB arrays, read and written through OpenCV.

Alpha is composited on white (a cut-out portrait reads as a person on a white background),
grayscale becomes RGB, 16-bit images are scaled to 8 bits, and the EXIF orientation of JPEGs is
applied (``cv2.IMREAD_COLOR`` does that), so a phone photo comes out upright.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import ImageError, require_file

logger = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000
"""Default cap on H * W when loading (a 40 MP photo); larger images are rejected before decoding."""

_WRITE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Raises :class:`ImageError` (naming the file) when it is missing, not an image, or has more than
    ``max_pixels`` pixels.
    """
    import cv2

    p = require_file(path, "image file", ImageError)
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{p}: image file is empty")
    _check_size(p, data, max_pixels)
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.tobytes().rfind(b"IEND") < 0:
        # a cut-off download or copy; decoding it would print libpng's own error line first
        raise ImageError(f"{p}: the PNG file is truncated (no end chunk); copy or save it again")
    # IMREAD_UNCHANGED keeps alpha but skips EXIF rotation; read colour separately for JPEG-like
    # files, which have no alpha, so their orientation tag is honoured.
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{p}: not a readable image; use png, jpg, webp or bmp")
    if img.shape[0] * img.shape[1] > max_pixels:  # formats whose header we do not parse
        raise ImageError(f"{p}: image is {img.shape[1]}x{img.shape[0]} "
                         f"({img.shape[0] * img.shape[1] / 1e6:.1f} MP), over the limit of "
                         f"{max_pixels / 1e6:g} MP; downscale it or raise max_pixels")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # applies EXIF orientation
    return to_rgb8(img, str(p))


def _check_size(p: Path, data: np.ndarray, max_pixels: int) -> None:
    """Reject images over ``max_pixels`` from the header, before a full decode when possible."""
    hw = _header_size(data)
    if hw is not None and hw[0] * hw[1] > max_pixels:
        raise ImageError(f"{p}: image is {hw[1]}x{hw[0]} ({hw[0] * hw[1] / 1e6:.1f} MP), over the "
                         f"limit of {max_pixels / 1e6:g} MP; downscale it or raise max_pixels")


def _header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(H, W) from a PNG header or JPEG SOF marker; None for other formats."""
    b = data[:65536].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                i += 1
                continue
            marker = b[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                          0xCF):
                return int.from_bytes(b[i + 5:i + 7], "big"), int.from_bytes(b[i + 7:i + 9], "big")
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def to_rgb8(img: np.ndarray, source: str = "image") -> np.ndarray:
    """OpenCV's BGR / BGRA / gray (8 or 16 bit) -> ``(H, W, 3)`` uint8 RGB, alpha over white."""
    import cv2

    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {img.dtype}; save it as 8-bit png/jpg")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{source}: unsupported image shape {img.shape}")
    if img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 2:  # gray + alpha
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)
    if img.shape[2] == 4:
        a = img[..., 3:4].astype(np.float32) / 255.0
        rgb = img[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
        img = rgb.round().astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1])  # BGR -> RGB


def save_image(path: str | os.PathLike, img: np.ndarray, *, overwrite: bool = True,
               quality: int = 95) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` gray) as png/jpg/... by suffix, atomically."""
    import cv2

    from .outputs import atomic_output

    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _WRITE_EXT:
        raise ImageError(f"{p}: unsupported image extension {p.suffix!r}; use "
                         f"{', '.join(_WRITE_EXT)}")
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"{p}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ImageError(f"{p}: OpenCV could not encode a {ext} image")
    with atomic_output(p, overwrite=overwrite) as tmp:
        buf.tofile(str(tmp))
    return p
