"""``csg data prepare``: real talking videos -> the dataset format of :mod:`.manifest`.

Per video: pass 1 reads every frame once, extracts a 133-point skeleton (``csg.extract.PoseExtractor``)
and a colour histogram; frames are then grouped into clips that break at scene cuts (histogram
distance above ``cut_threshold``) and wherever the person is lost or fails the confidence gates
(IASA: mean face score > ``min_face``, upper body > ``min_body`` with >= 90 % of it on screen);
clips shorter than ``min_seconds`` are dropped. Pass 2 decodes again and writes each clip's frames,
cropped around the person (one box per clip) and resized to ``size_hw``. The 16 kHz mono audio is
cut at the exact frame bounds. A done-marker per video (``ROOT/done/<hash>.json``, written
atomically after its clips) makes ``--resume`` skip it; the manifest is rebuilt from the markers.

Videos are independent jobs (:func:`prepare_one`), run in this process, in local worker processes or
as Ray tasks (:mod:`.engines`, ``--engine``/``--workers``/``--address``); the files do not depend on
which, nor on the order the jobs finish in.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import keypoints as K
from ..errors import CsgError, DataError, InputError
from .manifest import CLIPS_DIR, ClipRecord, atomic_write_bytes, compute_stats, save_npz, \
    write_manifest

log = logging.getLogger(__name__)
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
DONE_DIR = "done"
UPPER_BODY = list(range(0, 11))  # nose, eyes, ears, shoulders, elbows, wrists


@dataclass(frozen=True)
class PrepareConfig:
    """Options of ``csg data prepare``."""

    backend: str = "mediapipe"
    size_hw: Optional[tuple] = (512, 512)  # output frames (H, W); None keeps the full frame
    min_face: float = 0.9                  # mean face keypoint score gate
    min_body: float = 0.8                  # mean upper-body keypoint score gate
    min_visible: float = 0.9               # fraction of upper-body points inside the frame
    min_seconds: float = 2.0               # shortest clip kept
    cut_threshold: float = 0.5             # histogram distance in [0, 1] that marks a scene cut
    margin: float = 0.15                   # crop box margin, fraction of the box size
    split_by: str = "speaker"              # speaker (subfolder name, else file stem) | file
    seed: int = 0                          # salt of the hash-based split
    frames: bool = True                    # write clips/<id>.mp4


def list_videos(folder: str | Path) -> list[tuple[Path, str]]:
    """(path, speaker) of every video under ``folder``, sorted. Speaker: the first subfolder's name,
    or the file stem for videos directly in ``folder``."""
    root = Path(folder)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTS and p.is_file():
            rel = p.relative_to(root)
            out.append((p, rel.parts[0] if len(rel.parts) > 1 else p.stem))
    return out


def hash_split(key: str, seed: int, fractions=(0.8, 0.1)) -> str:
    """Deterministic train/val/test label of ``key`` (stable when videos are added)."""
    u = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 2 ** 32
    return "train" if u < fractions[0] else "val" if u < sum(fractions) else "test"


def colour_histogram(frame: np.ndarray, bins: int = 8) -> np.ndarray:
    """(bins**3,) normalised RGB histogram of an (H, W, 3) uint8 frame."""
    q = (frame[::2, ::2].reshape(-1, 3) // (256 // bins)).astype(np.int64)
    h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3)
    return h / max(h.sum(), 1)


def scene_cuts(hists: np.ndarray, threshold: float) -> np.ndarray:
    """(T,) bool, True at frame i when it starts a new shot: total-variation distance
    0.5 * |h_i - h_{i-1}|_1 > threshold. hists: (T, B)."""
    cut = np.zeros(len(hists), bool)
    if len(hists) > 1:
        cut[1:] = 0.5 * np.abs(np.diff(hists, axis=0)).sum(1) > threshold
    return cut


def passes_gates(kp: Optional[np.ndarray], size_hw: tuple[int, int], cfg: PrepareConfig) -> bool:
    """The IASA data gates on one (133, 3) skeleton (None: no person)."""
    if kp is None:
        return False
    H, W = size_hw
    up = kp[UPPER_BODY]
    inside = (up[:, 0] >= 0) & (up[:, 0] < W) & (up[:, 1] >= 0) & (up[:, 1] < H)
    return bool(kp[K.FACE, 2].mean() > cfg.min_face and up[:, 2].mean() > cfg.min_body
                and inside.mean() >= cfg.min_visible)


def segments(ok: np.ndarray, cuts: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, stop) runs of ``ok`` frames, broken at ``cuts``, at least ``min_len`` long."""
    out, start = [], None
    for i in range(len(ok) + 1):
        end = i == len(ok) or not ok[i] or (cuts[i] and start is not None)
        if end and start is not None:
            if i - start >= min_len:
                out.append((start, i))
            start = None
        if i < len(ok) and ok[i] and start is None:
            start = i
    return out


def crop_box(poses: np.ndarray, frame_hw: tuple[int, int], out_hw: tuple[int, int],
             margin: float) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) integer pixel box with the aspect of ``out_hw`` holding every confident point of
    ``poses`` (n, 133, 3) plus ``margin``, kept inside the frame where it fits."""
    H, W = frame_hw
    pts = poses[..., :2][poses[..., 2] > 0.3]
    if len(pts) == 0:
        return 0, 0, H, W
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = (y1 - y0) * (1 + 2 * margin), (x1 - x0) * (1 + 2 * margin)
    aspect = out_hw[0] / out_hw[1]
    h, w = max(h, w * aspect), max(w, h / aspect)
    scale = min(1.0, H / h, W / w)
    h, w = h * scale, w * scale
    h, w = min(H, max(2, int(round(h)))), min(W, max(2, int(round(w))))
    y = int(np.clip(round(cy - h / 2), 0, H - h))
    x = int(np.clip(round(cx - w / 2), 0, W - w))
    return y, x, h, w


def _clip_id(speaker: str, stem: str, k: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{speaker}__{stem}__{k:03d}")


def _marker(root: Path, rel: str) -> Path:
    return root / DONE_DIR / (hashlib.sha1(rel.encode()).hexdigest()[:16] + ".json")


def prepare_videos(videos: str | Path, out: str | Path, cfg: PrepareConfig = PrepareConfig(), *,
                   resume: bool = True, extractor: Callable | None = None,
                   progress: bool = True, engine: str = "local", workers: int = 1,
                   address: str | None = None) -> list[ClipRecord]:
    """Prepare every video under ``videos`` into the dataset at ``out``; returns all its records.

    ``extractor``: a zero-argument factory of a context manager whose ``__call__(frame)`` returns a
    (133, 3) skeleton or None (default: ``csg.extract.PoseExtractor(backend=cfg.backend)``; tests
    pass a fake one). Videos without audio or that cannot be read are skipped with a warning.

    ``engine``/``workers``/``address``: where the per-video jobs run (:mod:`.engines`: this
    process, ``workers`` local processes, or Ray). Each job writes its video's clips and then its
    done-marker, so the files do not depend on the engine or on the order jobs finish in, and a
    killed run resumes from the markers. With more than one process (or Ray) ``extractor`` must
    pickle (a top-level class or ``functools.partial``, not a lambda).
    """
    from .engines import check_engine, run_jobs

    check_engine(engine, workers, address)
    src, root = Path(videos), Path(out)
    items = list_videos(src)
    if not items:
        raise InputError(f"{src}: no videos ({', '.join(VIDEO_EXTS)}) found; point --videos at a "
                         "folder of talking videos")
    if extractor is None:
        extractor = partial(_pose_extractor, cfg.backend)
    jobs = []
    for path, speaker in items:
        rel = path.relative_to(src).as_posix()
        if resume and _marker(root, rel).is_file():
            log.info("%s: already prepared, skipping (resume)", rel)
            continue
        jobs.append((str(path), rel, speaker, str(root), cfg, extractor))
    if len(jobs) < len(items):
        log.info("resume: %d of %d videos already prepared", len(items) - len(jobs), len(items))
    for _ in run_jobs(prepare_one, jobs, engine=engine, workers=workers, address=address,
                      desc="prepare", progress=progress):
        pass
    records = collect_records(root)
    write_manifest(root, records)
    if any(r.split == "train" for r in records):
        compute_stats(root, "train")
    return records


def _pose_extractor(backend: str):
    from ..extract import PoseExtractor

    return PoseExtractor(backend=backend, video=True)


def prepare_one(path: str, rel: str, speaker: str, root: str, cfg: PrepareConfig,
                extractor: Callable) -> int:
    """The job of one video (any engine): its clips, then its done-marker; returns the clip count.
    Bad input (:class:`CsgError`) skips the video with a warning and an empty marker."""
    root_p = Path(root)
    split = hash_split(speaker if cfg.split_by == "speaker" else rel, cfg.seed)
    try:
        recs = prepare_video(Path(path), speaker, split, root_p, cfg, extractor)
    except CsgError as e:
        log.warning("%s: skipped (%s)", rel, e)
        recs = []
    atomic_write_bytes(_marker(root_p, rel), json.dumps(
        {"video": rel, "clips": [r.__dict__ for r in recs]}, sort_keys=True).encode())
    return len(recs)


def done_markers(root: str | Path) -> list[Path]:
    """The finished videos' done-markers under ``root``, sorted."""
    return [m for m in sorted((Path(root) / DONE_DIR).glob("*.json")) if not m.name.startswith(".")]


def collect_records(root: str | Path) -> list[ClipRecord]:
    """All clip records of the done-markers under ``root`` (not the hidden temporary files of a
    marker being written, or left by a killed run)."""
    recs = []
    for m in done_markers(root):
        try:
            d = json.loads(m.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{m}: corrupt done-marker ({e.msg}); delete it to redo that video")
        recs += [ClipRecord.from_dict(c, str(m)) for c in d["clips"]]
    return recs


def prepare_video(path: Path, speaker: str, split: str, root: Path, cfg: PrepareConfig,
                  extractor: Callable) -> list[ClipRecord]:
    """One video -> its clips (npz and, with ``cfg.frames``, mp4) under ``root``."""
    from ..audio import SAMPLE_RATE, fit_to_frames, frame_bounds
    from ..video import probe_video, read_audio_track, read_video

    info = probe_video(path)
    fps = float(info["fps"])
    wav, _ = read_audio_track(path, SAMPLE_RATE)
    kps, hists = [], []
    with extractor() as ex:
        for frame in read_video(path):
            hists.append(colour_histogram(frame))
            kps.append(ex(frame))
    frame_hw = (info["height"], info["width"])
    ok = np.array([passes_gates(k, frame_hw, cfg) for k in kps], bool)
    segs = segments(ok, scene_cuts(np.asarray(hists), cfg.cut_threshold),
                    max(1, int(round(cfg.min_seconds * fps))))
    log.info("%s: %d frames, %d usable, %d clips", path.name, len(kps), int(ok.sum()), len(segs))
    bounds = frame_bounds(len(kps), SAMPLE_RATE, fps)
    records, boxes = [], []
    for k, (a, b) in enumerate(segs):
        poses = np.stack([kps[i] for i in range(a, b)]).astype(np.float32)
        out_hw = cfg.size_hw or frame_hw
        box = crop_box(poses, frame_hw, out_hw, cfg.margin) if cfg.size_hw else (0, 0, *frame_hw)
        boxes.append(box)
        poses[..., 0] = (poses[..., 0] - box[1]) * out_hw[1] / box[3]
        poses[..., 1] = (poses[..., 1] - box[0]) * out_hw[0] / box[2]
        audio = fit_to_frames(wav[bounds[a]:], b - a, SAMPLE_RATE, fps)
        cid = _clip_id(speaker, path.stem, k)
        npz = f"{CLIPS_DIR}/{cid}.npz"
        save_npz(root / npz, poses=poses, audio=audio, ref=poses[0], fps=fps, width=out_hw[1],
                 height=out_hw[0])
        records.append(ClipRecord(id=cid, npz=npz, video=f"{CLIPS_DIR}/{cid}.mp4" if cfg.frames
                                  else None, fps=fps, num_frames=b - a, width=int(out_hw[1]),
                                  height=int(out_hw[0]), speaker=speaker, split=split,
                                  source="prepared", seconds=len(audio) / SAMPLE_RATE))
    if cfg.frames and segs:
        _write_frames(path, segs, boxes, records, root, cfg)
    return records


def _write_frames(path, segs, boxes, records, root, cfg) -> None:
    """Pass 2: decode again, crop + resize each clip's frames into its mp4 (with its audio)."""
    import cv2

    from ..video import VideoWriter, read_video

    from .manifest import load_clip

    k, writer = 0, None
    try:
        for i, frame in enumerate(read_video(path, max_frames=segs[-1][1])):
            while k < len(segs) and i >= segs[k][1]:
                writer.__exit__(None, None, None)
                writer, k = None, k + 1
            if k >= len(segs) or i < segs[k][0]:
                continue
            rec = records[k]
            if writer is None:
                clip = load_clip(root, rec)
                writer = VideoWriter(root / rec.video, rec.fps, (rec.height, rec.width),
                                     audio=clip.audio, overwrite=True, preset="veryfast")
                writer.__enter__()
            y, x, h, w = boxes[k]
            crop = frame[y:y + h, x:x + w]
            if crop.shape[:2] != (rec.height, rec.width):
                crop = cv2.resize(crop, (rec.width, rec.height), interpolation=cv2.INTER_AREA)
            writer.write(np.ascontiguousarray(crop))
        if writer is not None:
            writer.__exit__(None, None, None)
            writer = None
    finally:
        if writer is not None:
            import sys

            writer.__exit__(*sys.exc_info())
