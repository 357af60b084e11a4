"""The editor's document: a skeleton sequence, its locked frames, and an undo / redo history.

Pure numpy, no server. Every change goes through :meth:`EditorState.apply`, which records the frames
it touched (before and after), so undo / redo restore them exactly. Edits:

- :meth:`move_joint`: one joint to ``(x, y)`` on a key frame (a body wrist carries its hand along);
- :meth:`move_part`: a part (hand, head, arm, ...) moved and rotated rigidly about its pivot;
- both take an optional ``span=(start, stop)`` (stop exclusive): the key frame gets the whole edit,
  the other unlocked frames of the span a share eased by :func:`ease_weights` (smoothstep, 0 just
  outside the span), so the change fades in and out without a jump;
- :meth:`set_locked`: lock / unlock frames (locked frames are kept byte-exact by re-generation and
  are skipped by spreads);
- :meth:`replace_frames`: new keypoints for frames (re-generation), locked frames left untouched.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from csg import keypoints as K
from csg.errors import InputError
from csg.pose import PoseSequence


class EditError(InputError):
    """A request the editor cannot apply (bad frame, joint, number or range); nothing changed."""


# part name -> (keypoint indices moved, pivot: one joint index or a pair whose midpoint is used)
_ARM_L = [K.LEFT_ELBOW, K.LEFT_WRIST, *range(K.LEFT_HAND.start, K.LEFT_HAND.stop)]
_ARM_R = [K.RIGHT_ELBOW, K.RIGHT_WRIST, *range(K.RIGHT_HAND.start, K.RIGHT_HAND.stop)]
PARTS: dict[str, tuple[list[int], tuple[int, ...]]] = {
    "left_hand": ([K.LEFT_WRIST, *range(K.LEFT_HAND.start, K.LEFT_HAND.stop)], (K.LEFT_WRIST,)),
    "right_hand": ([K.RIGHT_WRIST, *range(K.RIGHT_HAND.start, K.RIGHT_HAND.stop)],
                   (K.RIGHT_WRIST,)),
    "left_forearm": (_ARM_L[1:], (K.LEFT_ELBOW,)),
    "right_forearm": (_ARM_R[1:], (K.RIGHT_ELBOW,)),
    "left_arm": (_ARM_L, (K.LEFT_SHOULDER,)),
    "right_arm": (_ARM_R, (K.RIGHT_SHOULDER,)),
    "head": ([K.NOSE, K.LEFT_EYE_C, K.RIGHT_EYE_C, K.LEFT_EAR, K.RIGHT_EAR,
              *range(K.FACE.start, K.FACE.stop)], (K.LEFT_SHOULDER, K.RIGHT_SHOULDER)),
    "whole": (list(range(K.NUM_KEYPOINTS)), (K.LEFT_SHOULDER, K.RIGHT_SHOULDER)),
}
"""Rigid parts: the head turns about the neck (shoulder midpoint), a hand about its wrist."""

_CARRY = {K.LEFT_WRIST: K.LEFT_HAND, K.RIGHT_WRIST: K.RIGHT_HAND}


def smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 on x clipped to [0, 1]: 0 and 1 at the ends with zero slope there."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def ease_weights(start: int, stop: int, key: int) -> np.ndarray:
    """(stop - start,) weights of an edit made on frame ``key`` spread over frames [start, stop).

    1 on the key frame, falling with :func:`smoothstep` to 0 at frames ``start - 1`` and ``stop``
    (just outside the span), so edited and untouched frames meet without a jump.
    """
    if not start <= key < stop:
        raise EditError(f"key frame {key} is outside the span [{start}, {stop})")
    u = np.arange(start, stop, dtype=np.float64)
    left = (u - (start - 1)) / (key - (start - 1))
    right = (stop - u) / (stop - key)
    return smoothstep(np.where(u <= key, left, right))


def rotate_about(xy: np.ndarray, pivot: np.ndarray, angle_deg: float,
                 shift: np.ndarray) -> np.ndarray:
    """Rotate (n, 2) points by ``angle_deg`` (counter-clockwise on screen, y down) about ``pivot``
    (2,), then translate by ``shift`` (2,). float64 in, float64 out."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    d = xy - pivot
    # y grows downwards: a positive angle turns counter-clockwise as seen on the screen
    rot = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=-1)
    return rot + pivot + shift


@dataclass
class Change:
    """One undoable step: the frames it touched with their keypoints and locks before and after."""

    label: str
    frames: np.ndarray  # (n,) int64 frame indices
    before: np.ndarray | None  # (n, 133, 3) float32, None for lock-only changes
    after: np.ndarray | None
    locks_before: np.ndarray  # (n,) bool
    locks_after: np.ndarray
    id: int = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.before, self.after) if a is not None)


@dataclass
class EditorState:
    """The sequence being edited. ``keypoints`` (T, 133, 3) float32 is edited in place."""

    poses: PoseSequence
    locked: np.ndarray = None  # (T,) bool
    history_bytes: int = 512 * 2**20  # undo memory cap; the oldest steps are dropped beyond it
    undo_stack: list[Change] = field(default_factory=list)
    redo_stack: list[Change] = field(default_factory=list)
    version: int = 0  # bumped by every apply / undo / redo
    saved_id: int = 0  # id of the change the file on disk matches
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.poses = self.poses.replace(keypoints=self.poses.keypoints.copy())
        if self.locked is None:
            self.locked = locks_from_meta(self.poses.meta, self.num_frames)
        self.locked = np.asarray(self.locked, bool).copy()

    # --- views ----------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.poses.num_frames

    @property
    def keypoints(self) -> np.ndarray:
        return self.poses.keypoints

    @property
    def current_id(self) -> int:
        return self.undo_stack[-1].id if self.undo_stack else 0

    @property
    def dirty(self) -> bool:
        return self.current_id != self.saved_id

    def locked_ranges(self) -> list[list[int]]:
        return mask_to_ranges(self.locked)

    def document(self) -> PoseSequence:
        """The sequence to save: the keypoints, and the locked frames in ``meta["editor"]``."""
        meta = dict(self.poses.meta)
        meta["editor"] = {"locked": self.locked_ranges()}
        return self.poses.replace(keypoints=self.keypoints.copy(), meta=meta)

    # --- checks ---------------------------------------------------------------------------------
    def check_frame(self, t: Any, what: str = "frame") -> int:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.num_frames:
            raise EditError(f"{what} must be a whole number in [0, {self.num_frames - 1}], "
                            f"got {t!r}")
        return t

    def check_span(self, start: Any, stop: Any) -> tuple[int, int]:
        """A frame span [start, stop) with 0 <= start < stop <= T."""
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise EditError(f"{name} must be a whole number, got {v!r}")
        if not 0 <= start < stop <= self.num_frames:
            raise EditError(f"span [{start}, {stop}) must satisfy 0 <= start < stop <= "
                            f"{self.num_frames} (stop is exclusive)")
        return start, stop

    # --- history --------------------------------------------------------------------------------
    def apply(self, label: str, frames: np.ndarray, new_kps: np.ndarray | None = None,
              new_locks: np.ndarray | None = None) -> Change:
        """``keypoints[frames] = new_kps`` and / or ``locked[frames] = new_locks``, one step."""
        frames = np.asarray(frames, np.int64)
        if new_kps is not None:
            new_kps = np.asarray(new_kps, np.float32)
            if not np.isfinite(new_kps).all():
                raise EditError(f"{label}: the result has non-finite coordinates; nothing changed")
        locks_before = self.locked[frames].copy()
        ch = Change(label, frames,
                    None if new_kps is None else self.keypoints[frames].copy(),
                    None if new_kps is None else new_kps.copy(), locks_before,
                    locks_before.copy() if new_locks is None else np.asarray(new_locks, bool),
                    id=next(self._ids))
        self._set(ch.frames, ch.after, ch.locks_after)
        self.undo_stack.append(ch)
        self.redo_stack.clear()
        total = sum(c.nbytes for c in self.undo_stack)
        while total > self.history_bytes and len(self.undo_stack) > 1:
            total -= self.undo_stack.pop(0).nbytes
        self.version += 1
        return ch

    def _set(self, frames: np.ndarray, kps: np.ndarray | None, locks: np.ndarray) -> None:
        if kps is not None:
            self.keypoints[frames] = kps
        self.locked[frames] = locks

    def undo(self) -> Change | None:
        if not self.undo_stack:
            return None
        ch = self.undo_stack.pop()
        self._set(ch.frames, ch.before, ch.locks_before)
        self.redo_stack.append(ch)
        self.version += 1
        return ch

    def redo(self) -> Change | None:
        if not self.redo_stack:
            return None
        ch = self.redo_stack.pop()
        self._set(ch.frames, ch.after, ch.locks_after)
        self.undo_stack.append(ch)
        self.version += 1
        return ch

    # --- edits ----------------------------------------------------------------------------------
    def _spread(self, key: int, span: Any) -> tuple[np.ndarray, np.ndarray]:
        """Frames an edit on ``key`` reaches and their weights (key only when span is None)."""
        if span is None:
            return np.array([key]), np.array([1.0])
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise EditError(f"span must be [start, stop], got {span!r}")
        start, stop = self.check_span(*span)
        w = ease_weights(start, stop, key)
        frames = np.arange(start, stop)
        keep = (~self.locked[start:stop]) | (frames == key)
        return frames[keep], w[keep]

    def move_joint(self, frame: Any, joint: Any, x: Any, y: Any, *, span: Any = None,
                   carry: bool = True) -> Change:
        """Put ``joint`` at (x, y) pixels on ``frame``; with ``span`` the same offset, eased, on the
        other unlocked frames of the span. A body wrist carries its 21 hand points (``carry``)."""
        t = self.check_frame(frame)
        if (isinstance(joint, bool) or not isinstance(joint, int)
                or not 0 <= joint < K.NUM_KEYPOINTS):
            raise EditError(f"joint must be a keypoint index in [0, {K.NUM_KEYPOINTS - 1}], "
                            f"got {joint!r}")
        target = np.array([_number(x, "x"), _number(y, "y")], np.float64)
        idx = [joint]
        if carry and joint in _CARRY:
            idx += list(range(_CARRY[joint].start, _CARRY[joint].stop))
        delta = target - self.keypoints[t, joint, :2].astype(np.float64)
        frames, w = self._spread(t, span)
        new = self.keypoints[frames].copy()
        moved = new[:, idx, :2].astype(np.float64) + w[:, None, None] * delta
        new[:, idx, :2] = moved.astype(np.float32)
        new[frames == t, joint, :2] = target.astype(np.float32)  # exactly where it was dropped
        return self.apply(f"move {K.KEYPOINT_NAMES[joint]} on frame {t}", frames, new)

    def move_part(self, frame: Any, part: Any, dx: Any = 0.0, dy: Any = 0.0, angle: Any = 0.0, *,
                  span: Any = None) -> Change:
        """Move ``part`` (see :data:`PARTS`) rigidly on ``frame``: rotate by ``angle`` degrees
        about its pivot, then shift by (dx, dy) pixels; with ``span``, eased over the span."""
        t = self.check_frame(frame)
        if part not in PARTS:
            raise EditError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
        dx, dy, angle = _number(dx, "dx"), _number(dy, "dy"), _number(angle, "angle")
        idx, piv = PARTS[part]
        frames, w = self._spread(t, span)
        new = self.keypoints[frames].copy()
        for i, (f, wi) in enumerate(zip(frames, w)):
            pivot = self.keypoints[f, list(piv), :2].astype(np.float64).mean(axis=0)
            xy = new[i, idx, :2].astype(np.float64)
            new[i, idx, :2] = rotate_about(xy, pivot, wi * angle, wi * np.array([dx, dy]))
        return self.apply(f"move {part} on frame {t}", frames, new)

    def set_locked(self, start: Any, stop: Any, locked: Any = True) -> Change:
        if not isinstance(locked, bool):
            raise EditError(f"locked must be true or false, got {locked!r}")
        a, b = self.check_span(start, stop)
        frames = np.arange(a, b)
        return self.apply(f"{'lock' if locked else 'unlock'} frames {a}-{b - 1}", frames,
                          new_locks=np.full(b - a, locked))

    def replace_frames(self, start: int, new_kps: np.ndarray, label: str) -> Change:
        """New keypoints for frames [start, start + len(new_kps)); locked frames are not touched."""
        stop = start + len(new_kps)
        self.check_span(start, stop)
        frames = np.arange(start, stop)
        free = ~self.locked[start:stop]
        return self.apply(label, frames[free], np.asarray(new_kps, np.float32)[free])


MAX_COORD = 1e6
"""Largest |coordinate| or |shift| in pixels an edit may ask for (far off any canvas)."""


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise EditError(f"{name} must be a finite number, got {v!r}")
    if abs(v) > MAX_COORD:
        raise EditError(f"{name} = {v:g} is out of range (at most {MAX_COORD:g} in size)")
    return float(v)


def mask_to_ranges(mask: np.ndarray) -> list[list[int]]:
    """(T,) bool -> [[start, stop], ...] runs of True (stop exclusive)."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def locks_from_meta(meta: dict, num_frames: int) -> np.ndarray:
    """The locked frames a previous session saved in ``meta["editor"]["locked"]`` (ranges);
    anything malformed is ignored (a hand-edited meta must not stop the editor)."""
    mask = np.zeros(num_frames, bool)
    editor = meta.get("editor")
    ranges = editor.get("locked") if isinstance(editor, dict) else None
    for r in ranges if isinstance(ranges, list) else []:
        if (isinstance(r, list) and len(r) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in r)):
            mask[max(0, r[0]):max(0, min(num_frames, r[1]))] = True
    return mask
