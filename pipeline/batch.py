"""``csg batch manifest.jsonl --out DIR``: ``csg run`` over many (photo, speech) rows.

Each line of the manifest is one JSON object::

    {"ref": "people/ann.jpg", "audio": "talks/ann.wav", "out": "ann.mp4"}
    {"ref": "people/bob.png", "audio": "talks/bob.flac", "out": "bob/take2.mp4", "seed": 3,
     "renderer": "warp", "pose": "edits/bob.pose.json"}

``ref``, ``audio`` and ``pose`` are relative to the manifest's folder (or absolute); ``out`` is
relative to ``--out`` and may not leave it. Every row runs the ``csg run`` command itself
(:func:`pipeline.cli.run`, so the same checks, all-or-none outputs, video, skeleton JSON and run
record); options given to ``csg batch`` (``--config``, ``--set``, ``--checkpoint``, ``--device``,
``--guidance``) apply to every row, the row's ``seed``/``renderer``/``pose`` to that row.

A bad row (unreadable line, missing key, bad input file, failing run) fails alone with its one-line
error; the others go on. A row whose video and run record already exist is skipped, so rerunning
the same command after a crash or a kill finishes the rest. Rows run in this process, in
``--workers`` local processes, or as Ray tasks (``--engine ray``, :mod:`csg.data.engines`). The
summary lists every failure; the exit status is 1 when any row failed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

REQUIRED = ("ref", "audio", "out")
OPTIONAL = ("pose", "seed", "renderer")


@dataclass(frozen=True)
class Row:
    """One manifest line: its number, and either the ``csg run`` arguments or why it is bad."""

    line: int
    out: str | None                 # as written in the manifest (for the summary)
    argv: tuple[str, ...] = ()      # csg run arguments (without the batch-wide ones)
    outputs: tuple[Path, ...] = ()  # video, skeleton, run record
    error: str | None = None


def run_outputs(video: Path) -> tuple[Path, Path, Path]:
    """The files ``csg run -o VIDEO`` writes: the video, ``<stem>.pose.json``, ``<stem>.run.json``."""
    stem = video.name[:-len(video.suffix)] if video.suffix else video.name
    return video, video.with_name(stem + ".pose.json"), video.with_name(stem + ".run.json")


def read_rows(manifest: str | Path, out_dir: str | Path) -> list[Row]:
    """Parse the manifest; every line becomes a :class:`Row`, bad ones with their error."""
    from csg.errors import InputError, require_file

    path = require_file(manifest, "batch manifest", InputError)
    base, out_root = path.resolve().parent, Path(out_dir).resolve()
    rows, owner = [], {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; a batch manifest is JSON lines") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = _parse(n, line, base, out_root)
        if row.error is None:
            for p in row.outputs:
                if p in owner:
                    row = Row(n, row.out, error=f"out {row.out!r} writes {p.name}, which line "
                                                f"{owner[p]} writes too; give each row its own out")
                    break
            else:
                owner.update({p: n for p in row.outputs})
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no rows; write one JSON object per line with "
                         "\"ref\", \"audio\" and \"out\"")
    return rows


def _parse(n: int, line: str, base: Path, out_root: Path) -> Row:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        return Row(n, None, error=f"not a JSON object ({getattr(e, 'msg', 'nested too deeply')})")
    if not isinstance(obj, dict):
        return Row(n, None, error=f"a row must be a JSON object, got {type(obj).__name__}")
    out = obj.get("out")
    out_s = out if isinstance(out, str) else None
    missing = [k for k in REQUIRED if k not in obj]
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        what = (f"missing {', '.join(missing)}" if missing else "") + \
               ("; " if missing and unknown else "") + \
               (f"unknown key {', '.join(unknown)}" if unknown else "")
        return Row(n, out_s, error=f"{what} (keys: {', '.join(REQUIRED + OPTIONAL)})")
    for k in ("ref", "audio", "out", "pose", "renderer"):
        if k in obj and not (isinstance(obj[k], str) and obj[k].strip()):
            return Row(n, out_s, error=f"{k} must be a non-empty string")
    seed = obj.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return Row(n, out_s, error=f"seed must be an integer, got {seed!r}")
    rel = PurePosixPath(out)
    if rel.is_absolute() or ".." in rel.parts or "\\" in out:
        return Row(n, out, error=f"out {out!r} must be a path inside --out (relative, no '..')")
    video = out_root.joinpath(*rel.parts)
    argv = ["--ref", str(_input(base, obj["ref"])), "--audio", str(_input(base, obj["audio"])),
            "-o", str(video)]
    if "pose" in obj:
        argv += ["--pose", str(_input(base, obj["pose"]))]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if "renderer" in obj:
        argv += ["--renderer", obj["renderer"]]
    return Row(n, out, tuple(argv), run_outputs(video))


def _input(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def finished(row: Row) -> bool:
    """All of the row's outputs exist (``csg run`` commits them together)."""
    return row.error is None and all(p.is_file() for p in row.outputs)


def run_row(argv: list[str]) -> tuple[str | None, float]:
    """Run one row through the ``csg run`` command; (None, seconds) when it wrote its outputs, else
    (its one-line error, seconds). Never raises for a failing row (Ctrl-C still stops the batch)."""
    from csg.cli import _one_line
    from csg.errors import CsgError

    from .cli import run
    from .worker import in_process

    t0 = time.perf_counter()
    try:
        Path(argv[argv.index("-o") + 1]).parent.mkdir(parents=True, exist_ok=True)
        with in_process():  # one process for every row: torch is imported once, here
            run.main(args=list(argv) + ["--quiet"], prog_name="csg run", standalone_mode=False)
        err = None
    except click.ClickException as e:
        err = _one_line(e.format_message())
    except CsgError as e:
        err = _one_line(e)
    except click.exceptions.Exit as e:
        err = None if e.exit_code == 0 else f"exit status {e.exit_code}"
    except Exception as e:  # noqa: BLE001 - one row's bug must not stop the batch
        err = f"unexpected {type(e).__name__}: {_one_line(e)}"
    return err, time.perf_counter() - t0


@dataclass
class BatchResult:
    written: list[Row]
    skipped: list[Row]
    failed: list[tuple[Row, str]]
    seconds: float


def run_batch(manifest: str | Path, out_dir: str | Path, *, common: tuple[str, ...] = (),
              engine: str = "local", workers: int = 1, address: str | None = None,
              gpus_per_row: float = 0.0, overwrite: bool = False,
              progress: bool = True) -> BatchResult:
    """Run every row of ``manifest`` (``common``: ``csg run`` options for all rows)."""
    from csg.data.engines import check_engine, run_jobs

    check_engine(engine, workers, address)
    t0 = time.perf_counter()
    rows = read_rows(manifest, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    failed = [(r, r.error) for r in rows if r.error is not None]
    skipped = [r for r in rows if not overwrite and finished(r)]
    todo = [r for r in rows if r.error is None and (overwrite or not finished(r))]
    extra = tuple(common) + (("--overwrite",) if overwrite else ())
    written = []
    for i, (err, _) in run_jobs(run_row, [(list(r.argv + extra),) for r in todo], engine=engine,
                                workers=workers, address=address, desc="batch",
                                progress=progress, num_gpus=gpus_per_row):
        if err is None:
            written.append(todo[i])
        else:
            failed.append((todo[i], err))
    failed.sort(key=lambda f: f[0].line)
    return BatchResult(written, skipped, failed, time.perf_counter() - t0)


@click.command("batch")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the outputs; each row's out is relative to it.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this machine (--workers processes); ray: one Ray task per row "
                   "(pip install 'csg[ray]').")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes (local), or CPUs of the local Ray started when no --address.")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, ray://HOST:10001); default $RAY_ADDRESS or a "
                   "local Ray. Paths must be on storage every node sees.")
@click.option("--gpus-per-row", default=0.0, show_default=True, type=click.FloatRange(0, 8),
              help="Ray: GPUs each row's task reserves (e.g. 1, or 0.5 to share one).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Run config YAML for every row (as csg run --config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Config override for every row (as csg run --set; repeatable).")
@click.option("--checkpoint", default=None, help="Stage-1 checkpoint for every row.")
@click.option("--guidance", type=click.Choice(["none", "sg", "dg"]), default=None,
              help="PCE guidance for every row.")
@click.option("--device", default=None, help="torch device for every row (cpu, cuda, cuda:N).")
@click.option("--overwrite", is_flag=True, help="Run finished rows again, replacing their outputs.")
@click.option("--quiet", is_flag=True, help="No progress bar; failures and the summary only.")
def batch(manifest, out_dir, engine, workers, address, gpus_per_row, config_path, overrides,
          checkpoint, guidance, device, overwrite, quiet):
    """csg run over many (photo, audio) rows of a JSON-lines manifest; bad rows fail alone."""
    common = []
    for flag, value in (("--config", config_path), ("--checkpoint", checkpoint),
                        ("--guidance", guidance), ("--device", device)):
        if value is not None:
            common += [flag, str(value)]
    for s in overrides:
        common += ["--set", s]
    res = run_batch(manifest, out_dir, common=tuple(common), engine=engine, workers=workers,
                    address=address, gpus_per_row=gpus_per_row, overwrite=overwrite,
                    progress=not quiet)
    total = len(res.written) + len(res.skipped) + len(res.failed)
    click.echo(f"batch: {total} rows: {len(res.written)} written, {len(res.skipped)} already "
               f"done (skipped), {len(res.failed)} failed ({res.seconds:.1f} s)")
    for row, err in res.failed:
        click.echo(f"  failed: line {row.line}" + (f" ({row.out})" if row.out else "")
                   + f": {err}", err=True)
    if res.failed:
        raise click.exceptions.Exit(1)
