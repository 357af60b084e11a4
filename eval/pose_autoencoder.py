"""The motion autoencoder whose latent space FGD and diversity are measured in.

After DiffGesture's / PAHA (appendix B.5) embedding net: a temporal conv encoder over windows of
normalised poses (reference-relative, torso-scaled, 123 joints x 2, see
:func:`eval.pose_metrics.normalise_clip`) down to a small latent vector, and a mirrored decoder that
reconstructs the window. Trained in-project on the synthetic corpus; FGD numbers are only comparable
under the same checkpoint, so every report names the one it used.

Train: ``python -m eval.pose_autoencoder --data data/synth --out eval/weights/pose_ae``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from csg.errors import InputError, WeightsNotFoundError
from eval.pose_metrics import UPPER_123, normalise_clip

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "pose_ae"


class PoseAutoencoder(ModelMixin, ConfigMixin):
    """Conv1d encoder (B, window, J*2) -> (B, latent_dim) and mirrored decoder.

    The time axis is halved twice (window must be divisible by 4), then flattened into a linear
    layer to the latent vector.
    """

    @register_to_config
    def __init__(self, *, num_joints: int = len(UPPER_123), window: int = 32, hidden: int = 128,
                 latent_dim: int = 32):
        super().__init__()
        if window % 4:
            raise ValueError(f"window must be divisible by 4, got {window}")
        d, t = num_joints * 2, window // 4
        act = nn.LeakyReLU(0.2)
        self.encoder = nn.Sequential(
            nn.Conv1d(d, hidden, 3, padding=1), act,
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), act,
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), act,
            nn.Flatten(), nn.Linear(hidden * t, latent_dim))
        self.decoder_in = nn.Linear(latent_dim, hidden * t)
        self.decoder = nn.Sequential(
            act, nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1),
            act, nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1),
            act, nn.Conv1d(hidden, d, 3, padding=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, window, J*2) -> (B, latent_dim)."""
        return self.encoder(x.transpose(1, 2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> (B, window, J*2)."""
        h = self.decoder_in(z).view(z.shape[0], self.config.hidden, self.config.window // 4)
        return self.decoder(h).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def clip_windows(norm: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Cut a normalised clip (T, J, 2) into windows (N, window, J*2).

    Windows start at 0, stride, ... and the last one is aligned to the end, so every frame is
    covered. A clip shorter than ``window`` is padded by repeating its last frame (logged).
    """
    T = norm.shape[0]
    flat = norm.reshape(T, -1)
    if T < window:
        logger.info("clip of %d frames padded to the %d-frame window", T, window)
        flat = np.concatenate([flat, np.repeat(flat[-1:], window - T, axis=0)])
        T = window
    starts = list(range(0, T - window + 1, stride))
    if starts[-1] != T - window:
        starts.append(T - window)
    return np.stack([flat[s:s + window] for s in starts]).astype(np.float32)


@torch.no_grad()
def encode_clips(model: PoseAutoencoder, clips: list[np.ndarray], *, refs=None, stride: int = 8,
                 batch_size: int = 256) -> list[np.ndarray]:
    """Latent features for each clip: list of (N_i, latent_dim) float64, one row per window.

    clips: list of (T, 133, 3) keypoints; refs: optional list of (133, 3) reference frames
    (default: each clip's frame 0).
    """
    model.eval()
    out = []
    for i, kp in enumerate(clips):
        ref = None if refs is None else refs[i]
        w = clip_windows(normalise_clip(kp, ref=ref), model.config.window, stride)
        feats = [model.encode(torch.from_numpy(w[b:b + batch_size])).double().numpy()
                 for b in range(0, len(w), batch_size)]
        out.append(np.concatenate(feats))
    return out


def load_pose_autoencoder(path: str | Path | None = None) -> PoseAutoencoder:
    """Load a checkpoint folder (config.json + safetensors); default: the committed one."""
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not (p / "config.json").is_file():
        raise WeightsNotFoundError(
            f"{p}: no pose-autoencoder checkpoint (config.json missing); pass --fgd-checkpoint DIR "
            "or train one with `python -m eval.pose_autoencoder --data DATA --out DIR`")
    return PoseAutoencoder.from_pretrained(str(p))


def train_autoencoder(windows: np.ndarray, *, val: np.ndarray | None = None, window: int = 32,
                      latent_dim: int = 32, hidden: int = 128, epochs: int = 30,
                      batch_size: int = 128, lr: float = 1e-3, vel_weight: float = 1.0,
                      generator: torch.Generator | None = None) -> tuple[PoseAutoencoder, dict]:
    """Fit a :class:`PoseAutoencoder` on windows (N, window, J*2) by MSE on positions + velocities.

    Returns the model and a log dict (per-epoch train/val loss, seconds).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x = torch.from_numpy(np.asarray(windows, np.float32))
    init_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    with torch.random.fork_rng():  # weight init from ``generator``; global RNG state is restored
        torch.manual_seed(init_seed)
        model = PoseAutoencoder(num_joints=x.shape[-1] // 2, window=window, hidden=hidden,
                                latent_dim=latent_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    log = {"train_loss": [], "val_loss": []}
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        tot = 0.0
        for b in range(0, len(x), batch_size):
            xb = x[perm[b:b + batch_size]]
            loss = _recon_loss(model(xb), xb, vel_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(xb)
        sched.step()
        log["train_loss"].append(tot / len(x))
        if val is not None and len(val):
            model.eval()
            with torch.no_grad():
                v = torch.from_numpy(np.asarray(val, np.float32))
                log["val_loss"].append(_recon_loss(model(v), v, vel_weight).item())
        logger.info("epoch %d train %.5f val %s", ep, log["train_loss"][-1],
                    log["val_loss"][-1] if log["val_loss"] else "-")
    log["seconds"] = time.time() - t0
    return model, log


def _recon_loss(y: torch.Tensor, x: torch.Tensor, vel_weight: float) -> torch.Tensor:
    loss = torch.mean((y - x) ** 2)
    if vel_weight:
        loss = loss + vel_weight * torch.mean((y.diff(dim=1) - x.diff(dim=1)) ** 2)
    return loss


def load_corpus_clips(root: str | Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(keypoints (T, 133, 3), ref (133, 3)) of every clip in a dataset split (:mod:`csg.data`)."""
    from csg.data.manifest import load_clip, read_manifest, select

    recs = select(read_manifest(root), split)
    if not recs:
        raise InputError(f"{root}: no clips in split {split!r}; check manifest.jsonl's 'split' field")
    clips = [load_clip(root, r) for r in recs]
    return [(c.poses, c.ref) for c in clips]


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised by hand, see README
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset root (manifest.jsonl + clips)")
    ap.add_argument("--out", required=True, help="output checkpoint folder")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    # Clips are normalised against their own frame 0 (not the dataset's 'ref'), exactly as
    # `csg eval pose` normalises prediction files, which carry no separate reference.
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    windows = {s: np.concatenate([clip_windows(normalise_clip(kp), a.window, a.stride)
                                  for kp, _ in load_corpus_clips(a.data, s)])
               for s in ("train", "val")}
    model, log = train_autoencoder(windows["train"], val=windows["val"], window=a.window,
                                   latent_dim=a.latent_dim, epochs=a.epochs,
                                   generator=torch.Generator().manual_seed(a.seed))
    model.save_pretrained(a.out)
    import json

    (Path(a.out) / "train_log.json").write_text(json.dumps(
        {"n_train_windows": len(windows["train"]), "n_val_windows": len(windows["val"]), **log,
         "args": vars(a)}, indent=1))
    print(f"saved {a.out}: final train {log['train_loss'][-1]:.5f} val "
          f"{log['val_loss'][-1] if log['val_loss'] else float('nan'):.5f} in {log['seconds']:.0f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
