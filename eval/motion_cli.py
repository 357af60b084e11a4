"""``csg eval motion``: generated skeletons against the same speaker's real motion (eval.motion)."""
from __future__ import annotations

from pathlib import Path

import click

from csg.errors import InputError


def _pairs(pred: Path, real: Path) -> list[tuple[str, Path, Path]]:
    """(name, pred file, real file): two files, or two folders paired by file stem (a real
    ``X_mediapipe_kp.npz`` pairs with ``X.json`` / ``X.pose.json``)."""
    if pred.is_file() and real.is_file():
        return [(pred.stem.replace(".pose", ""), pred, real)]
    if not (pred.is_dir() and real.is_dir()):
        raise InputError(f"--pred {pred} and --real {real} must both be files or both folders")

    def key(p: Path) -> str:
        s = p.name
        for suf in (".pose.json", ".json", "_mediapipe_kp.npz", ".npz"):
            if s.endswith(suf):
                return s[: -len(suf)]
        return p.stem

    preds = {key(p): p for p in sorted(pred.iterdir()) if p.suffix in (".json", ".npz")}
    reals = {key(p): p for p in sorted(real.iterdir()) if p.suffix in (".json", ".npz")}
    common = sorted(set(preds) & set(reals))
    if not common:
        raise InputError(f"no file names in common between --pred {pred} and --real {real} "
                         "(pair X.json with X.json or X_mediapipe_kp.npz)")
    return [(k, preds[k], reals[k]) for k in common]


def motion_markdown(rows: dict[str, dict]) -> str:
    from eval.report import fmt

    cols = [("jitter ratio", "ratio", "jitter"), ("head speed ratio", "ratio", "head_speed"),
            ("torso speed ratio", "ratio", "torso_speed"), ("wrist speed ratio", "ratio", "wrist_speed"),
            ("elbow speed ratio", "ratio", "elbow_speed"), ("wrist range ratio", "ratio", "wrist_range"),
            ("elbow spread vs photo", "offset", "elbow_spread_vs_ref"),
            ("real: elbow spread vs photo", "offset", "real_elbow_spread_vs_ref"),
            ("hand height vs real (sw)", "offset", "hand_height"),
            ("start-up jump / real p95 step", "offset", "startup_jump_vs_step"),
            ("mouth mean ratio", "ratio", "mouth_mean"), ("mouth std ratio", "ratio", "mouth_std")]
    lines = ["# Motion against the real speaker", "",
             "Ratios are generated / real; lengths in the photo's shoulder widths (sw); "
             "see eval/motion.py.", "",
             "| clip | " + " | ".join(c[0] for c in cols) + " | checks failed |",
             "| --- " * (len(cols) + 2) + "|"]
    for name, rep in rows.items():
        failed = [k for k, ok in rep["checks"].items() if not ok]
        lines.append(f"| {name} | " + " | ".join(fmt(rep[g][k]) for _, g, k in cols)
                     + f" | {', '.join(failed) or 'none'} |")
    lines += ["", "Absolute values (generated / real):", "",
              "| clip | jitter | head sw/s | torso sw/s | wrist sw/s | elbow spread (photo) | "
              "hand height | start-up jump | real step p95 | mouth mean | periodicity |",
              "| --- " * 11 + "|"]
    for name, rep in rows.items():
        g, r = rep["gen"], rep["real"]

        def two(k):
            return f"{fmt(g[k])} / {fmt(r[k])}"

        lines.append(f"| {name} | {two('jitter')} | {two('head_speed')} | {two('torso_speed')} | "
                     f"{two('wrist_speed')} | {two('elbow_spread')} ({fmt(g['ref_elbow_spread'])}) | "
                     f"{two('hand_height')} | {fmt(g['startup_jump'])} | {fmt(r['step_p95'])} | "
                     f"{two('mouth_mean')} | {two('periodicity')} |")
    return "\n".join(lines) + "\n"


@click.command("motion")
@click.option("--pred", required=True, type=click.Path(path_type=Path, exists=True),
              help="Generated skeleton JSON, or a folder of them.")
@click.option("--real", required=True, type=click.Path(path_type=Path, exists=True),
              help="The same speaker's real motion: skeleton JSON or keypoint .npz "
                   "(coco_wholebody133_2d), or a folder paired by name.")
@click.option("--ref", type=click.Path(path_type=Path, exists=True), default=None,
              help="Reference skeleton JSON (one file only) [default: the real clip's frame 0].")
@click.option("-o", "--out", "report_dir", required=True, type=click.Path(path_type=Path),
              help="Report folder (report.json, report.md, one plot per clip).")
@click.option("--no-plots", is_flag=True, help="Skip the PNGs.")
def motion(pred, real, ref, report_dir, no_plots):
    """Jitter, speeds, posture, start-up jump and mouth of generated skeletons vs real motion."""
    from eval.motion import compare_motion, load_motion, plot_comparison
    from eval.report import write_report

    pairs = _pairs(pred, real)
    ref_kp = load_motion(ref)[0][0] if ref is not None else None
    if ref is not None and len(pairs) > 1:
        raise InputError("--ref takes one reference; with folders each real clip's frame 0 is used")
    rows, plots = {}, {}
    for name, p, r in pairs:
        g, gfps = load_motion(p)
        rk, rfps = load_motion(r)
        rows[name] = compare_motion(g, gfps, rk, rfps, ref=ref_kp)
        if not no_plots:
            plots[f"motion_{name}.png"] = (
                lambda path, g=g, gfps=gfps, rk=rk, rfps=rfps, name=name:
                plot_comparison(path, g, gfps, rk, rfps, ref=ref_kp, title=name))
    write_report(report_dir, {"clips": rows, "inputs": {"pred": str(pred), "real": str(real)}},
                 motion_markdown(rows), plots=plots)
    for name, rep in rows.items():
        failed = [k for k, ok in rep["checks"].items() if not ok]
        click.echo(f"{name}: jitter {rep['ratio']['jitter']:.2f}x  head {rep['ratio']['head_speed']:.2f}x  "
                   f"elbow spread {rep['offset']['elbow_spread_vs_ref']:+.0%} vs photo  "
                   f"start-up {rep['offset']['startup_jump_vs_step']:.2f}x p95 step  "
                   f"mouth {rep['ratio']['mouth_mean']:.2f}x  failed: {', '.join(failed) or 'none'}")
    click.echo(f"report: {report_dir / 'report.md'}")
