"""Latent cache and training windows for the ``vdm`` renderer.

Encoding frames is the slow part of training on a CPU (TAEF2: about 1 s per 256 px frame on 2
threads), so every prepared clip (``csg data synth`` / ``csg data prepare`` output, frames in
``clips/<id>.mp4``) is encoded once into ``CACHE/<clip id>.npz``:

    latents  (n, C, h, w) float16   the first ``frames_per_clip`` frames, square-cropped and resized
    poses    (n, 133, 3)  float32   the same frames' skeletons on the ``size`` x ``size`` canvas
    audio    (n, 2m+1, D) float32   per-frame audio features with ±m neighbours (csg.features)
    maps     (n, 3, size, size) uint8  the skeleton maps (csg.draw), drawn once (slow on CPU)
    par      (n, 5, h, w) float16   PAR weight and face / hands / body / rest areas (.par)
    fps      ()

A cache file is reused when its ``key`` (codec, size, frames, feature config) matches.
:class:`LatentWindowDataset` draws training samples: a window of ``window`` consecutive frames and a
random reference frame of the same clip.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from csg.errors import DataError

log = logging.getLogger(__name__)


def square_fit(hw: tuple[int, int], size: int) -> tuple[float, int, int]:
    """(scale, x0, y0): scale the shorter side to ``size`` and centre-crop a ``size`` square.
    A point (x, y) maps to (x * scale - x0, y * scale - y0)."""
    h, w = hw
    s = size / min(h, w)
    return s, int(round((w * s - size) / 2)), int(round((h * s - size) / 2))


def fit_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 by :func:`square_fit` (area interpolation)."""
    import cv2

    s, x0, y0 = square_fit(frame.shape[:2], size)
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (max(size, int(round(w * s))), max(size, int(round(h * s)))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[y0:y0 + size, x0:x0 + size])


def fit_poses(poses: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """(..., 133, 3) pixel skeletons -> the :func:`fit_frame` canvas (scores unchanged)."""
    s, x0, y0 = square_fit(hw, size)
    out = np.array(poses, np.float32, copy=True)
    out[..., 0] = out[..., 0] * s - x0
    out[..., 1] = out[..., 1] * s - y0
    return out


PAR_KEYS = ("weight", "face", "hands", "body", "rest")
"""Channel order of the cached ``par`` array."""


def cache_files(folders) -> list[Path]:
    """The latent cache files (``*.npz``) of ``folders``, sorted."""
    return sorted(f for c in folders for f in Path(c).glob("*.npz"))


def cache_key(codec: str, codec_path: str, size: int, frames: int, features) -> str:
    """Key of the encoded part of a cache file (latents, poses, audio)."""
    from dataclasses import asdict

    blob = json.dumps({"codec": codec, "path": codec_path, "size": size, "frames": frames,
                       "features": asdict(features)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def encode_frames(codec, frames: np.ndarray, batch: int = 4) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, C, H/8, W/8) float32 latents, ``batch`` frames at a time."""
    import torch

    out = []
    for a in range(0, len(frames), batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[a:a + batch])).permute(0, 3, 1, 2)
        out.append(codec.encode(x.float() / 255).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def audio_tokens(audio: np.ndarray, fps: float, num_frames: int, features) -> np.ndarray:
    """(N,) 16 kHz audio -> (num_frames, 2m + 1, D) per-frame feature tokens (PAHA A(f))."""
    from csg.features import audio_features

    f = audio_features(np.asarray(audio, np.float32), 16000, fps, num_frames, features)
    return f.reshape(num_frames, 2 * features.context + 1, -1).astype(np.float32)


def build_cache(roots, cache_dir: str | Path, codec, *, codec_name: str, codec_path: str,
                size: int, frames_per_clip: int, features, par=None,
                split: str | None = "train", progress: bool = True) -> list[Path]:
    """Encode every clip with frames of the dataset ``roots`` into ``cache_dir``; returns the cache
    files (reused when their key matches). Clips without frames are skipped with a warning."""
    from tqdm import tqdm

    from csg.data.manifest import load_clip, read_manifest, select
    from csg.video import read_video

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    from .config import ParConfig

    from dataclasses import asdict, replace

    par = replace(par or ParConfig(), enabled=True)  # the ablation reuses the cache
    key = cache_key(codec_name, codec_path, size, frames_per_clip, features)
    par_key = json.dumps(asdict(par), sort_keys=True)
    todo = []
    for root in roots:
        for rec in select(read_manifest(root), split):
            if not rec.video:
                log.warning("clip %s: no frames (prepared with --no-frames); skipped", rec.id)
                continue
            todo.append((Path(root), rec))
    if not todo:
        raise DataError(f"{', '.join(map(str, roots))}: no {split or ''} clips with frames; "
                        "make data with `csg data synth` or `csg data prepare` (with --frames)")
    files = []
    for root, rec in tqdm(todo, desc="encode", unit="clip", disable=not progress):
        path = cache_dir / f"{rec.id}.npz"
        files.append(path)
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                old = {k: z[k] for k in z.files}
            if str(old["key"]) == key:
                if str(old.get("par_key", "")) != par_key:  # encoded already: add maps and PAR
                    _save(path, old, size, par, par_key)
                continue
        clip = load_clip(root, rec)
        n = min(frames_per_clip, rec.num_frames)
        raw = np.stack(list(read_video(root / rec.video, max_frames=n)))
        n = len(raw)
        frames = np.stack([fit_frame(f, size) for f in raw])
        lat = encode_frames(codec, frames)
        poses = fit_poses(clip.poses[:n], raw.shape[1:3], size)
        tokens = audio_tokens(clip.audio, clip.fps, clip.poses.shape[0], features)[:n]
        _save(path, {"latents": lat.astype(np.float16), "poses": poses, "audio": tokens,
                     "fps": np.float64(clip.fps), "key": np.array(key)}, size, par, par_key)
    return files


def _save(path: Path, arrays: dict, size: int, par, par_key: str) -> None:
    """Add the skeleton maps and PAR maps of ``arrays["poses"]`` and write atomically."""
    from .par import latent_par

    poses, lat = arrays["poses"], arrays["latents"]
    maps = (pose_maps(poses, (size, size)).numpy() * 255).round().astype(np.uint8)
    pm = latent_par(poses[None], (size, size), lat.shape[-2:], par)
    pars = np.stack([pm[k][0].numpy() for k in PAR_KEYS], 1).astype(np.float16)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: v for k, v in arrays.items() if k not in ("maps", "par", "par_key")},
             maps=maps, par=pars, par_key=np.array(par_key))
    tmp.replace(path)


class LatentWindowDataset:
    """Training samples from cache files (a torch ``Dataset``; items are dicts of tensors).

    Item: ``ref`` (C, h, w) latent of a random frame of the clip, ``ref_pose`` (133, 3), ``latents``
    (W, C, h, w), ``poses`` (W, 133, 3) on the ``size`` canvas, ``audio`` (W, 2m + 1, D), and when
    the cache holds them ``maps`` (W + 1, 3, S, S) float skeleton maps (reference first) and
    ``par`` (W, 5, h, w) (:data:`PAR_KEYS`). Windows
    start every ``stride`` frames; the reference frame is drawn from ``(seed, epoch, index)``.
    """

    def __init__(self, files, *, window: int, stride: int = 1, seed: int = 0):
        self.window, self.seed, self.epoch = int(window), int(seed), 0
        self.clips = []
        for f in files:
            with np.load(f, allow_pickle=False) as z:
                clip = {k: z[k] for k in ("latents", "poses", "audio", "maps", "par")
                        if k in z.files}
            if len(clip["latents"]) >= window:
                self.clips.append(clip)
            else:
                log.warning("%s: %d frames < window %d; skipped", f, len(clip["latents"]), window)
        if not self.clips:
            raise DataError(f"no cached clip has {window} frames; lower `window` or raise "
                            "`frames_per_clip`")
        self.items = [(c, s) for c, clip in enumerate(self.clips)
                      for s in range(0, len(clip["latents"]) - window + 1, stride)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        import torch

        c, s = self.items[i]
        clip = self.clips[c]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        r = int(rng.integers(len(clip["latents"])))
        sl = slice(s, s + self.window)
        return {"ref": torch.from_numpy(clip["latents"][r].astype(np.float32)),
                "ref_pose": torch.from_numpy(clip["poses"][r]),
                "latents": torch.from_numpy(clip["latents"][sl].astype(np.float32)),
                "poses": torch.from_numpy(clip["poses"][sl]),
                "audio": torch.from_numpy(clip["audio"][sl]),
                **({"maps": torch.from_numpy(np.concatenate([clip["maps"][r:r + 1],
                                                             clip["maps"][sl]])).float() / 255,
                    "par": torch.from_numpy(clip["par"][sl].astype(np.float32))}
                   if "maps" in clip else {})}


def pose_maps(poses, size_hw: tuple[int, int], threshold: float = 0.3):
    """(..., 133, 3) pixel skeletons (numpy or torch) -> (..., 3, H, W) float32 torch maps in
    [0, 1], drawn with :func:`csg.draw.draw_pose`."""
    import torch

    from csg.draw import draw_pose

    p = poses.detach().cpu().numpy() if hasattr(poses, "detach") else np.asarray(poses)
    lead = p.shape[:-2]
    flat = p.reshape(-1, *p.shape[-2:])
    maps = np.stack([draw_pose(k, size_hw, threshold=threshold) for k in flat]) if len(flat) \
        else np.zeros((0, *size_hw, 3), np.uint8)
    t = torch.from_numpy(maps).permute(0, 3, 1, 2).float() / 255
    return t.reshape(*lead, 3, *size_hw)
