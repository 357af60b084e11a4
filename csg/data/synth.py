"""``csg data synth``: a procedural co-speech corpus in the dataset format of :mod:`.manifest`.

Each clip belongs to a speaker (body shape, look, voice, performance style), drawn from
``default_rng([seed, 1, speaker])``; everything else in the clip from ``default_rng([seed, 0,
index])``, so the same seed gives identical arrays whatever the worker count. Speakers are split
80/10/10 into train/val/test (at least one each when there are three or more speakers).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import CLIPS_DIR, ClipRecord, compute_stats, save_npz, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthConfig:
    """Options of ``csg data synth``."""

    clips: int = 200              # number of clips
    seconds: float = 8.0          # clip length
    seed: int = 0                 # corpus seed
    fps: float = 25.0
    size_hw: tuple = (256, 256)   # canvas (H, W) of poses and frames
    frames: bool = True           # also write clips/<id>.mp4 avatar videos
    espeak: bool = True           # use espeak-ng for about half the speakers when installed
    clips_per_speaker: int = 4    # speakers = ceil(clips / clips_per_speaker)

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        h, w = (int(v) for v in self.size_hw)
        if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
            raise ConfigError(f"synth size must be {MIN_SIDE}..{MAX_SIDE} pixels per side, got "
                              f"{h}x{w} (H x W)")


MIN_SIDE, MAX_SIDE = 16, 2048
"""Canvas sides of synthetic clips (a 2048 x 2048 frame is 12 MB; larger only costs memory)."""


def num_speakers(cfg: SynthConfig) -> int:
    return max(1, -(-cfg.clips // cfg.clips_per_speaker))


def speaker_splits(n: int, seed: int) -> list[str]:
    """Split label of each of ``n`` speakers: a seeded permutation cut 80/10/10."""
    order = np.random.default_rng([seed, 2]).permutation(n)
    n_val = n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    labels = ["train"] * n
    for rank, spk in enumerate(order):
        if rank < n_test:
            labels[spk] = "test"
        elif rank < n_test + n_val:
            labels[spk] = "val"
    return labels


def speaker(cfg: SynthConfig, spk: int, use_espeak: bool) -> dict:
    """The fixed traits of speaker ``spk``: shape, style, look, voice kind and parameters."""
    from .synth_audio import sample_espeak_voice, sample_voice
    from .synth_frames import sample_look
    from .synth_motion import random_speaker

    g = np.random.default_rng([cfg.seed, 1, spk])
    shape, style = random_speaker(g, cfg.size_hw)
    look = sample_look(g, cfg.size_hw)
    voice = sample_voice(g)
    espeak_voice = sample_espeak_voice(g)
    kind = "espeak" if use_espeak and g.random() < 0.5 else "procedural"
    return dict(shape=shape, style=style, look=look, voice=voice, espeak_voice=espeak_voice,
                kind=kind)


def make_clip(cfg: SynthConfig, index: int, root: Path, split: str, use_espeak: bool) -> ClipRecord:
    """Generate, check and write clip ``index`` (npz, and mp4 when ``cfg.frames``)."""
    from ..audio import SAMPLE_RATE, fit_to_frames, num_frames_for
    from .synth_audio import espeak_speech, procedural_speech
    from .synth_motion import perform

    spk = index % num_speakers(cfg)
    sp = speaker(cfg, spk, use_espeak)
    g = np.random.default_rng([cfg.seed, 0, index])
    wav = ev = None
    if sp["kind"] == "espeak":
        try:
            wav, ev = espeak_speech(cfg.seconds, g, SAMPLE_RATE, sp["espeak_voice"])
        except (RuntimeError, OSError) as e:
            log.warning("clip %d: espeak-ng failed (%s); using the procedural voice", index, e)
    if wav is None:
        wav, ev = procedural_speech(cfg.seconds, sp["voice"], g, SAMPLE_RATE)
    T = num_frames_for(len(wav), SAMPLE_RATE, cfg.fps)
    wav = fit_to_frames(wav, T, SAMPLE_RATE, cfg.fps)
    poses, ref = perform(ev, sp["shape"], sp["style"], T, cfg.fps, g)
    cid = f"synth_{index:05d}"
    H, W = cfg.size_hw
    npz = f"{CLIPS_DIR}/{cid}.npz"
    video = None
    if cfg.frames:
        from ..video import VideoWriter
        from .synth_frames import draw_avatar

        video = f"{CLIPS_DIR}/{cid}.mp4"
        with VideoWriter(root / video, cfg.fps, (H, W), audio=wav, overwrite=True,
                         preset="veryfast") as vw:
            for k in poses:
                vw.write(draw_avatar(k, sp["look"]))
    save_npz(root / npz, poses=poses, audio=wav, ref=ref, fps=cfg.fps, width=W, height=H)
    return ClipRecord(id=cid, npz=npz, video=video, fps=float(cfg.fps), num_frames=int(T),
                      width=W, height=H, speaker=f"synth_spk{spk:04d}", split=split,
                      source="synth", seconds=len(wav) / SAMPLE_RATE)


def _job(args):
    cfg, index, root, split, use_espeak = args
    return make_clip(cfg, index, Path(root), split, use_espeak)


def make_corpus(root: str | Path, cfg: SynthConfig, *, workers: int = 2,
                progress: bool = True) -> list[ClipRecord]:
    """Write ``cfg.clips`` clips, ``manifest.jsonl`` and ``stats.json`` (train split) under root."""
    from tqdm import tqdm

    from .synth_audio import espeak_available

    root = Path(root)
    (root / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    use_espeak = cfg.espeak and espeak_available()
    if cfg.espeak and not use_espeak:
        log.warning("espeak-ng not found: every speaker uses the procedural voice "
                    "(install it with 'apt-get install espeak-ng')")
    splits = speaker_splits(num_speakers(cfg), cfg.seed)
    jobs = [(cfg, i, str(root), splits[i % len(splits)], use_espeak) for i in range(cfg.clips)]
    bar = dict(total=len(jobs), disable=not progress, desc="synth", unit="clip")
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            records = list(tqdm(pool.imap(_job, jobs), **bar))
    else:
        records = [_job(j) for j in tqdm(jobs, **bar)]
    write_manifest(root, records)
    if any(r.split == "train" for r in records):
        compute_stats(root, "train")
    return records
