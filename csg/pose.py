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
        lines = [json.dumps(head)[:-1] + ', "frames": [']
        rows = [_format_frame(f) for f in self.keypoints]
        lines.append(",\n".join(rows))
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
            d = json.loads(p.read_text(encoding="utf-8"))
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
    return np.asarray(frames, dtype=np.float64).astype(np.float32)


def _format_frame(frame: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(_f32(v) for v in pt) + "]" for pt in frame) + "]"


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
