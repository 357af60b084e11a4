"""Training mixes: several dataset roots as one, with per-clip keypoint loss masks.

Stage 1 trains on synthetic whole bodies plus real talking faces (``csg data prepare`` of
``../shared/data/video/face``). A real face clip is a head-and-shoulders crop: its face, head points
(nose, eyes, ears) and shoulders are real, its elbows, wrists, hands, hips and legs are not in the
picture. Each clip therefore carries a ``loss_mask`` (133,) float32 array in its npz (1: the
keypoint's losses count, 0: masked out of both the coordinate and the score loss); clips without
one count everywhere. :func:`observed_mask` derives it from the clip's confidences.

``build_mix(out, [(root, kind), ...], fps=25)`` writes ``out/manifest.jsonl`` and ``out/clips/``:
synthetic clips are hard links (or copies) of the source npz; prepared clips are resampled to
``fps`` (poses linearly, audio cut to the new frame bounds) and get a ``loss_mask``. The manifest
and ``stats.json`` are rebuilt over the union.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import keypoints as K
from ..audio import SAMPLE_RATE, fit_to_frames, frame_bounds
from .manifest import (CLIPS_DIR, ClipRecord, compute_stats, load_clip, read_manifest, save_npz,
                       write_manifest)

LOSS_MASK = "loss_mask"


def observed_mask(poses: np.ndarray, *, min_fraction: float = 0.5,
                  threshold: float = 0.5) -> np.ndarray:
    """(133,) float32: 1 for keypoints confidently seen (score > ``threshold``) in at least
    ``min_fraction`` of the frames, else 0. Whole groups: a hand counts only if its wrist root is
    seen; the face as a whole."""
    seen = (poses[..., 2] > threshold).mean(0) >= min_fraction
    m = seen.astype(np.float32)
    m[K.FACE] = float(seen[K.FACE].mean() >= 0.5)
    for hand in (K.LEFT_HAND, K.RIGHT_HAND):
        m[hand] = float(seen[hand].mean() >= 0.5)
    return m


def resample_poses(poses: np.ndarray, fps_from: float, fps_to: float) -> np.ndarray:
    """(T, J, C) at ``fps_from`` -> linear interpolation at ``fps_to`` over the same span."""
    T = poses.shape[0]
    if abs(fps_from - fps_to) < 1e-9:
        return poses.copy()
    n = int(np.floor((T - 1) / fps_from * fps_to + 1e-9)) + 1
    t = np.arange(n) / fps_to * fps_from
    i0 = np.clip(np.floor(t).astype(int), 0, T - 1)
    i1 = np.clip(i0 + 1, 0, T - 1)
    w = (t - i0)[:, None, None]
    return ((1 - w) * poses[i0] + w * poses[i1]).astype(np.float32)


def load_loss_mask(npz: str | os.PathLike) -> np.ndarray | None:
    """The clip's (133,) loss mask, or None when it has none (every keypoint counts)."""
    with np.load(npz, allow_pickle=False) as z:
        if LOSS_MASK not in z.files:
            return None
        m = np.asarray(z[LOSS_MASK], np.float32)
    if m.shape != (K.NUM_KEYPOINTS,):
        from ..errors import DataError

        raise DataError(f"{npz}: {LOSS_MASK} has shape {m.shape}, expected (133,)")
    return m


def pingpong(poses: np.ndarray, audio: np.ndarray, fps: float, min_frames: int):
    """Lengthen a clip shorter than ``min_frames`` by playing it forwards and backwards (poses and
    audio reversed together, frame-aligned, no jump at the turns) until it is long enough."""
    T = poses.shape[0]
    if T >= min_frames or T < 2:
        return poses, audio
    b = frame_bounds(T, SAMPLE_RATE, fps)
    frames = [audio[b[i]:b[i + 1]] for i in range(T)]
    idx = list(range(T))
    while len(idx) < min_frames:
        idx += list(range(T - 2, -1, -1)) if (len(idx) // (T - 1)) % 2 else list(range(1, T))
    idx = idx[:max(min_frames, T)]
    out_p = poses[idx]
    parts = [frames[i] if k == 0 or idx[k] > idx[k - 1] else frames[i][::-1]
             for k, i in enumerate(idx)]
    return out_p, fit_to_frames(np.concatenate(parts), len(idx), SAMPLE_RATE, fps)


def photo_face_ref(poses: np.ndarray, ref: np.ndarray, g: np.random.Generator) -> np.ndarray:
    """A reference whose face (68 points and scores) is that of a random frame, moved so its nose
    tip sits on the reference's: a photo taken mid-sentence has an open mouth, and the model must
    read the mouth state of the photo instead of assuming it is closed."""
    t = int(g.integers(0, poses.shape[0]))
    out = np.array(ref, np.float32, copy=True)
    shift = ref[K.NOSE_TIP, :2] - poses[t, K.NOSE_TIP, :2]
    out[K.FACE, :2] = poses[t, K.FACE, :2] + shift
    out[K.FACE, 2] = poses[t, K.FACE, 2]
    return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_mix(out: str | os.PathLike, sources: list[tuple], *, fps: float = 25.0,
              min_frames: int = 0, stats: bool = True) -> list[ClipRecord]:
    """Merge dataset roots into ``out``. sources: ``[(root, "whole" | "observed"[, repeat]), ...]``:
    "whole" clips keep every loss ("whole_photo_face": half of them get :func:`photo_face_ref`);
    "observed" clips are resampled to ``fps``, lengthened to
    ``min_frames`` with :func:`pingpong` (e.g. 3 s GRID sentences for 4 s training windows) and
    masked with :func:`observed_mask`. Clip ids get the root's folder name as a prefix; ``repeat``
    (default 1) lists a root's training clips that many times (extra ids ``...#k``, the same npz)
    so a small real set is not drowned by a large synthetic one."""
    root = Path(out)
    (root / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    recs: list[ClipRecord] = []
    for entry in sources:
        src, kind = Path(entry[0]), entry[1]
        repeat = int(entry[2]) if len(entry) > 2 else 1
        first = len(recs)
        for rec in read_manifest(src):
            cid = f"{src.name}__{rec.id}"
            npz = f"{CLIPS_DIR}/{cid}.npz"
            if kind == "whole_photo_face":  # the reference's face from a random frame (below)
                c = load_clip(src, rec)
                g = np.random.default_rng([len(recs), rec.num_frames])
                ref = photo_face_ref(c.poses, c.ref, g) if g.random() < 0.5 else c.ref
                save_npz(root / npz, poses=c.poses, audio=c.audio, ref=ref, fps=c.fps,
                         width=c.width, height=c.height)
                recs.append(replace(rec, id=cid, npz=npz, video=None))
                continue
            if kind == "whole":
                dst = root / npz
                if dst.exists():
                    dst.unlink()
                _link(src / rec.npz, dst)
                recs.append(replace(rec, id=cid, npz=npz, video=None))
                continue
            c = load_clip(src, rec)
            poses = resample_poses(c.poses, c.fps, fps)
            audio = fit_to_frames(c.audio, poses.shape[0], SAMPLE_RATE, fps)
            poses, audio = pingpong(poses, audio, fps, min_frames)
            T = poses.shape[0]
            save_npz(root / npz, poses=poses, audio=audio, ref=poses[0], fps=fps, width=c.width,
                     height=c.height)
            with np.load(root / npz, allow_pickle=False) as z:
                arrs = {k: z[k] for k in z.files}
            arrs[LOSS_MASK] = observed_mask(poses)
            np.savez(root / npz, **arrs)
            recs.append(replace(rec, id=cid, npz=npz, video=None, fps=float(fps), num_frames=T,
                                seconds=round(T / fps, 3)))
        recs += [replace(r, id=f"{r.id}#{k}") for k in range(1, repeat)
                 for r in recs[first:] if r.split == "train"]
    write_manifest(root, recs)
    if stats:
        compute_stats(root, "train")
    return recs
