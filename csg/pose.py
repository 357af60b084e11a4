"""``PoseSequence``: the typed skeleton contract shared by every stage, and its JSON form.

JSON (``format: csg.pose``, ``version: 1``)::

    {"format": "csg.pose", "version": 1, "layout": "coco_wholebody_133",
     "fps": 25.0, "width": W, "height": H,
     "frames": [ [ [x, y, score], ... 133 ], ... T ],
     "meta": { ... } }

``x``, ``y`` are pixels on the W x H canvas of the reference image, ``score`` is in [0, 1]; a missing
point has score 0. Values are held as float32 and written with the shortest decimal that reads back
to the same float32, so load -> save -> load is lossless and the file stays readable by hand.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PoseFormatError
from .keypoints import KEYPOINT_NAMES, LAYOUT, NUM_KEYPOINTS
from .outputs import atomic_write_text
from .validate import MAX_CANVAS_SIDE, MAX_FPS, MIN_FPS

FORMAT = "csg.pose"
VERSION = 1
_REQUIRED_KEYS = ("format", "version", "layout", "fps", "width", "height", "frames")
_OPTIONAL_KEYS = ("meta",)
# A hand-edited score may stray a hair outside [0, 1] through rounding; beyond this it is an error.
_SCORE_TOL = 1e-4
FAR_OUTSIDE = 4.0
"""A keypoint scoring above 0 may lie at most this many canvas sides outside the canvas."""


@dataclass
class PoseSequence:
    """T frames of 133 whole-body keypoints on a ``width`` x ``height`` canvas.

    keypoints: (T, 133, 3) float32 array of ``x, y, score`` (pixels, pixels, [0, 1]).
    """

    keypoints: np.ndarray
    fps: float = 25.0
    width: int = 512
    height: int = 512
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if self.keypoints.ndim == 2:
            self.keypoints = self.keypoints[None]
        self.fps = float(self.fps)
        self.width = int(self.width)
        self.height = int(self.height)

    # --- views ----------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    @property
    def xy(self) -> np.ndarray:
        """(T, 133, 2) pixel coordinates (a view)."""
        return self.keypoints[..., :2]

    @property
    def scores(self) -> np.ndarray:
        """(T, 133) confidences in [0, 1] (a view)."""
        return self.keypoints[..., 2]

    @property
    def duration(self) -> float:
        """Seconds covered by the frames: T / fps."""
        return self.num_frames / self.fps

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.height, self.width

    def frame(self, i: int) -> "PoseSequence":
        """A one-frame sequence holding frame ``i`` (e.g. a reference skeleton)."""
        return self.slice(i, i + 1)

    def slice(self, start: int, stop: int) -> "PoseSequence":
        return PoseSequence(self.keypoints[start:stop].copy(), self.fps, self.width, self.height,
                            dict(self.meta))

    def replace(self, **changes: Any) -> "PoseSequence":
        kw = dict(keypoints=self.keypoints, fps=self.fps, width=self.width, height=self.height,
                  meta=dict(self.meta))
        kw.update(changes)
        return PoseSequence(**kw)

    # --- validation -----------------------------------------------------------------------------
    def validate(self, source: str = "pose") -> "PoseSequence":
        """Raise :class:`PoseFormatError` naming the frame, keypoint and fault; return self."""
        k = self.keypoints
        if k.ndim != 3 or k.shape[1:] != (NUM_KEYPOINTS, 3):
            raise PoseFormatError(f"{source}: keypoints must have shape (T, {NUM_KEYPOINTS}, 3), "
                                  f"got {tuple(k.shape)}")
        if k.shape[0] == 0:
            raise PoseFormatError(f"{source}: 'frames' is empty; at least one frame is needed")
        if not (math.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise PoseFormatError(f"{source}: fps must be a positive number in "
                                  f"[{MIN_FPS:g}, {MAX_FPS:g}], got {self.fps}")
        if not (0 < self.width <= MAX_CANVAS_SIDE and 0 < self.height <= MAX_CANVAS_SIDE):
            raise PoseFormatError(f"{source}: width and height must be positive, at most "
                                  f"{MAX_CANVAS_SIDE} pixels, got {self.width}x{self.height}")
        bad = ~np.isfinite(k)
        if bad.any():
            t, j, c = (int(v) for v in np.argwhere(bad)[0])
            raise PoseFormatError(f"{source}: frame {t}, keypoint {j} ({KEYPOINT_NAMES[j]}): "
                                  f"{'xys'[c] if c < 2 else 'score'} is {k[t, j, c]}")
        s = k[..., 2]
        out = (s < -_SCORE_TOL) | (s > 1 + _SCORE_TOL)
        if out.any():
            t, j = (int(v) for v in np.argwhere(out)[0])
            raise PoseFormatError(f"{source}: frame {t}, keypoint {j} ({KEYPOINT_NAMES[j]}): "
                                  f"score {s[t, j]:g} is outside [0, 1]")
        # a confident point many canvases away is a typo (an extra digit), not a pose
        r = FAR_OUTSIDE * max(self.width, self.height)
        far = (s > 0) & ((k[..., 0] < -r) | (k[..., 0] > self.width + r) | (k[..., 1] < -r)
                         | (k[..., 1] > self.height + r))
        if far.any():
            t, j = (int(v) for v in np.argwhere(far)[0])
            raise PoseFormatError(f"{source}: frame {t}, keypoint {j} ({KEYPOINT_NAMES[j]}): "
                                  f"({k[t, j, 0]:g}, {k[t, j, 1]:g}) is far outside the "
                                  f"{self.width}x{self.height} canvas")
        return self

    # --- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict. Floats are float32 values as Python floats."""
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION, "layout": LAYOUT,
                             "fps": self.fps, "width": self.width, "height": self.height,
                             "frames": self.keypoints.tolist()}
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self) -> str:
        """Serialise to JSON text: one frame per line, shortest float32 decimals."""
        head = {"format": FORMAT, "version": VERSION, "layout": LAYOUT, "fps": self.fps,
                "width": self.width, "height": self.height}  # to_dict() would list every frame
        lines = [json.dumps(head)[:-1] + ', "frames": [', _format_frames(self.keypoints)]
        tail = "]"
        if self.meta:
            tail += ', "meta": ' + json.dumps(self.meta, sort_keys=True, default=_json_default)
        lines.append(tail + "}\n")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> Path:
        """Validate, then write atomically (temporary file, then rename).

        Scores within the rounding tolerance of [0, 1] are clipped into it first.
        """
        self.validate(str(path))
        if self.keypoints[..., 2].min() < 0 or self.keypoints[..., 2].max() > 1:
            k = self.keypoints.copy()
            np.clip(k[..., 2], 0.0, 1.0, out=k[..., 2])
            return atomic_write_text(path, self.replace(keypoints=k).to_json())
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: Any, source: str = "pose") -> "PoseSequence":
        """Build from a parsed JSON object, validating every field."""
        if not isinstance(d, dict):
            raise PoseFormatError(f"{source}: top level must be a JSON object, got "
                                  f"{type(d).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise PoseFormatError(f"{source}: missing key(s) {', '.join(missing)}")
        unknown = sorted(set(d) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise PoseFormatError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed are "
                                  f"{', '.join(_REQUIRED_KEYS + _OPTIONAL_KEYS)}")
        if d["format"] != FORMAT:
            raise PoseFormatError(f"{source}: format must be '{FORMAT}', got {d['format']!r}")
        if isinstance(d["version"], bool) or d["version"] != VERSION:
            raise PoseFormatError(f"{source}: unsupported version {d['version']!r}; this csg "
                                  f"reads version {VERSION}")
        if d["layout"] != LAYOUT:
            raise PoseFormatError(f"{source}: layout must be '{LAYOUT}', got {d['layout']!r}")
        for key in ("fps", "width", "height"):
            if isinstance(d[key], bool) or not isinstance(d[key], (int, float)):
                raise PoseFormatError(f"{source}: {key} must be a number, got {d[key]!r}")
        for key in ("fps", "width", "height"):
            if not math.isfinite(float(d[key])):
                raise PoseFormatError(f"{source}: {key} must be a finite number, got {d[key]!r}")
        for key in ("width", "height"):
            if float(d[key]) != int(d[key]):
                raise PoseFormatError(f"{source}: {key} must be a whole number, got {d[key]!r}")
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise PoseFormatError(f"{source}: meta must be a JSON object, got "
                                  f"{type(meta).__name__}")
        kps = _parse_frames(d["frames"], source)
        pose = cls(kps, fps=d["fps"], width=int(d["width"]), height=int(d["height"]),
                   meta=meta).validate(source)
        # Scores within the rounding tolerance of [0, 1] are clipped into it.
        np.clip(pose.keypoints[..., 2], 0.0, 1.0, out=pose.keypoints[..., 2])
        return pose

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PoseSequence":
        """Read and validate a ``csg.pose`` JSON file."""
        from .errors import require_file

        p = require_file(path, "pose file", PoseFormatError)
        try:
            d = json.loads(p.read_text(encoding="utf-8-sig"))  # -sig: editors' byte-order mark
        except UnicodeDecodeError:
            raise PoseFormatError(f"{p}: not a text file (expected csg.pose JSON)") from None
        except json.JSONDecodeError as e:
            raise PoseFormatError(f"{p}: invalid JSON at line {e.lineno}, column {e.colno}: "
                                  f"{e.msg}") from None
        except RecursionError:
            raise PoseFormatError(f"{p}: JSON is nested too deeply (a csg.pose file has 4 "
                                  "levels)") from None
        return cls.from_dict(d, str(p))


def _parse_frames(frames: Any, source: str) -> np.ndarray:
    fast = _numbers_array(frames)
    if fast is not None:
        return fast
    # not a (T, 133, 3) block of numbers: find the first fault for the message
    if not isinstance(frames, list):
        raise PoseFormatError(f"{source}: frames must be a list of frames")
    if not frames:
        raise PoseFormatError(f"{source}: 'frames' is empty; at least one frame is needed")
    for t, fr in enumerate(frames):
        if not isinstance(fr, list):
            raise PoseFormatError(f"{source}: frame {t}: must be a list of {NUM_KEYPOINTS} points")
        if len(fr) != NUM_KEYPOINTS:
            raise PoseFormatError(f"{source}: frame {t}: has {len(fr)} points, expected "
                                  f"{NUM_KEYPOINTS} ({LAYOUT})")
        for j, pt in enumerate(fr):
            if (not isinstance(pt, list) or len(pt) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in pt)):
                raise PoseFormatError(f"{source}: frame {t}, keypoint {j} ({KEYPOINT_NAMES[j]}): "
                                      f"expected [x, y, score] numbers, got {pt!r}"[:300])
            for c, v in enumerate(pt):
                if isinstance(v, int) and abs(v) > 1e308:  # no float holds it
                    raise PoseFormatError(f"{source}: frame {t}, keypoint {j} "
                                          f"({KEYPOINT_NAMES[j]}): {'xys'[c] if c < 2 else 'score'}"
                                          f" is an integer of {len(str(abs(v)))} digits")
    return np.asarray(frames, dtype=np.float64).astype(np.float32)


_type_of = np.frompyfunc(type, 1, 1)


def _numbers_array(frames: Any) -> np.ndarray | None:
    """``frames`` as float32 (T, 133, 3) when it is a non-empty list of T lists of 133 lists of 3
    JSON numbers (int or float, not bool); None otherwise (the caller then names the fault).
    One pass in numpy instead of a Python check per point (a 2-minute clip has 400 000)."""
    if not isinstance(frames, list) or not frames:
        return None
    try:
        obj = np.array(frames, dtype=object)
    except ValueError:  # ragged nesting
        return None
    if obj.shape != (len(frames), NUM_KEYPOINTS, 3):
        return None
    types = _type_of(obj)
    if not ((types == float) | (types == int)).all():  # exact types: bool and str are refused
        return None
    try:
        return obj.astype(np.float64).astype(np.float32)
    except OverflowError:  # an integer beyond any float: the caller names it
        return None


def _format_frames(keypoints: np.ndarray) -> str:
    """The JSON text of (T, 133, 3) float32 frames, one ``[[x, y, s], ...]`` line per frame, lines
    joined by a comma and a newline: every value as the shortest positional decimal that reads back
    to the same float32 (the text of numpy's ``format_float_positional(v, unique=True,
    trim="-")``, tested equal).

    Written in numpy, not one Python call per value (a 2-minute clip has 1.2 M values): each
    value's digits come from :func:`_shortest_digits` and are laid out in a fixed-width row of
    characters (list punctuation, sign, integer digits right-aligned, point, fraction digits) with
    a mask of the characters it uses; the masked rows, in order, are the text. Values outside
    1e-13..1e16 in magnitude are written by Dragon4 one by one and spliced in.
    """
    kp = np.ascontiguousarray(keypoints, dtype=np.float32)
    if not np.isfinite(kp).all():  # never valid JSON; validation rejects them before this
        raise PoseFormatError("cannot write non-finite values")
    T, J, C = kp.shape
    v = kp.reshape(-1)
    N, per_frame = v.size, J * C
    n, k, slow = _shortest_digits(v)
    fast = ~slow
    kpos = np.where(fast, np.maximum(k, 0), 0)
    small_k = kpos <= 9  # n < 1e9 <= 10**kpos otherwise: integer part 0, fraction n
    ip = np.where(k <= 0, n * _POW10[np.minimum(-np.minimum(k, 0), 19)],
                  np.where(small_k, n // _POW10[np.minimum(kpos, 19)], 0))
    fp = np.where(k > 0, np.where(small_k, n % _POW10[np.minimum(kpos, 19)], n), 0)
    n_int = 1 + np.searchsorted(_POW10[1:20], ip, side="right")  # digits of ip (0 has one)
    wi, wf = int(n_int.max()), int(kpos.max())
    # columns: "[[" | sign | integer digits (right-aligned) | "." | fraction digits | punctuation
    j = np.arange(N) % per_frame
    first, last, inner = j == 0, j == per_frame - 1, j % C == C - 1
    rows = np.zeros((N, 2 + 1 + wi + 1 + wf + 4), np.uint8)
    keep = np.zeros(rows.shape, bool)
    rows[:, 0:2], keep[:, 0:2] = ord("["), first[:, None]
    rows[:, 2], keep[:, 2] = ord("-"), np.signbit(v) & fast
    c = 3
    _digits_into(rows[:, c:c + wi], ip)  # right-aligned, leading zeros not kept
    keep[:, c:c + wi] = np.arange(wi)[None] >= (wi - n_int)[:, None]
    keep[:, c:c + wi] &= fast[:, None]
    c += wi
    rows[:, c], keep[:, c] = ord("."), k > 0
    c += 1
    # the kpos fraction digits are the last kpos columns of fp's digits right-aligned in wf
    _digits_into(rows[:, c:c + wf], fp)
    keep[:, c:c + wf] = np.arange(wf)[None] >= (wf - kpos)[:, None]
    c += wf
    between = last & (np.arange(N) < N - 1)
    for chars, m in ((b", ", ~inner), (b"], [", inner & ~last), (b"]]", last & ~between),
                     (b"]],\n", between)):
        rows[m, c:c + len(chars)] = np.frombuffer(chars, np.uint8)
        keep[m, c:c + len(chars)] = True
    text = rows[keep].tobytes().decode("ascii")
    if not slow.any():
        return text
    # splice Dragon4's text of the rare out-of-range values in where their number belongs
    starts = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    at = starts[:-1] + 2 * first  # a slow value kept nothing but its punctuation
    pieces, prev = [], 0
    for i in np.flatnonzero(slow):
        pieces += [text[prev:int(at[i])], _f32(v[i])]
        prev = int(at[i])
    pieces.append(text[prev:])
    return "".join(pieces)


_POW10 = 10 ** np.arange(20, dtype=np.uint64)


def _digits_into(cols: np.ndarray, x: np.ndarray) -> None:
    """Write the decimal digits of uint64 ``x`` (N,) as ASCII, right-aligned and zero-padded, into
    the (N, W) uint8 view ``cols`` (W at least the digit count)."""
    q = x.copy()
    for c in range(cols.shape[1] - 1, -1, -1):
        cols[:, c] = q % 10 + 48
        q //= 10
        if not q.any():
            cols[:, :c] = 48
            break


_POW10F = 10.0 ** np.arange(23)  # exact float64 powers of ten


def _shortest_digits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest decimals of float32 ``v`` (N,): ``|v|`` reads back from ``n * 10**-k`` with the
    fewest significant digits p (1..9) of ``n`` (uint64), ``k`` the decimal places (int64).
    ``slow`` marks values left to Dragon4 (|v| outside 1e-13..1e16); zero is n = k = 0.

    ``|v|`` rounded to p significant digits in float64 (an exact integer times or divided by an
    exact power of ten, so the candidate is the float64 nearest that decimal) reads back as the
    same float32 or not; if it does for p it does for p + 1 (every p-digit decimal is a p+1-digit
    one), so p is found by bisection over 1..9 (4 rounds, then the digits at that p). The nearest
    p-digit decimal reads back whenever any p-digit one does, except at the asymmetric gap of a
    power of two, where the result is a digit longer and still exact.
    """
    a32 = np.abs(v.astype(np.float32))
    a = a32.astype(np.float64)
    N = a.size
    n = np.zeros(N, np.uint64)
    k = np.zeros(N, np.int64)
    slow = (a >= 1e16) | ((a > 0) & (a < 1e-13))
    idx = np.flatnonzero((a > 0) & ~slow)
    x, x32 = a[idx], a32[idx]
    e = np.floor(np.log10(x)).astype(np.int64)

    def at(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kk = p - 1 - e  # decimal places of a p-digit decimal, within -15..21
        up = kk >= 0
        scale = _POW10F[np.abs(kk)]
        r = np.round(np.where(up, x * scale, x / scale))
        cand = np.where(up, r / scale, r * scale)
        return cand.astype(np.float32) == x32, r, kk

    lo, hi = np.ones(idx.size, np.int64), np.full(idx.size, 9, np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) // 2
        ok = at(mid)[0]
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid + 1, lo)
    ok, r, kk = at(lo)
    r, kk = r.astype(np.uint64), kk.copy()
    # log10 a hair low (just under a power of ten) gives one digit too many, a trailing zero
    while (z := ok & (r % 10 == 0)).any():
        r[z] //= 10
        kk[z] -= 1
    n[idx[ok]] = r[ok]
    k[idx[ok]] = kk[ok]
    slow[idx[~ok]] = True  # not within 9 digits (log10 off by one at a power of ten): Dragon4
    return n, k, slow


def _f32(v: np.float32) -> str:
    # Shortest decimal that parses back to the same float32 (numpy's Dragon4 'unique' mode).
    s = np.format_float_positional(v, unique=True, trim="-")
    if s in ("nan", "inf", "-inf"):  # never valid JSON; validation rejects them before this
        raise PoseFormatError(f"cannot write non-finite value {s}")
    return s


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"meta value of type {type(o).__name__} is not JSON serialisable")
