"""Writing outputs safely: fail before any work, never leave a half-written file.

Every writer in csg goes through :func:`atomic_output`: a temporary file in the destination folder,
renamed onto the destination only when writing finished.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (:class:`OutputError`) if ``path`` exists without ``overwrite``, is a folder, or
    its folder is missing or not writable. Returns ``Path(path)``."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: output is a folder; give a file name")
    if p.exists() and not overwrite:
        raise OutputError(f"{p}: output exists; pass --overwrite (overwrite=True) or choose "
                          "another name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{p}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: output folder {parent} is not writable")
    return p


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it onto ``path`` when the block
    exits cleanly, delete it when the block raises. Checks :func:`check_output_path` first.

    The file gets ordinary permissions (0666 less the umask), not mkstemp's 0600.
    """
    p = check_output_path(path, overwrite=overwrite)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}",
                                   dir=p.parent if str(p.parent) else ".")
    except OSError as e:
        raise OutputError(f"{p}: cannot write here ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        if not overwrite and p.exists():
            raise OutputError(f"{p}: output appeared while writing; not replacing it")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
