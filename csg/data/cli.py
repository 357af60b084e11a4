"""``csg data synth`` and ``csg data prepare``."""
from __future__ import annotations

import time

import click


class _SizeCommand(click.Command):
    """Lets ``--size H W`` and ``--size N`` both parse: two integers after --size become ``HxW``."""

    def parse_args(self, ctx, args):
        args = list(args)
        if "--size" in args:
            i = args.index("--size")
            if i + 2 < len(args) and all(a.isdigit() for a in args[i + 1:i + 3]):
                args[i + 1:i + 3] = [f"{args[i + 1]}x{args[i + 2]}"]
        return super().parse_args(ctx, args)


def parse_size(text: str, max_side: int = 4096) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"192x256"`` -> (192, 256) (H, W); each side 16..``max_side``."""
    parts = text.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 16 or max(vals) > max_side:
        raise click.BadParameter(f"{text!r}: give --size N or --size H W (each 16..{max_side})",
                                 param_hint="--size")
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


@click.command(cls=_SizeCommand)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Dataset root to write (manifest.jsonl, clips/, stats.json).")
@click.option("--clips", default=200, show_default=True, type=click.IntRange(1))
@click.option("--seconds", default=8.0, show_default=True, type=click.FloatRange(2.0, 600.0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--fps", default=25.0, show_default=True, type=click.FloatRange(1.0, 120.0))
@click.option("--size", default="256", show_default=True, metavar="H [W]",
              help="Canvas size: --size H W, or --size N for square.")
@click.option("--frames/--no-frames", default=True, show_default=True,
              help="Also write avatar videos (stage-2 data).")
@click.option("--espeak/--no-espeak", default=True, show_default=True,
              help="espeak-ng voices for about half the speakers, when installed.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
def synth(out, clips, seconds, seed, fps, size, frames, espeak, workers):
    """Procedural co-speech corpus: speech-like audio, aligned 133-point poses, avatar frames."""
    from pathlib import Path

    from .synth import MAX_SIDE, SynthConfig, make_corpus

    cfg = SynthConfig(clips=clips, seconds=seconds, seed=seed, fps=fps,
                      size_hw=parse_size(size, MAX_SIDE), frames=frames, espeak=espeak)
    t0 = time.perf_counter()
    root = Path(out)
    created = _missing_folders(root)
    try:
        recs = make_corpus(out, cfg, workers=workers)
    except BaseException:
        _remove_created(created)  # a failed run leaves no half-made dataset folder behind
        raise
    counts = {s: sum(r.split == s for r in recs) for s in ("train", "val", "test")}
    click.echo(f"wrote {len(recs)} clips to {out} ({counts['train']} train, {counts['val']} val, "
               f"{counts['test']} test) in {time.perf_counter() - t0:.1f} s")


def _missing_folders(root) -> list:
    """``root`` and its missing parents, deepest first (what this run will create)."""
    missing = []
    q = root
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    return missing


def _remove_created(folders) -> None:
    import shutil

    if folders:
        shutil.rmtree(folders[0], ignore_errors=True)
        for d in folders[1:]:
            try:
                d.rmdir()
            except OSError:
                break


@click.command(cls=_SizeCommand)
@click.option("--videos", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of talking videos (mp4 with audio); subfolders name speakers.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset root.")
@click.option("--backend", default="mediapipe", show_default=True,
              type=click.Choice(["mediapipe", "dwpose"]))
@click.option("--size", default="512", show_default=True, metavar="H [W]",
              help="Output frame size after cropping around the person; 0 keeps the frames.")
@click.option("--min-face", default=0.9, show_default=True, type=click.FloatRange(0, 1))
@click.option("--min-body", default=0.8, show_default=True, type=click.FloatRange(0, 1))
@click.option("--min-seconds", default=2.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--split-by", default="speaker", show_default=True,
              type=click.Choice(["speaker", "file"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--frames/--no-frames", default=True, show_default=True,
              help="Write the cropped frames as clips/<id>.mp4.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Skip videos already prepared (done-markers in ROOT/done/).")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this machine (--workers processes); ray: one Ray task per video "
                   "(pip install 'csg[ray]').")
@click.option("--workers", "prep_workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes (local), or CPUs of the local Ray started when no --address.")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, ray://HOST:10001); default $RAY_ADDRESS or a "
                   "local Ray. Paths must be on storage every node sees.")
def prepare(videos, out, backend, size, min_face, min_body, min_seconds, split_by, seed, frames,
            resume, engine, prep_workers, address):
    """Real talking videos -> the dataset format (poses, 16 kHz audio, optional frames)."""
    from .engines import check_engine
    from .prepare import PrepareConfig, prepare_videos

    check_engine(engine, prep_workers, address)

    size_hw = None if size.strip() == "0" else parse_size(size)
    cfg = PrepareConfig(backend=backend, size_hw=size_hw, min_face=min_face, min_body=min_body,
                        min_seconds=min_seconds, split_by=split_by, seed=seed, frames=frames)
    t0 = time.perf_counter()
    recs = prepare_videos(videos, out, cfg, resume=resume, engine=engine, workers=prep_workers,
                          address=address)
    click.echo(f"{len(recs)} clips in {out} ({time.perf_counter() - t0:.1f} s)")
