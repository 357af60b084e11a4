"""Configuration of stage 1 (audio2pose): frozen dataclasses, one comment per default.

Loaded from ``configs/audio2pose/*.yaml`` with :func:`csg.config.load_config`; unknown keys raise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from csg.features import AudioFeatureConfig

from .par import ParConfig


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 192  # transformer width
    depth: int = 4  # encoder layers
    heads: int = 4  # attention heads
    ff_mult: int = 4  # MLP hidden = ff_mult * dim
    dropout: float = 0.1  # dropout inside the encoder (training only)
    prediction_type: str = "sample"  # "sample" (x0, as Democratizing-CSG) | "v_prediction"


@dataclass(frozen=True)
class DiffusionConfig:
    num_train_timesteps: int = 1000  # cosine schedule length
    cond_drop: float = 0.1  # p of replacing the audio by the null embedding (CFG training)
    prefix_prob: float = 0.5  # p of giving the model a known prefix of the window
    max_prefix: int = 25  # longest known prefix (frames); inference overlap must not exceed it


@dataclass(frozen=True)
class SamplingConfig:
    window: int = 100  # frames per generated window (memory bound)
    overlap: int = 25  # known frames carried from one window into the next
    steps: int = 25  # DDIM steps
    cfg_scale: float = 2.0  # classifier-free guidance scale (1: off)
    eta: float = 0.0  # DDIM eta (0: deterministic given the initial noise)
    savgol: int = 7  # Savitzky-Golay window (frames, odd) on the output, as CSG does; 0: off
    one_euro: bool = False  # per-region One-Euro filter after it (csg.smoothing.REGION_CUTOFFS)
    ease_in: int = 0  # frames over which the output eases out of the reference (0: off)
    one_euro_arms: bool = False  # One-Euro on elbows, wrists, hands only (head, face, torso unfiltered)
    mouth_scale: float = 1.0  # jaw and lip motion x this (audio2pose.postprocess.scale_mouth; 1: off)
    idle: float = 0.0  # gain of the corpus's head/torso process added to the output (0: off)
    # reference hand directions seen in training, degrees (left lo, left hi, right lo, right hi); a
    # photo's hand outside its range is turned into it for the network and the motion turned back
    # (audio2pose.normalize.hand_turns); recorded by training; None: off
    hand_range: tuple[float, ...] | None = None
    # (shoulder-to-hip height, hip width) / shoulder width of the training references: a photo
    # without hips gets hips there for the network's anchors (audio2pose.normalize.complete_hips);
    # recorded by training; None: off
    hips: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.hand_range is not None and len(self.hand_range) != 4:
            raise ValueError(f"hand_range needs 4 angles (left lo, hi, right lo, hi), got "
                             f"{list(self.hand_range)}")
        if self.hips is not None and (len(self.hips) != 2 or min(self.hips) <= 0):
            raise ValueError(f"hips needs 2 positive ratios (height, width), got {list(self.hips)}")


@dataclass(frozen=True)
class TrainConfig:
    data: str = "data/synth"  # dataset root (manifest.jsonl + clips/); --data overrides
    out: str = "runs/audio2pose"  # run folder; --out overrides
    fps: float = 25.0  # pose frame rate of the data and of generation
    window: int = 100  # training window, frames
    augment_variants: int = 2  # augmented audio copies per clip (noise, reverb, gain); 0: none
    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    par: ParConfig = field(default_factory=ParConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    batch_size: int = 16  # per process
    grad_accum: int = 1  # gradient accumulation steps
    lr: float = 5e-4  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup: int = 200  # linear warm-up steps, then cosine decay to 10 %
    max_steps: int = 6000  # optimiser steps
    max_minutes: float = 0.0  # stop (and export) after this wall time; 0: no limit
    clip_grad: float = 1.0  # gradient norm clip
    score_weight: float = 0.1  # weight of the score-head BCE
    velocity_weight: float = 0.0  # weight of the frame-difference (velocity) loss on x0 (0: off)
    init_from: str = ""  # fine-tune from this pipeline folder (its weights and motion stats); "": scratch
    ref_start: float = 0.0  # share of windows whose reference is their own first frame (PoseWindowDataset)
    record_reference_frame: bool = True  # export sampling.hand_range / hips of the training refs
    stats_items: int = 1000  # training clips used for the motion mean / std
    log_every: int = 50  # steps between log lines
    save_every: int = 500  # steps between resumable checkpoints
    seed: int = 0  # model init, data order and noise
    num_workers: int = 0  # DataLoader workers
    mixed_precision: str = "no"  # accelerate: "no" | "fp16" | "bf16"
    export_dtype: str = "float16"  # dtype of the exported weights: "float16" | "float32"

    def __post_init__(self) -> None:
        from csg import validate as V
        from csg.training import check_training_config

        check_training_config(self, {"window": 1, "augment_variants": 0, "stats_items": 1})
        V.fps(self.fps, "fps")
        V.fraction(self.ref_start, "ref_start")
