"""Writing outputs safely: fail before any work, never leave a half-written file.

Every writer in csg goes through :func:`atomic_output` (one file) or :class:`OutputSet` (files that
belong together, e.g. a video, its skeleton JSON and its run record):

- outputs may only replace *regular files*: device nodes, FIFOs, sockets, folders and anything
  under ``/dev``, ``/proc`` or ``/sys`` are refused (:func:`check_output_path`);
- an output may not be one of the inputs (same file, not only the same string) nor another output
  of the same command (:func:`check_distinct`);
- each output name is locked (``fcntl.flock`` on a hidden ``.<name>.lock`` next to it) while it is
  written, so two commands writing the same name refuse instead of interleaving;
- data goes to hidden temporary files ``.<stem>.<8 chars>.tmp<suffix>`` in the destination folder,
  renamed onto the outputs only when everything was written (all or none); a failure, Ctrl-C or
  SIGTERM deletes them, and temporary files of that naming left by a killed process are removed by
  the next writer of the same name;
- a full disk becomes one line naming the output and saying that nothing was written.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import OutputError

SYSTEM_ROOTS = ("/dev", "/proc", "/sys")
"""Outputs are never written under these."""

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Temporary files this process is writing through an OutputSet: writers asked to write to one of
# them (VideoWriter, PoseSequence.save) write it in place instead of making a temp of the temp.
_LIVE_TEMPS: set[str] = set()


# --- checks ---------------------------------------------------------------------------------------
def _under_system_root(p: Path) -> str | None:
    try:
        real = os.path.realpath(p)
    except OSError:
        real = os.path.abspath(p)
    for root in SYSTEM_ROOTS:
        if real == root or real.startswith(root + "/"):
            return root
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_suffix(path: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> Path:
    """``Path(path)`` when its extension is one of ``suffixes`` (lower case, with the dot), else an
    :class:`OutputError` naming the file: ``-o talk.txt`` would get an mp4 under a wrong name."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        got = p.suffix or "no extension"
        raise OutputError(f"{p}: {what} must be a {' or '.join(suffixes)} file, not {got}")
    return p


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (:class:`OutputError`) unless ``path`` can be written as a regular file.

    Refused: a path under ``/dev``, ``/proc`` or ``/sys``; an existing path that is not a regular
    file (folder, device, FIFO, socket); an existing file without ``overwrite``; a missing or
    unwritable folder. Returns ``Path(path)``.
    """
    p = Path(path)
    root = _under_system_root(p)
    if root is not None:
        raise OutputError(f"{p}: refusing to write under {root}; give an output file in a normal "
                          "folder")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"{p}: cannot check the output ({e.strerror})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{p}: output is a folder; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{p}: output is {_kind(st.st_mode)}, not a regular file; csg only "
                              "replaces regular files, choose another name")
        if not overwrite:
            raise OutputError(f"{p}: output exists; pass --overwrite (overwrite=True) or choose "
                              "another name")
    elif os.path.islink(p):
        raise OutputError(f"{p}: output is a dangling symbolic link; remove it or choose another "
                          "name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{p}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: output folder {parent} is not writable")
    return p


def _same(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(outputs: Mapping[str, str | os.PathLike],
                   inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse two outputs that are the same file, and an output that is one of the inputs.

    ``outputs`` / ``inputs`` map a label (the option, e.g. ``"--pose-out"``) to a path; ``None``
    inputs are skipped. Same file means same path after resolving links, or same device and inode
    (a hard link).
    """
    outs = [(k, Path(v)) for k, v in outputs.items()]
    for i, (ka, a) in enumerate(outs):
        for kb, b in outs[i + 1:]:
            if _same(a, b):
                raise OutputError(f"{b}: {kb} and {ka} name the same file; give each output its "
                                  "own name")
    for ko, o in outs:
        for ki, src in (inputs or {}).items():
            if src is not None and _same(o, Path(src)):
                raise OutputError(f"{o}: {ko} is the input {ki} ({src}); writing it would destroy "
                                  "the input, choose another output name")


def temp_pattern(path: str | os.PathLike) -> re.Pattern:
    """The names of temporary files csg writes for ``path`` (``.<stem>.<8 chars>.tmp<suffix>``)."""
    p = Path(path)
    return re.compile(r"\." + re.escape(p.stem) + r"\.[A-Za-z0-9_]{8}\.tmp" + re.escape(p.suffix))


_ANY_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp(\..*)?")
# folder -> names that looked like temporary files when this process first wrote there
_TEMP_CACHE: dict[str, set[str]] = {}


def remove_stale_temps(path: str | os.PathLike, *, cached: bool = False) -> list[Path]:
    """Delete temporary files of ``path``'s naming left by a killed writer. Call only while holding
    the lock of ``path`` (a live writer holds it). Returns the files removed.

    ``cached``: list the folder only the first time this process writes there (single-file
    writers that fill folders with thousands of files use this; :class:`OutputSet` lists afresh).
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    pat = temp_pattern(p)
    key = os.path.abspath(folder)
    removed: list[Path] = []
    if cached and key in _TEMP_CACHE:
        names = set(_TEMP_CACHE[key])
    else:
        try:
            names = {n for n in os.listdir(folder) if _ANY_TEMP.fullmatch(n)}
        except OSError:
            return removed
        if cached:
            _TEMP_CACHE[key] = set(names)
    for name in names:
        q = folder / name
        if pat.fullmatch(name) and os.path.abspath(q) not in _LIVE_TEMPS:
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(q).st_mode):
                    os.unlink(q)
                    removed.append(q)
            _TEMP_CACHE.get(key, set()).discard(name)
    return removed


def disk_full_error(exc: BaseException, outputs: Iterable[str | os.PathLike]) -> OutputError | None:
    """An :class:`OutputError` for a full disk / quota / file-size error, else None."""
    err = getattr(exc, "errno", None)
    if err not in _DISK_FULL:
        return None
    names = ", ".join(str(o) for o in outputs)
    why = os.strerror(err) if isinstance(err, int) else "disk full"
    return OutputError(f"{names}: {why} while writing; nothing was written (free some space or "
                       "choose another folder)")


# --- locks ----------------------------------------------------------------------------------------
def _lock_path(p: Path) -> Path:
    return p.with_name(f".{p.name}.lock")


class _Lock:
    """An exclusive, non-blocking ``flock`` on ``.<name>.lock`` next to an output; the lock file is
    removed on release."""

    def __init__(self, target: Path):
        self.target = target
        self.path = _lock_path(target)
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"{self.target}: cannot create the lock file {self.path} "
                                  f"({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"{self.target}: another csg command is writing this output "
                                  "right now; wait for it to finish or choose another name"
                                  ) from None
            except OSError:  # a file system without flock (some network mounts): go unlocked
                self.fd = fd
                return
            # The holder before us may have unlinked the file after we opened it: retry then.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                self.fd = fd
                return
            os.close(fd)
        raise OutputError(f"{self.target}: could not lock the output (lock file keeps changing)")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None


# --- one file or a set of files -------------------------------------------------------------------
class OutputSet:
    """Files written together: all renamed into place at the end, or none.

    ::

        with OutputSet({"-o": "talk.mp4", "--pose-out": "talk.pose.json"},
                       inputs={"--audio": wav_path}, overwrite=False) as out:
            write_video(out.temp("-o"))
            write_json(out.temp("--pose-out"))
            out.commit()           # optional; the with-block commits when it exits cleanly

    On entry: the paths are checked (distinct, not an input, regular files or new), missing
    folders are created, every name is locked, stale temporary files of those names are removed
    and an empty temporary file is made for each. On an exception (including Ctrl-C and SIGTERM,
    which the CLI turns into one) the temporary files, the lock files and the folders this set
    created are removed and nothing at the destinations changes. A full disk becomes an
    :class:`OutputError` naming the outputs.
    """

    def __init__(self, outputs: Mapping[str, str | os.PathLike], *, overwrite: bool = False,
                 inputs: Mapping[str, str | os.PathLike | None] | None = None,
                 make_folders: bool = True, cached_listing: bool = False):
        self.paths = {k: Path(v) for k, v in outputs.items()}
        self.overwrite = overwrite
        self.inputs = dict(inputs or {})
        self.make_folders = make_folders
        self.cached_listing = cached_listing
        self._temps: dict[str, Path] = {}
        self._locks: list[_Lock] = []
        self._made: list[Path] = []
        self._committed = False
        self.check()

    def check(self) -> None:
        """The checks done before any work (also run by the constructor)."""
        check_distinct(self.paths, self.inputs)
        for p in self.paths.values():
            root = _under_system_root(p)
            if root is not None:
                check_output_path(p, overwrite=self.overwrite)  # raises the system-root message
            folder = p.parent if str(p.parent) else Path(".")
            if not self.make_folders or folder.is_dir():
                check_output_path(p, overwrite=self.overwrite)
            else:
                self._check_creatable(folder, p)

    @staticmethod
    def _check_creatable(folder: Path, p: Path) -> None:
        q = folder
        while not q.exists() and q != q.parent:
            q = q.parent
        if q.exists() and not q.is_dir():
            raise OutputError(f"{p}: cannot create the output folder {folder} ({q} is a file)")
        if q.exists() and not os.access(q, os.W_OK | os.X_OK):
            raise OutputError(f"{p}: cannot create the output folder {folder} ({q} is not "
                              "writable)")

    def __getitem__(self, key: str) -> Path:
        return self.paths[key]

    def temp(self, key: str) -> Path:
        """The temporary file to write output ``key`` to (inside the with-block)."""
        return self._temps[key]

    def __enter__(self) -> "OutputSet":
        try:
            self._make_folders()
            for p in self.paths.values():
                check_output_path(p, overwrite=self.overwrite)
            for p in sorted(self.paths.values(), key=str):
                lock = _Lock(p)
                lock.acquire()
                self._locks.append(lock)
            for key, p in self.paths.items():
                remove_stale_temps(p, cached=self.cached_listing)
                folder = p.parent if str(p.parent) else Path(".")
                try:
                    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}",
                                               dir=folder)
                except OSError as e:
                    raise disk_full_error(e, [p]) or OutputError(
                        f"{p}: cannot write here ({e.strerror})") from None
                os.close(fd)
                self._temps[key] = Path(tmp)
                _LIVE_TEMPS.add(os.path.abspath(tmp))
        except BaseException:
            self._cleanup()
            raise
        return self

    def _make_folders(self) -> None:
        if not self.make_folders:
            return
        for p in self.paths.values():
            folder = p.parent if str(p.parent) else Path(".")
            missing = []
            q = folder
            while not q.exists() and q != q.parent:
                missing.append(q)
                q = q.parent
            for d in reversed(missing):
                try:
                    d.mkdir()
                except FileExistsError:
                    continue
                except OSError as e:
                    raise OutputError(f"{p}: cannot create the output folder {folder} "
                                      f"({e.strerror})") from None
                self._made.append(d)

    def commit(self) -> None:
        """Rename every temporary file onto its output (all were written by now)."""
        if self._committed:
            return
        for p in self.paths.values():  # nothing may have appeared or changed kind meanwhile
            check_output_path(p, overwrite=self.overwrite)
        umask = os.umask(0)
        os.umask(umask)
        for key, p in self.paths.items():
            tmp = self._temps[key]
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, p)
            _LIVE_TEMPS.discard(os.path.abspath(tmp))
        self._committed = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                try:
                    self.commit()
                except OSError as e:
                    full = disk_full_error(e, self.paths.values())
                    if full is not None:
                        raise full from None
                    raise OutputError(f"{', '.join(map(str, self.paths.values()))}: could not "
                                      f"move the finished outputs into place ({e.strerror}); "
                                      "nothing was written") from None
        finally:
            self._cleanup()
        if exc is not None:
            full = disk_full_error(exc, self.paths.values())
            if full is not None:
                raise full from None
        return False

    def _cleanup(self) -> None:
        for tmp in self._temps.values():
            _LIVE_TEMPS.discard(os.path.abspath(tmp))
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._temps.clear()
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()
        if not self._committed:
            for d in reversed(self._made):  # deepest first; only if still empty
                with contextlib.suppress(OSError):
                    d.rmdir()
        self._made.clear()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it onto ``path`` when the block
    exits cleanly, delete it when the block raises. Checks :func:`check_output_path` first, and
    locks the name while writing (see :class:`OutputSet`).

    When ``path`` is itself a temporary file of a live :class:`OutputSet`, it is yielded as is (the
    set renames it). The file gets ordinary permissions (0666 less the umask), not mkstemp's 0600.
    """
    if os.path.abspath(path) in _LIVE_TEMPS:
        yield Path(path)
        return
    p = check_output_path(path, overwrite=overwrite)
    with OutputSet({str(p): p}, overwrite=overwrite, make_folders=False,
                   cached_listing=True) as out:
        yield out.temp(str(p))


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
