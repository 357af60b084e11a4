"""The ``csg`` command line.

Only click is imported here. Every command lives in the module that owns it and is imported on first
use, so ``csg --help`` answers at once. Errors from bad input (:class:`csg.errors.CsgError`) become
one line on stderr and a non-zero exit; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import os
import sys

import click


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attr"`` strings, imported on first use."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # name -> (import path, one-line help shown in listings without importing)
        self.lazy = dict(lazy or {})

    def _available(self, name: str) -> bool:
        module = self.lazy[name][0].split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def list_commands(self, ctx):
        names = [n for n in self.lazy if self._available(n)]
        return sorted(set(super().list_commands(ctx)) | set(names))

    def get_command(self, ctx, name):
        if name in self.lazy and self._available(name):
            module, attr = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                rows.append((name, cmd.get_short_help_str(60) if cmd else ""))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy={
    "pose": ("csg.cli:pose", "Extract, draw, validate, convert and generate skeletons."),
    "data": ("csg.cli:data", "Make and prepare training data."),
    "train": ("csg.cli:train", "Train the stage-1 model and the sync classifiers."),
    "distill": ("csg.cli:distill", "Few-step students of the diffusion stages."),
    "render": ("pose2video.cli:render", "Render a skeleton JSON into a video of the photo."),
    "renderers": ("pose2video.cli:renderers", "List the registered renderers."),
    "run": ("pipeline.cli:run", "Photo + speech -> video, both stages."),
    "batch": ("pipeline.batch:batch", "Many runs from a JSON-lines manifest (local or Ray)."),
    "edit": ("pipeline.editor.cli:edit", "Edit a skeleton in the browser: timeline, locks, re-render."),
    "eval": ("csg.cli:eval_group", "Measure each stage: poses, videos, variants."),
})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.version_option(package_name="csg")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """csg: a photo and a speech recording become a video of that person speaking with gestures."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.group(cls=LazyGroup, lazy={
    "extract": ("csg.cli.extract_cmd:extract", "Reference skeleton from a photo."),
    "draw": ("csg.cli.pose_cmds:draw", "Draw a skeleton JSON to an mp4 or a png."),
    "validate": ("csg.cli.pose_cmds:validate", "Check a skeleton JSON against the contract."),
    "convert": ("csg.cli.pose_cmds:convert", "Convert between csg.pose and OpenPose JSON."),
    "generate": ("audio2pose.cli:generate", "Skeleton sequence from speech (stage 1)."),
})
def pose() -> None:
    """Skeleton files: the editable link between the two stages."""


@cli.group(cls=LazyGroup, lazy={
    "synth": ("csg.data.cli:synth", "Procedural co-speech corpus (audio, poses, frames)."),
    "prepare": ("csg.data.cli:prepare", "Real talking videos -> dataset."),
})
def data() -> None:
    """Datasets for both stages."""


@cli.group(cls=LazyGroup, lazy={
    "audio2pose": ("audio2pose.cli:train", "Train the stage-1 skeleton diffusion model."),
    "classifier": ("audio2pose.classifier_cli:train_classifier", "Train a sync classifier (PCE)."),
    "renderer": ("pose2video.vdm.cli:train_renderer", "Train or personalise the vdm renderer."),
})
def train() -> None:
    """Training, through accelerate (one CPU, many GPUs, many nodes)."""


@cli.group(cls=LazyGroup, lazy={
    "audio2pose": ("audio2pose.distill_cli:distill_audio2pose",
                   "Stage-1 student: k DDIM steps, no CFG (trajectory distillation)."),
    "vdm": ("pose2video.vdm.distill_cli:distill_vdm",
            "vdm student: k DDIM steps, no CFG, sparse attention, region loss."),
    "decoder": ("pose2video.vdm.distill_cli:distill_decoder",
                "A small latent decoder distilled from TAEF2's (the student's decoding cost)."),
})
def distill() -> None:
    """Few-step students distilled from the diffusion stages, through accelerate."""


@cli.group("eval", cls=LazyGroup, lazy={
    "pose": ("eval.cli:pose", "Stage-1 metrics: FGD, BAS, lip sync, diversity, jitter."),
    "video": ("eval.cli:video", "Stage-2 metrics: pose adherence, PSNR/SSIM, flicker."),
    "compare": ("eval.cli:compare", "Run variants over a dataset split, one table."),
    "motion": ("eval.motion_cli:motion", "Generated skeletons vs the same speaker's real motion."),
})
def eval_group() -> None:
    """Stage-wise evaluation with reports and plots."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI, turning errors into one line and an exit code."""
    from ..errors import CsgError

    import warnings

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not debug:  # third-party deprecation noise would break the one-line-error promise
        warnings.filterwarnings("ignore", category=UserWarning, module="google.protobuf")
        warnings.filterwarnings("ignore", category=FutureWarning)
    previous = _handle_sigterm()
    try:
        rv = cli.main(args=args, prog_name="csg", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:  # click's usage block is three lines: keep the promise of one
        where = e.ctx.command_path if e.ctx is not None else "csg"
        click.echo(f"error: {_one_line(e.format_message())} (see `{where} --help`)", err=True)
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        # click turns Ctrl-C (and our SIGTERM, a KeyboardInterrupt) into Abort: look at the cause
        cause = e if isinstance(e, KeyboardInterrupt) else e.__context__
        if isinstance(cause, EOFError):  # click turns any EOFError into Abort: a short file
            if debug:
                raise cause
            click.echo("error: an input file ended too early (empty or truncated: "
                       f"{_one_line(cause) or 'EOFError'}); rerun with --debug to see which",
                       err=True)
            return 2
        if isinstance(cause, Terminated):
            click.echo("error: terminated (SIGTERM); unfinished outputs were removed", err=True)
            return 143
        if isinstance(cause, KeyboardInterrupt):
            click.echo("error: interrupted; unfinished outputs were removed", err=True)
            return 130
        click.echo("error: aborted", err=True)
        return 130
    except CsgError as e:
        if debug:
            raise
        click.echo(f"error: {_one_line(e)}", err=True)
        return e.exit_code
    except OSError as e:  # a full disk or similar outside the outputs' own handling
        if debug:
            raise
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            click.echo(f"error: {os.strerror(e.errno)}"
                       + (f" ({e.filename})" if getattr(e, "filename", None) else "")
                       + "; free some space and run again", err=True)
            return 1
        click.echo(f"error: unexpected {type(e).__name__}: {_one_line(e)} "
                   "(rerun with --debug for the traceback)", err=True)
        return 1
    except RecursionError:
        if debug:
            raise
        click.echo("error: input is nested too deeply to read (a JSON or YAML file with "
                   "thousands of nested levels?)", err=True)
        return 2
    except Exception as e:  # noqa: BLE001 - the CLI must never print a traceback by default
        if debug:
            raise
        click.echo(f"error: unexpected {type(e).__name__}: {_one_line(e)} "
                   "(rerun with --debug for the traceback)", err=True)
        return 1
    finally:
        _restore_sigterm(previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``with`` block (temporary outputs, locks) unwinds."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


def _handle_sigterm():
    """Make SIGTERM behave like SIGINT while a command runs (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # pragma: no cover - embedded interpreters
        return None


def _restore_sigterm(previous) -> None:
    import signal

    if previous is None:
        return
    try:
        signal.signal(signal.SIGTERM, previous)
    except (ValueError, OSError):  # pragma: no cover
        pass


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 500 else text[:497] + "..."


_EXIT_NOW = False


def exit_without_teardown() -> None:
    """Called by a command once all its outputs are written and committed: the console entry
    point (:func:`run_main`) then ends the process with ``os._exit`` after flushing, instead of
    tearing the interpreter down. The teardown of MediaPipe, OpenCV and PyAV (and of torch where
    it was imported) costs 0.3-1 s, measured, that a user of ``csg run`` waits for after the
    video is written (docs/benchmarks.md). The CLI called in-process (tests, ``main()``) is not
    affected."""
    global _EXIT_NOW
    _EXIT_NOW = True


def run_main() -> None:  # pragma: no cover - thin wrapper for python -m csg
    rc = main()
    if rc == 0 and _EXIT_NOW:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        logging.shutdown()
        os._exit(0)
    sys.exit(rc)
