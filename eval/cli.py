"""``csg eval pose | video | compare``: thin click wrappers; the work lives in the eval modules."""
from __future__ import annotations

from pathlib import Path

import click

from csg.errors import InputError


@click.command("pose")
@click.option("--pred", required=True, type=click.Path(path_type=Path),
              help="Predicted skeleton JSON, or a folder of them.")
@click.option("--gt", type=click.Path(path_type=Path), default=None,
              help="Ground-truth skeleton JSON or folder, paired by name (enables FGD, L1, PCK).")
@click.option("--audio", type=click.Path(path_type=Path), default=None,
              help="Speech file or folder, paired by name (enables BAS and lip sync).")
@click.option("-o", "--out", "report_dir", required=True, type=click.Path(path_type=Path),
              help="Report folder (report.json, report.md, plots).")
@click.option("--fgd-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Pose-autoencoder folder for FGD/diversity [default: eval/weights/pose_ae].")
@click.option("--no-fgd", is_flag=True, help="Skip FGD and diversity (no autoencoder needed).")
@click.option("--sigma", type=float, default=3.0, show_default=True,
              help="BAS Gaussian width, in frames.")
def pose(pred, gt, audio, report_dir, fgd_checkpoint, no_fgd, sigma):
    """Stage-1 metrics of skeleton files: FGD, diversity, BAS, lip sync, jitter, HKC, L1, PCK."""
    from eval.pose_eval import (PoseEvalSettings, evaluate_pose_sets, load_audio_dir,
                                load_pose_dir, pair, pose_markdown, pose_plots)
    from eval.report import write_report

    preds, fps, _ = load_pose_dir(pred)
    gts = load_pose_dir(gt)[0] if gt is not None else None
    audios = load_audio_dir(audio) if audio is not None else None
    gts = pair(preds, gts, "ground truth", "--gt", broadcast=gt is not None and gt.is_file())
    audios = pair(preds, audios, "audio", "--audio",
                  broadcast=audio is not None and audio.is_file())
    ae, ckpt = None, None
    if not no_fgd:
        from eval.pose_autoencoder import DEFAULT_CHECKPOINT, load_pose_autoencoder

        ae = load_pose_autoencoder(fgd_checkpoint)
        ckpt = str(fgd_checkpoint or DEFAULT_CHECKPOINT)
    rep = evaluate_pose_sets(preds, fps, gts=gts, audios=audios, autoencoder=ae, checkpoint=ckpt,
                             cfg=PoseEvalSettings(sigma_frames=sigma))
    rep["inputs"] = {"pred": str(pred), "gt": str(gt) if gt else None,
                     "audio": str(audio) if audio else None}
    data = {k: v for k, v in rep.items() if k != "series"}
    write_report(report_dir, data, pose_markdown(rep), plots=pose_plots(rep))
    _echo_summary(rep["summary"], report_dir)


def _echo_summary(summary: dict, report_dir: Path) -> None:
    from eval.report import fmt

    keys = [k for k in summary if "/" not in k]
    click.echo("  ".join(f"{k}={fmt(summary[k])}" for k in keys))
    click.echo(f"report: {report_dir / 'report.md'}")


def _require(path: Path | None, option: str) -> None:
    if path is not None and not path.exists():
        raise InputError(f"{path}: not found (given as {option})")


@click.command("video")
@click.option("--video", "video_path", required=True, type=click.Path(path_type=Path),
              help="Rendered video (mp4).")
@click.option("--pose", "pose_path", required=True, type=click.Path(path_type=Path),
              help="The driving skeleton JSON it was rendered from.")
@click.option("--ref", "ref_path", type=click.Path(path_type=Path), default=None,
              help="Reference photo (background and face preservation).")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), default=None,
              help="Ground-truth video (PSNR, SSIM, FID, FVD).")
@click.option("--audio", "audio_path", type=click.Path(path_type=Path), default=None,
              help="Speech: adds the stage-1 lip-sync and BAS numbers of the re-detected poses.")
@click.option("-o", "--out", "report_dir", required=True, type=click.Path(path_type=Path))
@click.option("--inception", type=click.Path(path_type=Path), default=None,
              help="TorchScript Inception feature net for FID (needs --gt).")
@click.option("--i3d", type=click.Path(path_type=Path), default=None,
              help="TorchScript I3D feature net for FVD (needs --gt).")
@click.option("--syncnet", type=click.Path(path_type=Path), default=None,
              help="TorchScript SyncNet (forward_lip / forward_aud) for Sync-C/Sync-D (needs audio).")
@click.option("--max-frames", type=click.IntRange(min=2), default=None,
              help="Evaluate only the first N frames.")
def video(video_path, pose_path, ref_path, gt_path, audio_path, report_dir, inception, i3d,
          syncnet, max_frames):
    """Stage-2 metrics of a rendered video: pose adherence, HKC, preservation, PSNR/SSIM, flicker."""
    import numpy as np

    from csg.pose import PoseSequence
    from csg.video import read_video
    from eval.report import write_report
    from eval.video_eval import (detect_keypoints, evaluate_video, fit_driving, video_markdown,
                                 video_plots)

    for p, opt in ((ref_path, "--ref"), (gt_path, "--gt"), (audio_path, "--audio")):
        _require(p, opt)
    from eval.video_eval import require_video

    require_video(video_path, "--video")
    if gt_path is not None:
        require_video(gt_path, "--gt")
    if (inception or i3d) and gt_path is None:
        raise InputError("--inception / --i3d compare against real frames: pass --gt VIDEO too")
    scorer = None
    if syncnet is not None:
        from eval.syncnet import SyncNetScorer

        scorer = SyncNetScorer(syncnet)
    feats = {}
    if inception:
        from eval.deep_features import fid_extractor

        feats["fid"] = fid_extractor(inception)
    if i3d:
        from eval.deep_features import fvd_extractor

        feats["fvd"] = fvd_extractor(i3d)
    drive = PoseSequence.load(pose_path)
    frames = np.stack(list(read_video(video_path, max_frames=max_frames)))
    T, H, W = frames.shape[:3]
    driving = fit_driving(drive.keypoints, drive.size_hw, (H, W), T)
    detected = detect_keypoints(frames)
    ref_img = ref_kp = None
    if ref_path is not None:
        from csg.extract import extract_pose
        from csg.image import load_image

        ref_img = load_image(ref_path)
        ref_kp = extract_pose(ref_img, source=str(ref_path)).keypoints[0]
    gt = np.stack(list(read_video(gt_path, max_frames=max_frames))) if gt_path else None
    rep = evaluate_video(frames, driving, detected, ref_image=ref_img, ref_kp=ref_kp, gt_frames=gt,
                         feature_metrics=feats)
    wav = None
    if audio_path is not None:
        from csg.audio import load_audio
        from eval.pose_eval import PoseEvalSettings, clip_sync

        wav = load_audio(audio_path)
        m, _ = clip_sync(detected, drive.fps, wav, 16000, PoseEvalSettings())
        rep["summary"].update({f"{k}_detected": v for k, v in m.items()})
    if scorer is not None:
        if wav is None:
            from csg.video import read_audio_track

            wav = read_audio_track(video_path, 16000)[0]
        from eval.syncnet import face_crops

        sc = scorer(face_crops(frames, driving), wav)
        rep["summary"].update({"sync_c": sc["sync_c"], "sync_d": sc["sync_d"],
                               "sync_offset": sc["offset"]})
    rep["inputs"] = {"video": str(video_path), "pose": str(pose_path), "ref": _s(ref_path),
                     "gt": _s(gt_path), "audio": _s(audio_path), "inception": _s(inception),
                     "i3d": _s(i3d), "syncnet": _s(syncnet)}
    write_report(report_dir, rep, video_markdown(rep), plots=video_plots(rep))
    _echo_summary(rep["summary"], report_dir)


def _s(p):
    return None if p is None else str(p)


@click.command("compare")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path),
              help="Dataset root (manifest.jsonl + clips/).")
@click.option("--split", default="test", show_default=True)
@click.option("--variant", "variants", multiple=True, required=True,
              help="NAME=SPEC; SPEC is gt, rule, or key:value options of the learned model "
                   "(e.g. guidance:sg, checkpoint:DIR). Repeatable.")
@click.option("-o", "--out", "report_dir", required=True, type=click.Path(path_type=Path))
@click.option("--stage", type=click.Choice(["pose"]), default="pose", show_default=True,
              help="Stage to compare (stage 2 comparisons run `csg eval video` per render).")
@click.option("--max-clips", type=int, default=None, help="Use only the first N clips.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fgd-checkpoint", type=click.Path(path_type=Path), default=None)
@click.option("--no-fgd", is_flag=True)
def compare(data_root, split, variants, report_dir, stage, max_clips, seed, fgd_checkpoint, no_fgd):
    """Run stage-1 variants over a dataset split and write one comparison table."""
    from eval.compare import compare_markdown, load_split, make_generator, parse_variant, run_variants
    from eval.report import write_report

    parsed = dict(parse_variant(v) for v in variants)
    if len(parsed) != len(variants):
        raise InputError("--variant: names must be unique")
    gens = {name: make_generator(opts) for name, opts in parsed.items()}
    clips = load_split(data_root, split, max_clips)
    ae, ckpt = None, None
    if not no_fgd:
        from eval.pose_autoencoder import DEFAULT_CHECKPOINT, load_pose_autoencoder

        ae = load_pose_autoencoder(fgd_checkpoint)
        ckpt = str(fgd_checkpoint or DEFAULT_CHECKPOINT)
    rows, reports = run_variants(clips, gens, autoencoder=ae, checkpoint=ckpt, seed=seed)
    settings = next(iter(reports.values()))["settings"]
    data = {"rows": rows, "settings": settings, "variants": parsed, "data": str(data_root),
            "split": split, "clips": [c.id for c in clips], "seed": seed,
            "per_clip": {n: r["per_clip"] for n, r in reports.items()}}
    write_report(report_dir, data, compare_markdown(rows, settings, f"{split} split of "
                                                                    f"{data_root}"))
    from eval.report import markdown_table

    click.echo(markdown_table(rows, ["variant", "fgd", "bas", "bas_shift", "lipsync_r",
                                     "lipsync_r_shift", "l1", "pck@0.1"]))
    click.echo(f"report: {report_dir / 'report.md'}")
