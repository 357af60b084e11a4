"""``Audio2PosePipeline``: speech + reference skeleton -> skeleton sequence (stage 1 API).

A pipeline folder holds ``model/`` (``PoseDenoiser.save_pretrained``: config.json + safetensors,
including the coordinate statistics) and ``audio2pose.json`` (audio feature config, fps, sampling
defaults).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from csg.audio import SAMPLE_RATE, fit_to_frames, num_frames_for, resample
from csg.errors import InputError, WeightsNotFoundError
from csg.features import AudioFeatureConfig, audio_features
from csg.outputs import atomic_write_text
from csg.pose import PoseSequence

from .config import SamplingConfig
from .normalize import (RELIABLE, complete_hips, denormalize, hand_shifts, hand_turns,
                        normalize, reference_anchors, turn_hands, unturn_hands)

logger = logging.getLogger(__name__)

PIPELINE_FILE = "audio2pose.json"
MODEL_DIR = "model"
DEFAULT_DIR = Path(__file__).resolve().parent / "weights" / "default"


def default_checkpoint_dir() -> Path:
    """The committed default checkpoint ``audio2pose/weights/default``."""
    if not (DEFAULT_DIR / PIPELINE_FILE).is_file():
        raise WeightsNotFoundError(f"{DEFAULT_DIR}: the default audio2pose checkpoint is missing; "
                                   "train one with 'csg train audio2pose' and pass --checkpoint")
    return DEFAULT_DIR


WEIGHTS_DIR = DEFAULT_DIR.parent


def embedded_checkpoints() -> list[str]:
    """Names of the checkpoints shipped in ``audio2pose/weights/`` (``default``, ``student``...)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(d.name for d in WEIGHTS_DIR.iterdir() if (d / PIPELINE_FILE).is_file())


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """None -> the default; a folder -> itself; a bare name of an embedded checkpoint
    (:func:`embedded_checkpoints`, e.g. ``student``) -> ``audio2pose/weights/<name>``; otherwise a
    hub id from the local cache only (:func:`csg.hub.resolve_folder`). The folder must hold
    ``audio2pose.json``."""
    from csg.hub import resolve_folder

    if checkpoint is None:
        return default_checkpoint_dir()
    name = str(checkpoint)
    if not Path(name).expanduser().exists() and name in embedded_checkpoints():
        return WEIGHTS_DIR / name
    return resolve_folder(checkpoint, what="audio2pose checkpoint", marker=PIPELINE_FILE,
                          hint="pass the 'final' folder of a training run")


class Audio2PosePipeline:
    """model: :class:`~audio2pose.model.PoseDenoiser` or (loaded for inference)
    :class:`~audio2pose.denoiser.PoseDenoiserNet`; features: audio feature config; fps;
    sampling: window / overlap / steps / cfg_scale / eta defaults."""

    def __init__(self, model, features: AudioFeatureConfig, fps: float = 25.0,
                 sampling: SamplingConfig = SamplingConfig(), name: str = "audio2pose"):
        self.model = model.eval()
        self.features = features
        self.fps = float(fps)
        self.sampling = sampling
        self.name = name

    # --- IO ------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, *, dtype: str = "float32") -> Path:
        """Write ``model/`` and ``audio2pose.json``; ``dtype="float16"`` halves the weights."""

        from csg.config import to_dict

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        model = self.model
        if not hasattr(model, "save_pretrained"):  # loaded for inference: a PoseDenoiserNet
            from .model import PoseDenoiser

            model = PoseDenoiser.from_net(model)
        if dtype == "float16":
            import copy

            model = copy.deepcopy(model).half()
        model.save_pretrained(p / MODEL_DIR, safe_serialization=True)
        cfg_path = p / MODEL_DIR / "config.json"  # no machine-local load path in shipped configs
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg.pop("_name_or_path", None)
        atomic_write_text(cfg_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        meta = {"fps": self.fps, "features": to_dict(self.features),
                "sampling": asdict(self.sampling), "name": self.name}
        atomic_write_text(p / PIPELINE_FILE, json.dumps(meta, indent=2) + "\n")
        return p

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, *,
                        device: str = "cpu", trainable: bool = False) -> "Audio2PosePipeline":
        """Load a pipeline folder (None: the default checkpoint; a hub id: local cache only).

        The model is a plain :class:`~audio2pose.denoiser.PoseDenoiserNet` read with safetensors
        alone (:func:`~audio2pose.denoiser.load_denoiser`: no diffusers, transformers or
        torch._dynamo import, strict keys); ``trainable=True`` loads the diffusers
        :class:`~audio2pose.model.PoseDenoiser` instead (to train and ``save_pretrained`` it).
        Both compute the same numbers."""
        from csg.config import from_dict

        p = resolve_checkpoint(path)
        try:
            meta = json.loads((p / PIPELINE_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise WeightsNotFoundError(f"{p / PIPELINE_FILE}: unreadable ({e})") from None
        if trainable:
            import torch

            from .model import PoseDenoiser

            model = PoseDenoiser.from_pretrained(p / MODEL_DIR, torch_dtype=torch.float32)
            model = model.to(device)
        else:
            from .denoiser import load_denoiser

            model = load_denoiser(p / MODEL_DIR, device=device)
        feats = from_dict(AudioFeatureConfig, meta["features"], f"{p / PIPELINE_FILE}:features")
        samp = from_dict(SamplingConfig, meta["sampling"], f"{p / PIPELINE_FILE}:sampling")
        return cls(model, feats, meta["fps"], samp, meta.get("name", p.name))

    # --- generation ----------------------------------------------------------------------------
    def __call__(self, wav: np.ndarray, sr: int, ref: PoseSequence, *, steps: int | None = None,
                 cfg_scale: float | None = None, generator=None, guide: Callable | None = None,
                 progress: bool = True, callback: Callable | None = None,
                 seed: int | None = None) -> PoseSequence:
        """Generate poses for ``wav`` (N,) at ``sr`` Hz on the reference's canvas.

        T = round(duration * fps). Frame 0 is the reference skeleton. ``generator`` (a CPU
        ``torch.Generator``) fixes the result; ``seed`` is only recorded in meta (generate_poses
        passes it). ``guide``: see :mod:`audio2pose.sampling`. callback(i, t, z) after each step.
        """
        import torch

        from .sampling import sample_long

        s = self.sampling
        steps = s.steps if steps is None else int(steps)
        cfg_scale = s.cfg_scale if cfg_scale is None else float(cfg_scale)
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        ref_kp = np.asarray(ref.keypoints[0], np.float32)
        try:
            reference_anchors(ref_kp)
        except ValueError as e:
            raise InputError(f"reference skeleton: {e}; use a photo showing both shoulders") from None
        wav = resample(np.asarray(wav, np.float32), int(sr), SAMPLE_RATE)
        T = num_frames_for(wav.shape[0], SAMPLE_RATE, self.fps)
        if T < 1:
            raise InputError("audio is shorter than one pose frame")
        wav = fit_to_frames(wav, T, SAMPLE_RATE, self.fps)
        feats = audio_features(wav, SAMPLE_RATE, self.fps, T, self.features)
        dev = next(self.model.parameters()).device
        m = self.model
        net_kp, ref_np, turns, shifts = self.network_reference(ref_kp)
        ref_rel = torch.from_numpy(ref_np).to(dev)
        ref_in = torch.where(torch.from_numpy(net_kp[:, 2:] > RELIABLE).to(dev), ref_rel, 0.0)
        first = m.standardize(torch.zeros_like(ref_rel))
        audio = torch.from_numpy(feats).to(dev)[None]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            from csg.diffusion.windows import window_spans

            bar = tqdm(total=len(window_spans(T, s.window, s.overlap)) * steps, unit="step",
                       desc="audio2pose", leave=False)

        def on_step(i, t, z):
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(i, t, z)

        try:
            out = sample_long(m, audio, ref_in[None], first[None], window=s.window, overlap=s.overlap,
                              steps=steps, cfg_scale=cfg_scale, generator=generator, eta=s.eta,
                              guide=guide, callback=on_step)
        finally:
            if bar is not None:
                bar.close()
        rel = unturn_hands((m.destandardize(out.z0[0]) + ref_rel).float().cpu().numpy(), turns,
                           shifts)
        xy = savgol_smooth(denormalize(rel, net_kp), s.savgol)
        scores = out.scores[0].float().cpu().numpy()
        scores = np.where(ref_kp[None, :, 2] > RELIABLE, scores, 0.0)  # absent in ref: absent
        xy[0], scores[0] = ref_kp[:, :2], ref_kp[:, 2]
        if s.one_euro or s.one_euro_arms or s.mouth_scale != 1.0 or s.idle > 0 or s.ease_in > 0:
            xy = self._postprocess(xy, ref_kp, wav, T, generator)
        kps = np.concatenate([xy, scores[..., None]], axis=-1).astype(np.float32)
        meta: dict[str, Any] = {"model": self.name, "steps": steps, "cfg": cfg_scale,
                                "smooth": s.savgol, "generator": "audio2pose"}
        if s.one_euro:
            meta["one_euro"] = True
        if s.one_euro_arms:
            meta["one_euro_arms"] = True
        if s.mouth_scale != 1.0:
            meta["mouth_scale"] = s.mouth_scale
        if s.idle > 0:
            meta["idle"] = s.idle
        if s.ease_in > 0:
            meta["ease_in"] = s.ease_in
        if turns.any() or shifts.any():
            meta["hand_frame"] = {"turn": [round(float(a), 1) for a in turns],
                                  "shift": np.round(shifts, 3).tolist()}
        if not np.array_equal(net_kp, ref_kp, equal_nan=True):
            meta["hips_completed"] = True
        if seed is not None:
            meta["seed"] = int(seed)
        return PoseSequence(kps, fps=self.fps, width=ref.width, height=ref.height,
                            meta=meta).validate("generated poses")

    def network_reference(self, ref_kp: np.ndarray):
        """The reference as the network is given it: ``(net_kp, rel, turns, shifts)``.

        ``net_kp``: ``ref_kp`` with hips completed (``sampling.hips``, for an upper-body photo);
        ``rel``: its reference-relative coordinates with each hand in its canonical frame
        (``sampling.hand_range``: turned into the directions seen in training, root on the
        wrist); ``turns`` (2,) degrees and ``shifts`` (2, 2) undo that on the output
        (:func:`audio2pose.normalize.unturn_hands`). All identities when both options are off."""
        s = self.sampling
        net_kp = ref_kp if s.hips is None else complete_hips(ref_kp, s.hips)
        rel = normalize(net_kp[:, :2], net_kp)
        turns, shifts = np.zeros(2), np.zeros((2, 2))
        if s.hand_range is not None:
            turns = hand_turns(rel, net_kp[:, 2], s.hand_range)
            shifts = hand_shifts(rel, net_kp[:, 2])
        return net_kp, turn_hands(rel, turns, shifts), turns, shifts

    def _postprocess(self, xy: np.ndarray, ref_kp: np.ndarray, wav: np.ndarray, T: int,
                     generator) -> np.ndarray:
        """The output steps of :mod:`audio2pose.postprocess` in their order (module doc): One-Euro
        (all regions or arms only), mouth scale, idle motion (its randomness: one integer drawn
        from ``generator`` after sampling), ease out of the reference. Returns float32."""
        import torch

        from csg.smoothing import ease_from, one_euro_regions

        from .postprocess import one_euro_arms, scale_mouth

        s = self.sampling
        if s.one_euro:
            xy = one_euro_regions(xy, self.fps)
        elif s.one_euro_arms:
            xy = one_euro_arms(xy, self.fps)
        if s.mouth_scale != 1.0:
            xy = scale_mouth(xy, s.mouth_scale)
        if s.idle > 0:
            from csg.data.synth_motion import idle_motion

            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            xy = xy + idle_motion(wav, SAMPLE_RATE, self.fps, T, ref_kp[:, :2],
                                  generator=np.random.default_rng(seed), gain=s.idle)
        if s.ease_in > 0:
            xy = ease_from(xy, ref_kp[:, :2], s.ease_in)
        return np.asarray(xy, np.float32)


def savgol_smooth(xy: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay filter along time (Democratizing-CSG smooths this way before rendering);
    :func:`csg.smoothing.savgol` (numpy; the same numbers as ``scipy.signal.savgol_filter``).

    xy: (T, 133, 2). ``window`` odd frames (shrunk to fit T; 0 or too short: returned unchanged),
    polynomial ``order``. Returns float32 (T, 133, 2).
    """
    T = xy.shape[0]
    w = min(int(window), T if T % 2 else T - 1)
    if w <= order + 1:
        return np.asarray(xy, np.float32)
    from csg.smoothing import savgol

    return savgol(np.asarray(xy, np.float64), w, order).astype(np.float32)


def generate_poses(wav: np.ndarray, sr: int, ref_pose: PoseSequence, *,
                   checkpoint: str | os.PathLike | None = None, steps: int | None = None,
                   cfg: float | None = None, seed: int = 0, guide: Callable | None = None,
                   device: str = "cpu", progress: bool = False) -> PoseSequence:
    """One call: load the checkpoint (default: the embedded one) and generate with ``seed``."""
    import torch

    pipe = Audio2PosePipeline.from_pretrained(checkpoint, device=device)
    g = torch.Generator().manual_seed(int(seed))
    return pipe(wav, sr, ref_pose, steps=steps, cfg_scale=cfg, generator=g, guide=guide,
                progress=progress, seed=seed)
