"""Stage-2 evaluation: a rendered video + its driving skeleton (+ reference photo, + ground truth).

:func:`evaluate_video` takes arrays (frames, keypoints, re-detected keypoints) so it is testable
without MediaPipe; :func:`detect_keypoints` runs the re-detection with :class:`csg.extract.PoseExtractor`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from csg import keypoints as K
from eval import pose_metrics as PM
from eval import video_metrics as VM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoEvalSettings:
    score_threshold: float = 0.3      # driving points at or below this score are not counted
    pck_alphas: tuple = (0.05, 0.1)   # × torso size of the driving skeleton, per frame
    person_margin: float = 0.1        # person box grown by this share of its size each side
    face_margin: float = 0.2          # face box margin for the face-crop similarity
    face_crop_hw: tuple = (64, 64)    # face crops are compared at this (H, W)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def require_video(path, option: str = "--video") -> dict:
    """Probe ``path`` and refuse a still image (an image file, or a "video" of fewer than 2
    frames): stage-2 metrics of one frame would read as a perfect score. Returns the probe."""
    from pathlib import Path

    from csg.errors import InputError
    from csg.video import probe_video

    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{p}: {option} is a still image ({p.suffix}); give the rendered video "
                         "(mp4)")
    info = probe_video(p)
    if info["num_frames"] < 2:
        raise InputError(f"{p}: {option} has {info['num_frames']} frame(s), a still image, not a "
                         "video; give the rendered video (mp4)")
    return info


def detect_keypoints(frames: np.ndarray) -> np.ndarray:
    """Re-detect (T, 133, 3) keypoints on rendered frames (MediaPipe, video mode).

    Frames where nobody is found get all-zero keypoints (score 0: they count as misses in PCK).
    """
    from csg.extract import PoseExtractor

    out = np.zeros((len(frames), K.NUM_KEYPOINTS, 3), np.float32)
    with PoseExtractor(video=True) as ex:
        for t, f in enumerate(frames):
            kp = ex(f, f"frame {t}")
            if kp is not None:
                out[t] = kp
    return out


def fit_driving(kp: np.ndarray, pose_hw: tuple[int, int], video_hw: tuple[int, int],
                T: int) -> np.ndarray:
    """Driving keypoints (T', 133, 3) on a pose canvas -> video pixels, cropped/padded to T frames."""
    k = np.asarray(kp, np.float64).copy()
    k[..., 0] *= video_hw[1] / pose_hw[1]
    k[..., 1] *= video_hw[0] / pose_hw[0]
    if k.shape[0] < T:
        k = np.concatenate([k, np.repeat(k[-1:], T - k.shape[0], axis=0)])
    return k[:T]


def evaluate_video(frames: np.ndarray, driving: np.ndarray, detected: np.ndarray, *,
                   ref_image: np.ndarray | None = None, ref_kp: np.ndarray | None = None,
                   gt_frames: np.ndarray | None = None, feature_metrics: dict | None = None,
                   cfg: VideoEvalSettings = VideoEvalSettings()) -> dict[str, Any]:
    """Every stage-2 metric for one video.

    frames: (T, H, W, 3) uint8; driving, detected: (T, 133, 3) in video pixels; ref_image:
    (H, W, 3) (resized to the video if needed); ref_kp: (133, 3) reference skeleton in ref-image
    pixels; gt_frames: (T', H, W, 3); feature_metrics: ``{"fid": FeatureExtractor, ...}`` compared
    against gt_frames. Returns ``{"summary", "settings"}``.
    """
    T, H, W = frames.shape[:3]
    s: dict[str, Any] = {"frames": T, "height": H, "width": W}
    s.update(PM.pck_by_region(detected[..., :2], driving, cfg.pck_alphas,
                              score_threshold=cfg.score_threshold))
    s["detection_rate"] = float((detected[..., 2].max(axis=1) > 0).mean())
    s["hkc_detected"] = PM.mean_confidence(detected, K.HANDS)
    s["face_conf_detected"] = PM.mean_confidence(detected, K.FACE)
    person = VM.box_mask(VM.keypoint_bbox(driving, (H, W), margin=cfg.person_margin,
                                          score_threshold=cfg.score_threshold), (H, W))
    s["flicker_bg"] = VM.flicker(frames, ~person)
    if ref_image is not None:
        s.update(_reference_metrics(frames, driving, ref_image, ref_kp, person, cfg))
    if gt_frames is not None:
        n = min(T, len(gt_frames))
        if gt_frames.shape[1:3] != (H, W):
            gt_frames = np.stack([_resize(g, (H, W)) for g in gt_frames[:n]])
        s["psnr_gt"] = float(np.mean([VM.psnr(frames[t], gt_frames[t]) for t in range(n)]))
        s["ssim_gt"] = float(np.mean([VM.ssim(frames[t], gt_frames[t]) for t in range(n)]))
        s["flicker_bg_gt"] = VM.flicker(gt_frames[:n], ~person)
        from eval.deep_features import frechet_between

        for name, ex in (feature_metrics or {}).items():
            s[name] = frechet_between(ex, frames[:n], gt_frames[:n])
    settings = {**asdict(cfg),
                "pck": "re-detected (MediaPipe) vs driving keypoints; threshold alpha x driving "
                       "torso size; only driving points with score > score_threshold count; "
                       "frames without a detection count as misses",
                "background": "pixels outside the union over frames of the driving person box "
                              "(and the reference person box); compared with the reference photo",
                "face": "face box of the driving skeleton per frame vs the reference face box; "
                        "SSIM of 64x64 crops and RGB 8x8x8 histogram intersection (appearance, "
                        "not an identity embedding)",
                "flicker": "mean |frame_t - frame_t-1| (0-255) over the background pixels"}
    return {"summary": s, "settings": settings}


def _resize(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)


def _reference_metrics(frames, driving, ref_image, ref_kp, person, cfg) -> dict[str, float]:
    T, H, W = frames.shape[:3]
    rh, rw = ref_image.shape[:2]
    ref = ref_image if (rh, rw) == (H, W) else _resize(ref_image, (H, W))
    if ref_kp is not None:
        rk = np.asarray(ref_kp, np.float64).copy()
        rk[:, 0] *= W / rw
        rk[:, 1] *= H / rh
    else:
        rk = driving[0]
    bg = ~(person | VM.box_mask(VM.keypoint_bbox(rk, (H, W), margin=cfg.person_margin,
                                                 score_threshold=cfg.score_threshold), (H, W)))
    out = {"bg_fraction": float(bg.mean()),
           "bg_psnr_ref": float(np.mean([VM.psnr(f, ref, bg) for f in frames])),
           "bg_ssim_ref": float(np.mean([VM.ssim(f, ref, bg) for f in frames]))}
    rbox = VM.keypoint_bbox(rk, (H, W), group=K.FACE, margin=cfg.face_margin,
                            score_threshold=cfg.score_threshold)
    if rbox is None:
        return out
    rcrop = VM.crop_resize(ref, rbox, cfg.face_crop_hw)
    ss, hs = [], []
    for f, kp in zip(frames, driving):
        box = VM.keypoint_bbox(kp, (H, W), group=K.FACE, margin=cfg.face_margin,
                               score_threshold=cfg.score_threshold)
        if box is None:
            continue
        crop = VM.crop_resize(f, box, cfg.face_crop_hw)
        ss.append(VM.ssim(crop, rcrop))
        hs.append(VM.histogram_similarity(crop, rcrop))
    out["face_ssim_ref"] = float(np.mean(ss)) if ss else float("nan")
    out["face_hist_ref"] = float(np.mean(hs)) if hs else float("nan")
    return out


VIDEO_ORDER = ("frames", "pck@0.05", "pck@0.1", "detection_rate", "hkc_detected",
               "face_conf_detected", "bg_psnr_ref", "bg_ssim_ref", "face_ssim_ref", "face_hist_ref",
               "psnr_gt", "ssim_gt", "fid", "fvd", "sync_c", "sync_d", "sync_offset", "flicker_bg",
               "flicker_bg_gt")


def video_markdown(report: dict[str, Any], title: str = "Video evaluation") -> str:
    from eval.report import markdown_table

    s = report["summary"]
    row = {k: s[k] for k in VIDEO_ORDER if k in s}
    regions = [{"alpha": a, **{r: s.get(f"pck@{a:g}/{r}") for r in PM.REGIONS}}
               for a in report["settings"]["pck_alphas"]]
    lines = [f"# {title}\n", markdown_table([row]), "\n## PCK per region\n",
             markdown_table(regions), "\n![PCK per region](pck_regions.png)\n",
             "\n## What is measured\n"]
    lines += [f"- **{k}**: {v}" for k, v in report["settings"].items() if isinstance(v, str)]
    lines.append(f"- inputs: {report.get('inputs', {})}")
    return "\n".join(lines) + "\n"


def video_plots(report: dict[str, Any]) -> dict[str, Any]:
    from functools import partial

    from eval import plots

    s = report["summary"]
    vals = {f"pck@{a:g}": {r: s.get(f"pck@{a:g}/{r}", np.nan) for r in PM.REGIONS}
            for a in report["settings"]["pck_alphas"]}
    return {"pck_regions": partial(plots.plot_region_bars, values=vals,
                                   title="Pose adherence: re-detected vs driving")}
