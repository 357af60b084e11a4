"""User-facing errors. The CLI prints ``str(err)`` as one line and exits non-zero.

Messages name the file, the field and the fix, e.g.
``pose.json: frame 12, keypoint 95 (left_hand_thumb_4): y is NaN``.
"""
from __future__ import annotations


class CsgError(Exception):
    """Base class of every error caused by user input, configuration or missing weights."""

    exit_code = 1


class InputError(CsgError):
    """A user-supplied file is missing, unreadable or malformed."""

    exit_code = 2


class PoseFormatError(InputError):
    """A skeleton file breaks the ``csg.pose`` contract."""


class AudioError(InputError):
    """Audio is missing, unreadable, empty, silent, too short or too long."""


class ImageError(InputError):
    """An image is missing, unreadable or unusable."""


class NoPersonError(ImageError):
    """No person was found in a photo."""


class ConfigError(CsgError):
    """A config file or override is invalid (unknown key, wrong type)."""


class WeightsNotFoundError(CsgError):
    """Model weights were asked for but are not available locally."""


class DataError(CsgError):
    """A dataset clip is missing, corrupt or inconsistent; the message names the clip."""


class OutputError(CsgError):
    """An output path exists (without --overwrite) or cannot be written."""


def require_file(path, what: str = "file", error: type[InputError] = InputError):
    """Return ``pathlib.Path(path)`` if it is an existing readable file, else raise ``error``."""
    import os
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise error(f"{p}: {what} not found")
    if p.is_dir():
        raise error(f"{p}: expected a {what}, got a directory")
    if not os.access(p, os.R_OK):
        raise error(f"{p}: {what} is not readable (check permissions)")
    return p
