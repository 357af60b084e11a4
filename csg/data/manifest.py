"""The one dataset format shared by the synthetic corpus and prepared real videos.

Layout of a dataset root ``ROOT``::

    ROOT/manifest.jsonl     one JSON object per clip (see :class:`ClipRecord`)
    ROOT/clips/<id>.npz     poses (T,133,3) f32, audio (N,) f32 16 kHz mono, ref (133,3) f32,
                            fps, width, height (0-d arrays); written with np.savez, no pickles
    ROOT/clips/<id>.mp4     optional RGB frames (csg.video.VideoWriter)
    ROOT/stats.json         normalisation statistics over the train split

Invariant: ``len(audio) == frame_bounds(T, 16000, fps)[-1]`` (exact integer frame/sample alignment).
Every inconsistency raises :class:`csg.errors.DataError` naming the clip.
"""
from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..outputs import atomic_write_bytes as _atomic_write_bytes
from ..errors import DataError
from ..keypoints import NUM_KEYPOINTS

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
STATS = "stats.json"
CLIPS_DIR = "clips"
SPLITS = ("train", "val", "test")
SOURCES = ("synth", "prepared")
NPZ_KEYS = ("poses", "audio", "ref", "fps", "width", "height")


@dataclass(frozen=True)
class ClipRecord:
    """One line of ``manifest.jsonl``. Paths are relative to the dataset root."""

    id: str
    npz: str
    video: Optional[str]
    fps: float
    num_frames: int
    width: int
    height: int
    speaker: str
    split: str
    source: str
    seconds: float

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "ClipRecord":
        fields = set(cls.__dataclass_fields__)
        missing = sorted(fields - set(d))
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}; regenerate the "
                            "manifest with 'csg data synth' or 'csg data prepare'")
        unknown = sorted(set(d) - fields)
        if unknown:
            raise DataError(f"{where}: unknown field(s) {', '.join(unknown)}")
        if d["split"] not in SPLITS:
            raise DataError(f"{where}: split must be one of {SPLITS}, got {d['split']!r}")
        return cls(id=str(d["id"]), npz=str(d["npz"]), video=d["video"], fps=float(d["fps"]),
                   num_frames=int(d["num_frames"]), width=int(d["width"]),
                   height=int(d["height"]), speaker=str(d["speaker"]), split=str(d["split"]),
                   source=str(d["source"]), seconds=float(d["seconds"]))


@dataclass
class Clip:
    """A loaded clip. poses (T,133,3) f32 pixels+score; audio (N,) f32 16 kHz; ref (133,3) f32."""

    record: ClipRecord
    poses: np.ndarray
    audio: np.ndarray
    ref: np.ndarray
    fps: float
    width: int
    height: int


# --- atomic writes ---------------------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically, creating the folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _atomic_write_bytes(path, data)


def save_npz(path: str | os.PathLike, *, poses: np.ndarray, audio: np.ndarray, ref: np.ndarray,
             fps: float, width: int, height: int) -> Path:
    """Validate and write one clip's arrays atomically (uncompressed ``np.savez``)."""
    from ..audio import SAMPLE_RATE, frame_bounds

    poses = np.asarray(poses, np.float32)
    audio = np.asarray(audio, np.float32)
    ref = np.asarray(ref, np.float32)
    name = Path(path).stem
    _check_arrays(name, poses, audio, ref, float(fps), SAMPLE_RATE, frame_bounds)
    buf = io.BytesIO()
    np.savez(buf, poses=poses, audio=audio, ref=ref, fps=np.float64(fps),
             width=np.int64(width), height=np.int64(height))
    return atomic_write_bytes(path, buf.getvalue())


def _check_arrays(clip: str, poses, audio, ref, fps, sr, frame_bounds) -> None:
    if poses.ndim != 3 or poses.shape[1:] != (NUM_KEYPOINTS, 3) or poses.shape[0] == 0:
        raise DataError(f"clip {clip}: poses must be (T, {NUM_KEYPOINTS}, 3) with T > 0, "
                        f"got {poses.shape}")
    if ref.shape != (NUM_KEYPOINTS, 3):
        raise DataError(f"clip {clip}: ref must be ({NUM_KEYPOINTS}, 3), got {ref.shape}")
    if audio.ndim != 1:
        raise DataError(f"clip {clip}: audio must be mono (N,), got {audio.shape}")
    want = int(frame_bounds(poses.shape[0], sr, fps)[-1])
    if audio.shape[0] != want:
        raise DataError(f"clip {clip}: audio has {audio.shape[0]} samples but {poses.shape[0]} "
                        f"pose frames at {fps:g} fps need exactly {want}; re-prepare the clip")
    for name, arr in (("poses", poses), ("audio", audio), ("ref", ref)):
        if not np.isfinite(arr).all():
            raise DataError(f"clip {clip}: {name} contains NaN or Inf")


# --- manifest --------------------------------------------------------------------------------------
def read_manifest(root: str | os.PathLike) -> list[ClipRecord]:
    """Parse ``ROOT/manifest.jsonl``; raise :class:`DataError` naming the line on any fault."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; make a dataset with 'csg data synth' or "
                        "'csg data prepare'")
    records, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected a JSON object per line")
        rec = ClipRecord.from_dict(d, where)
        if rec.id in seen:
            raise DataError(f"{where}: duplicate clip id {rec.id!r}")
        seen.add(rec.id)
        records.append(rec)
    return records


def write_manifest(root: str | os.PathLike, records: Iterable[ClipRecord]) -> Path:
    """Write all records (sorted by id) to ``ROOT/manifest.jsonl`` atomically."""
    lines = [json.dumps(asdict(r), sort_keys=True) for r in sorted(records, key=lambda r: r.id)]
    return atomic_write_bytes(Path(root) / MANIFEST, ("\n".join(lines) + "\n").encode())


def select(records: list[ClipRecord], split: str | None) -> list[ClipRecord]:
    """Records of one split (all when ``split`` is None)."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    return [r for r in records if split is None or r.split == split]


def load_clip(root: str | os.PathLike, rec: ClipRecord) -> Clip:
    """Load and check one clip's npz (``allow_pickle=False``) against its manifest record."""
    from ..audio import SAMPLE_RATE, frame_bounds

    path = Path(root) / rec.npz
    if not path.is_file():
        raise DataError(f"clip {rec.id}: {path} not found; regenerate the dataset or drop the "
                        "clip from manifest.jsonl")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"clip {rec.id}: {path} lacks array(s) {', '.join(missing)}")
            arrs = {k: z[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"clip {rec.id}: {path} is corrupt ({type(e).__name__}: {e}); "
                        "regenerate it") from None
    fps = float(arrs["fps"])
    poses = arrs["poses"].astype(np.float32, copy=False)
    audio = arrs["audio"].astype(np.float32, copy=False)
    ref = arrs["ref"].astype(np.float32, copy=False)
    _check_arrays(rec.id, poses, audio, ref, fps, SAMPLE_RATE, frame_bounds)
    if poses.shape[0] != rec.num_frames or abs(fps - rec.fps) > 1e-6:
        raise DataError(f"clip {rec.id}: manifest says {rec.num_frames} frames at {rec.fps:g} fps "
                        f"but {path.name} holds {poses.shape[0]} at {fps:g}")
    return Clip(rec, poses, audio, ref, fps, int(arrs["width"]), int(arrs["height"]))


# --- statistics ------------------------------------------------------------------------------------
def relative_pose(poses: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Reference-relative coordinates: ``(xy - ref_xy) / torso_size(ref_xy)``.

    poses: (..., 133, 3 or 2); ref: (133, 3 or 2). Returns (..., 133, 2) float32.
    """
    from ..keypoints import torso_size

    r = ref[..., :2]
    return ((poses[..., :2] - r) / torso_size(r)).astype(np.float32)


def compute_stats(root: str | os.PathLike, split: str = "train", feature_cfg=None) -> dict:
    """Feature and pose normalisation statistics over one split; written to ``ROOT/stats.json``.

    Returns ``{"audio_mean": (D,), "audio_std": (D,), "pose_mean": (133,2), "pose_std": (133,2),
    "feature_cfg": {...}, "frames": n, "clips": c, "split": split}`` (lists in the JSON).
    Pose stats are of :func:`relative_pose`; stds are floored at 1e-6.
    """
    from ..config import to_dict
    from ..features import AudioFeatureConfig, audio_features

    cfg = feature_cfg or AudioFeatureConfig()
    recs = select(read_manifest(root), split)
    if not recs:
        raise DataError(f"{Path(root) / MANIFEST}: no clips in split {split!r}; stats need some")
    a_sum = a_sq = p_sum = p_sq = None
    n = 0
    for rec in recs:
        clip = load_clip(root, rec)
        T = clip.poses.shape[0]
        f = audio_features(clip.audio, 16000, clip.fps, T, cfg).astype(np.float64)
        p = relative_pose(clip.poses, clip.ref).astype(np.float64)
        if a_sum is None:
            a_sum, a_sq = np.zeros(f.shape[1]), np.zeros(f.shape[1])
            p_sum, p_sq = np.zeros(p.shape[1:]), np.zeros(p.shape[1:])
        a_sum += f.sum(0); a_sq += (f ** 2).sum(0)
        p_sum += p.sum(0); p_sq += (p ** 2).sum(0)
        n += T
    am, pm = a_sum / n, p_sum / n
    stats = {
        "split": split, "clips": len(recs), "frames": n, "feature_cfg": to_dict(cfg),
        "audio_mean": am.tolist(),
        "audio_std": np.sqrt(np.maximum(a_sq / n - am ** 2, 1e-12)).clip(1e-6).tolist(),
        "pose_mean": pm.tolist(),
        "pose_std": np.sqrt(np.maximum(p_sq / n - pm ** 2, 1e-12)).clip(1e-6).tolist(),
    }
    atomic_write_bytes(Path(root) / STATS, json.dumps(stats).encode())
    return stats


def load_stats(root: str | os.PathLike) -> dict:
    """Read ``ROOT/stats.json`` with arrays as float32 numpy arrays."""
    path = Path(root) / STATS
    if not path.is_file():
        raise DataError(f"{path}: stats not found; they are written by 'csg data synth' / "
                        "'csg data prepare'")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    for k in ("audio_mean", "audio_std", "pose_mean", "pose_std"):
        d[k] = np.asarray(d[k], np.float32)
    return d
