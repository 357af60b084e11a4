"""Configuration of the ``vdm`` renderer: frozen dataclasses, one comment per default.

Training configs live in ``configs/pose2video/vdm_{tiny,cpu,base}.yaml`` (``vdm_cpu.yaml`` is the
default of ``csg train renderer``); the renderer's options in ``configs/pose2video/vdm.yaml``.
Unknown keys raise (:func:`csg.config.from_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from csg.features import AudioFeatureConfig


@dataclass(frozen=True)
class VdmModelConfig:
    """Keyword arguments of :class:`pose2video.vdm.model.VdmDenoiser`."""

    latent_channels: int = 32  # codec latent channels (TAEF2: 32, SD VAE: 4)
    patch_size: int = 2  # latent patch side -> tokens per frame = (H/8/p) * (W/8/p)
    width: int = 192  # transformer width
    depth: int = 4  # blocks (spatial + temporal + audio cross-attention + MLP each)
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * width
    audio_context: int = 2  # m: audio tokens per frame = 2m + 1 (PAHA A(f))
    pose_guider_channels: int = 16  # first conv width of the pose guider
    pos_grid: float = 16.0  # positions span [0, pos_grid) whatever the resolution
    max_frames: int = 64  # longest window (context + noisy frames)
    num_train_timesteps: int = 1000  # diffusion steps of the training schedule
    prediction_type: str = "v_prediction"  # "v_prediction" | "epsilon" | "sample"
    attention: str = "dense"  # cross-frame attention: dense | global | global+local[+ref] (sparse.py)
    attention_topk: int = 2  # K past frames of the global mask


@dataclass(frozen=True)
class ParConfig:
    """Stage-2 PAR (PAHA Eq. 2-3) on the latent grid."""

    enabled: bool = True  # False: the ablation, weight 1 everywhere
    tau: float = 0.8  # τ, keypoint reliability threshold
    omega_small: float = 10.0  # ω1, hands and face
    omega_body: float = 2.0  # ω2, the body rectangle (1 elsewhere)
    radius_512: float = 10.0  # r in pixels at 512 px (scaled to the frame, then to the latent grid)


@dataclass(frozen=True)
class VdmTrainConfig:
    data: tuple = ("data/vdm/synth128",)  # prepared dataset roots (csg data synth / prepare)
    out: str = "runs/vdm"  # run folder (checkpoints, exported model)
    cache: str = ""  # latent cache folder ("" : <out>/latents)
    size: int = 256  # square training resolution, pixels (multiple of 8 * patch_size)
    codec: str = "taef2"  # "taef2" | "autoencoder_kl"
    codec_path: str = ""  # weights folder / hub id of the codec ("" : the shipped TAEF2 / small decoder)
    frames_per_clip: int = 48  # frames encoded per clip (a contiguous run; encoding is slow)
    framing: float = -1.0  # the clips are person crops with this margin (vdm.json; -1: not recorded)
    window: int = 6  # frames per training sample (carried context + noisy targets)
    carry: int = 2  # frames carried from the previous window at render time
    carry_prob: float = 0.5  # p of giving the first `carry` frames clean (trains window chaining)
    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    model: VdmModelConfig = field(default_factory=VdmModelConfig)
    par: ParConfig = field(default_factory=ParConfig)
    drop_audio: float = 0.1  # p of the null audio condition (CFG training)
    drop_pose: float = 0.1  # p of the null pose condition (CFG training)
    batch_size: int = 2  # per process
    lr: float = 3e-4  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup: int = 50  # linear warm-up steps
    max_steps: int = 2000  # optimiser steps
    max_minutes: float = 0.0  # stop (and export) after this wall time; 0: no limit
    clip_grad: float = 1.0  # gradient norm clip
    log_every: int = 20  # steps between log lines
    save_every: int = 200  # steps between resumable checkpoints
    seed: int = 0  # init, data order, noise
    mixed_precision: str = "no"  # accelerate: "no" | "bf16" (GPU) | "fp16"
    gradient_checkpointing: bool = False  # recompute blocks in backward (memory for time)
    export_dtype: str = "float16"  # exported weights: "float16" | "float32"

    def __post_init__(self) -> None:
        """One ConfigError line for a value out of range, before any data is read or written."""
        from csg import validate as V
        from csg.training import check_training_config

        check_training_config(self, {"size": 8, "frames_per_clip": 1, "window": 2, "carry": 0})
        for key in ("carry_prob", "drop_audio", "drop_pose"):
            V.fraction(getattr(self, key), key)


@dataclass(frozen=True)
class VdmRenderConfig:
    """Options of ``get_renderer("vdm", ...)`` (``configs/pose2video/vdm.yaml``)."""

    weights: str = ""  # model folder (config.json + safetensors); "" : the embedded checkpoint
    codec: str = ""  # "" : the checkpoint's; "taef2" | "taef2_lite" (small decoder) | "autoencoder_kl"
    codec_path: str = ""  # weights folder / hub id of the codec ("" : the shipped TAEF2 / small decoder)
    size: int = 0  # working resolution (long side, px); 0 : the checkpoint's training size
    steps: int = 0  # DDIM steps (trailing spacing); 0 : the checkpoint's vdm.json "render", else 12
    eta: float = 0.0  # DDIM eta (0: deterministic given the initial noise)
    cfg_pose: float = 0.0  # pose CFG scale (1: off); 0 : the checkpoint's "render", else 2.0
    cfg_audio: float = 0.0  # audio CFG scale (1: off); 0 : the checkpoint's "render", else 1.0
    attention: str = ""  # dense | global | global+local | global+local+ref; "" : the model's
    attention_topk: int = 0  # K past frames of the global mask; 0 : the model's
    window: int = 0  # frames per model window incl. carried ones; 0 : the training window
    overlap: int = -1  # frames carried between windows; -1 : the training `carry`
    threshold: float = 0.3  # keypoint score below which the skeleton map omits a point
    framing: float = -2.0  # render a square crop around the photo's person with this margin, pasted
    # back into the photo (as csg.data.prepare crops); -1: the whole photo; -2: the checkpoint's
    background: str = "photo"  # "photo": outside the zone the skeleton and the photo's person can
    # reach (pose2video.masks.skeleton_zone), the photo's pixels in every frame; "model": the model's
    # frame everywhere
    # PCE sync-classifier guidance on the latents (PAHA Eq. 8-12, docs/guidance.md, stage 2)
    guidance: str = "none"  # "none" | "sg" (sequential) | "dg" (differential)
    guidance_weights: str = ""  # folder of classifier_face/ + classifier_nonface/; "" : embedded
    lambda_nonface: float = 1.0  # λ_nf, Eq. 8
    lambda_face: float = 0.1  # λ_f, Eq. 9
    lambda_diff: float = 0.25  # λ_diff, Eq. 12 (dg)
    guided_fraction: float = 0.5  # r: guide the first r of the DDIM steps
    dg_form: str = "residual"  # "residual" | "literal" (Eq. 12 as printed)
