"""Sync-C / Sync-D (LSE-C / LSE-D) with a user-supplied SyncNet (Chung & Zisserman 2016).

csg never downloads SyncNet. Pass a TorchScript export of the joonson/syncnet_python ``S`` model that
keeps its two entry points (``@torch.jit.export`` on ``forward_lip`` and ``forward_aud``):

- ``forward_lip(x)``: x (B, 3, 5, 224, 224) float, BGR 0-255 face crops, five frames at 25 fps;
- ``forward_aud(x)``: x (B, 1, 13, 20) float, 13 MFCCs x 20 steps of 10 ms (the same 0.2 s).

The scoring follows ``SyncNetInstance.evaluate``: embeddings for every 5-frame window, Euclidean
distances at audio shifts in [-vshift, vshift], mean over frames per shift; Sync-D = the minimum of
that curve, Sync-C = its median minus its minimum, offset = vshift - argmin (SyncNet's convention:
positive = audio leads video).

Differences from the reference pipeline, stated: faces are cropped from the re-detected face
keypoints (not S3FD tracks), as a square around the face box grown like ``run_pipeline``'s
``crop_scale=0.4``; MFCCs are computed here in numpy with python_speech_features' defaults.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from csg import keypoints as K


def sync_confidence(lip: np.ndarray, aud: np.ndarray, vshift: int = 15) -> dict[str, float]:
    """SyncNet offset / Sync-D / Sync-C from window embeddings lip (N, D) and aud (N, D).

    dist[i, j] = ‖lip[i] − aud_padded[i + j]‖ with aud zero-padded by vshift each side (as
    ``calc_pdist``); m[j] = mean_i dist[i, j]. Returns {"offset", "sync_d", "sync_c"}.
    """
    lip = np.asarray(lip, np.float64)
    aud = np.asarray(aud, np.float64)
    n = min(len(lip), len(aud))
    lip, aud = lip[:n], aud[:n]
    pad = np.concatenate([np.zeros((vshift, aud.shape[1])), aud, np.zeros((vshift, aud.shape[1]))])
    win = 2 * vshift + 1
    # torch.pairwise_distance adds eps=1e-6 to the difference; kept for parity
    dist = np.stack([np.linalg.norm(lip[i][None] - pad[i:i + win] + 1e-6, axis=1)
                     for i in range(n)])
    m = dist.mean(axis=0)
    j = int(np.argmin(m))
    return {"offset": int(vshift - j), "sync_d": float(m[j]), "sync_c": float(np.median(m) - m[j])}


def mfcc(wav16k: np.ndarray, sr: int = 16000, numcep: int = 13, nfilt: int = 26,
         nfft: int = 512, winlen: float = 0.025, winstep: float = 0.01, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """MFCCs as python_speech_features.mfcc with its defaults, on int16-scaled audio: (N, numcep).

    Frames of 25 ms every 10 ms (zero-padded at the end), power spectrum, 26 mel filters, log,
    DCT-II (ortho), lifter 22, and c0 replaced by the log frame energy.
    """
    from scipy.fft import dct

    x = np.asarray(wav16k, np.float64) * 32768.0
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen, fstep = int(round(winlen * sr)), int(round(winstep * sr))
    nf = 1 + int(np.ceil(max(0, len(x) - flen) / fstep))
    x = np.concatenate([x, np.zeros((nf - 1) * fstep + flen - len(x))])
    frames = np.stack([x[i * fstep:i * fstep + flen] for i in range(nf)])
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = np.where(pspec.sum(1) == 0, np.finfo(float).eps, pspec.sum(1))
    hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)  # noqa: E731
    mel = lambda f: 2595 * np.log10(1 + f / 700.0)  # noqa: E731
    bins = np.floor((nfft + 1) * hz(np.linspace(mel(0), mel(sr / 2), nfilt + 2)) / sr).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, c, hi = bins[j], bins[j + 1], bins[j + 2]
        fb[j, lo:c] = (np.arange(lo, c) - lo) / max(1, c - lo)
        fb[j, c:hi] = (hi - np.arange(c, hi)) / max(1, hi - c)
    feat = pspec @ fb.T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    cep = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    cep *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep[:, 0] = np.log(energy)
    return cep


def face_crops(frames: np.ndarray, keypoints: np.ndarray, size: int = 224,
               crop_scale: float = 0.4, score_threshold: float = 0.3) -> np.ndarray:
    """(T, size, size, 3) BGR face crops around each frame's face keypoints (T, 133, 3).

    Square of half-side bs·(1 + crop_scale) around the face-box centre (bs = half the larger box
    side), shifted down by bs·crop_scale as in syncnet_python's ``crop_video``; the frame is padded
    with grey (110) so crops near the border keep their size. Frames without a face reuse the last
    box.
    """
    import cv2

    out, box = [], None
    for f, kp in zip(frames, keypoints):
        pts = kp[K.FACE][kp[K.FACE, 2] > score_threshold, :2]
        if len(pts):
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            box = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2)
        if box is None:
            raise ValueError("no face keypoints in any frame so far; cannot crop a face track")
        mx, my, bs = box
        pad = int(bs * (1 + 2 * crop_scale)) + 1
        img = cv2.copyMakeBorder(np.ascontiguousarray(f[..., ::-1]), pad, pad, pad, pad,
                                 cv2.BORDER_CONSTANT, value=(110, 110, 110))
        cy, cx = my + pad, mx + pad
        half = bs * (1 + crop_scale)
        y0, y1 = int(cy - bs), int(cy + bs * (1 + 2 * crop_scale))
        x0, x1 = int(cx - half), int(cx + half)
        out.append(cv2.resize(img[y0:y1, x0:x1], (size, size)))
    return np.stack(out)


class SyncNetScorer:
    """Sync-C / Sync-D of a talking-face video with a local TorchScript SyncNet."""

    def __init__(self, path: str | Path, *, vshift: int = 15, batch_size: int = 20):
        from eval.deep_features import load_torchscript

        self.net = load_torchscript(path, "SyncNet (Sync-C)")
        for m in ("forward_lip", "forward_aud"):
            if not hasattr(self.net, m):
                from csg.errors import InputError

                raise InputError(f"{path}: the TorchScript SyncNet has no '{m}' method; export it "
                                 "with @torch.jit.export on forward_lip and forward_aud")
        self.vshift, self.batch_size = vshift, batch_size

    def __call__(self, crops_bgr: np.ndarray, wav16k: np.ndarray) -> dict[str, float]:
        """crops_bgr: (T, 224, 224, 3) at 25 fps; wav16k: (N,) float in [-1, 1] at 16 kHz."""
        import torch

        cc = mfcc(wav16k).T  # (13, M) at 100 Hz: 4 MFCC steps per video frame
        n = min(len(crops_bgr), cc.shape[1] // 4) - 5
        if n < 1:
            from csg.errors import InputError

            raise InputError(f"Sync-C needs at least 6 frames of video and audio, got {n + 5}")
        im = torch.from_numpy(crops_bgr.astype(np.float32)).permute(3, 0, 1, 2)  # (3, T, H, W)
        au = torch.from_numpy(cc.astype(np.float32))
        lips, auds = [], []
        with torch.no_grad():
            for i in range(0, n, self.batch_size):
                idx = range(i, min(n, i + self.batch_size))
                lips.append(self.net.forward_lip(torch.stack([im[:, v:v + 5] for v in idx])))
                auds.append(self.net.forward_aud(
                    torch.stack([au[None, :, v * 4:v * 4 + 20] for v in idx])))
        return sync_confidence(torch.cat(lips).double().numpy(), torch.cat(auds).double().numpy(),
                               self.vshift)
