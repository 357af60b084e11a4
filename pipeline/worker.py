"""Stage 1 in a second process, so ``csg run`` uses both cores while it starts.

Start-up of ``csg run`` is dominated by imports that hold Python's GIL: torch and diffusers (with
transformers and torch._dynamo, which diffusers pulls in) for stage 1, MediaPipe (with matplotlib)
and OpenCV for the reference skeleton and the renderer. In one process they run one after the
other. :class:`Stage1Worker` forks the process right away; the child imports torch and diffusers
and loads the stage-1 model while the parent decodes the audio, imports MediaPipe and extracts the
reference skeleton; the parent then sends ``(speech, reference skeleton, seed, guidance)`` and
prepares the renderer while the child samples, and gets the :class:`csg.pose.PoseSequence` back.

The child runs exactly the code :meth:`CoSpeechPipeline.generate_poses` runs in one process, with
torch's default thread count, so the skeleton is the same to the byte (``tests/test_startup.py``).

A fork is only safe early, so the worker is used only when it can be: the ``fork`` start method
exists, torch is not imported yet (forking after OpenMP has started can hang the child) and no
other thread runs. Otherwise (and with ``CSG_STAGE1_PROCESS=0``) :func:`start_stage1` returns a
:class:`InProcessStage1` that does the same in this process, as before.

Once stage 1 is done the child would sit idle while this process draws the video, so for a
renderer whose frames are independent once planned (``warp``) it draws frame spans too, into a
shared buffer mapped before the fork (:mod:`pipeline.parallel`); with a skeleton given
(``csg run --pose``) the child loads no model and only draws.

Errors raised in the child (a :class:`csg.errors.CsgError` such as a missing checkpoint or a
reference skeleton without shoulders) are raised again in the parent, with the same type and
message; a child killed by Ctrl-C makes the parent raise ``KeyboardInterrupt``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ENV_SWITCH = "CSG_STAGE1_PROCESS"
"""Set to ``0`` to run stage 1 in the ``csg run`` process (no worker)."""


_in_process_depth = 0


@contextlib.contextmanager
def in_process():
    """Within this block :func:`start_stage1` never forks: for callers that run many ``csg run``
    in one process (``csg batch``), where torch is best imported once, here."""
    global _in_process_depth
    _in_process_depth += 1
    try:
        yield
    finally:
        _in_process_depth -= 1


_LOADED: dict[tuple, Any] = {}


def _reuse_loaded(pipe) -> None:
    """Within :func:`in_process` (``csg batch``): give ``pipe`` the stage-1 model an earlier run
    loaded from the same unchanged folder on the same device, instead of reading it again. The
    model is only used for inference (no state between calls)."""
    if getattr(pipe, "_audio2pose", None) is not None or not hasattr(pipe, "_stage1_folder"):
        return
    try:
        folder = pipe._stage1_folder().resolve()
        stamp = tuple(sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size)
                             for f in folder.rglob("*") if f.is_file()))
    except (OSError, AttributeError):
        return
    key = (str(folder), str(pipe.config.device), stamp)
    if key not in _LOADED:
        _LOADED.clear()  # one model kept: a batch with many checkpoints does not pile them up
        _LOADED[key] = pipe.audio2pose
    pipe._audio2pose = _LOADED[key]


def can_fork() -> bool:
    """True when forking a stage-1 worker is safe and allowed (see the module docstring)."""
    import multiprocessing

    if _in_process_depth:
        return False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return "torch" not in sys.modules and threading.active_count() == 1


class InProcessStage1:
    """Stage 1 in this process, as before the worker existed: ``submit`` loads the model (on first
    use) and generates at once, in the order the stages always ran; ``result`` returns the poses."""

    in_process = True
    can_render = False  # frames are drawn by this process alone

    def __init__(self, pipe):
        self.pipe = pipe
        self.spans: dict[str, tuple[float, float]] = {}
        self._poses = None

    def submit(self, wav, sr: int, ref_pose, *, seed: int, guidance: str | None,
               progress: bool) -> None:
        t0 = time.perf_counter()
        if _in_process_depth:
            _reuse_loaded(self.pipe)
        self.pipe.audio2pose  # noqa: B018 - load (imports torch and diffusers), timed apart
        self.spans["stage1_load"] = (t0, time.perf_counter())
        t0 = time.perf_counter()
        self._poses = self.pipe.generate_poses(
            wav, sr, ref_pose, generator=self.pipe.generators(seed)["audio2pose"],
            guidance=guidance, progress=progress)
        self.spans["stage1_generate"] = (t0, time.perf_counter())

    def result(self):
        return self._poses

    def close(self) -> None:
        pass


class Stage1Worker:
    """A forked child that loads stage 1 at once and generates one skeleton sequence on request.

    ``submit(...)`` sends the request, ``result()`` waits for the poses (or raises the child's
    error), ``close()`` ends the child (also on errors; idempotent). ``spans`` gets the child's
    ``stage1_load`` (imports + weights), ``stage1_wait`` (waiting for the request) and
    ``stage1_generate`` as ``(start, end)`` ``time.perf_counter()`` values (one clock for both
    processes on Linux: CLOCK_MONOTONIC).
    """

    in_process = False

    def __init__(self, pipe, preimport: tuple[str, ...] | None = None, *, stage1: bool = True,
                 frame_bytes: int = 0):
        import mmap
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conn, child_conn = ctx.Pipe()
        for stream in (sys.stdout, sys.stderr):  # the child must not repeat buffered output
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        # frames the child draws (render_span) land here: an anonymous shared mapping made before
        # the fork (no file, no resource tracker); pages are only allocated when written
        self.frame_bytes = int(frame_bytes)
        self.frames = mmap.mmap(-1, self.frame_bytes) if self.frame_bytes > 0 else None
        self._proc = ctx.Process(target=_child, args=(child_conn, self._conn, pipe,
                                                       PREIMPORT if preimport is None else preimport,
                                                       stage1, self.frames),
                                 name="csg-stage1", daemon=True)
        self._proc.start()
        child_conn.close()
        self._sender: threading.Thread | None = None
        self.spans: dict[str, tuple[float, float]] = {}

    @property
    def can_render(self) -> bool:
        """Whether the child can draw frame spans (:meth:`render_setup`, :meth:`render_span`)."""
        return self.frames is not None and self._proc is not None

    def render_setup(self, state: Any, plan: Any) -> None:
        """Hand the child the renderer's prepared ``state`` and sequence ``plan`` (see
        :class:`pose2video.base.Renderer`, ``plan`` / ``render_span``); it renders with the
        pipeline's configured renderer."""
        self._conn.send(("render_setup", (state, plan)))

    def render_span(self, index: int, start: int, stop: int, offset: int) -> None:
        """Ask the child to draw frames ``start:stop`` into :attr:`frames` at byte ``offset``;
        :meth:`rendered` returns ``index`` when they are there."""
        self._conn.send(("render", (index, start, stop, offset)))

    def rendered(self, timeout: float | None = None) -> list[int]:
        """Indices of spans the child finished, waiting up to ``timeout`` seconds (None: until
        one arrives) for the first; raises the child's error, or if it died."""
        out: list[int] = []
        while self._conn.poll(timeout if not out else 0):
            kind, payload = self._recv()
            if kind != "rendered":
                _raise_from_child(payload)
            out.append(payload)
        return out

    def submit(self, wav, sr: int, ref_pose, *, seed: int, guidance: str | None,
               progress: bool) -> None:
        # from a thread: the speech is larger than a pipe's buffer, and the child reads it only
        # once the model is loaded, while this process has other work to do meanwhile
        self._sender = threading.Thread(
            target=self._send, args=(("generate", (wav, sr, ref_pose, seed, guidance, progress)),),
            name="csg-stage1-send", daemon=True)
        self._sender.start()

    def _send(self, message) -> None:
        try:
            self._conn.send(message)
        except Exception:  # noqa: BLE001 - the child ended (result() says why) or close()
            pass  # closed the pipe under a send still waiting (then the run is over anyway)

    def result(self):
        kind, payload = self._recv()
        if kind == "ok":
            poses, spans = payload
            self.spans.update(spans)
            return poses
        _raise_from_child(payload)

    def _recv(self):
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            import signal

            if code is not None and code in (-signal.SIGINT, -signal.SIGTERM):
                raise KeyboardInterrupt from None
            raise RuntimeError(f"the stage-1 worker process ended unexpectedly (exit code {code})"
                               "; rerun with CSG_STAGE1_PROCESS=0 to run stage 1 in one "
                               "process") from None

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        try:
            self._conn.close()
        except OSError:
            pass
        proc.join(0.5)  # the child sees the closed pipe and exits
        if proc.is_alive():
            proc.terminate()
            proc.join(2)
        if self._sender is not None:
            self._sender.join(2)  # the closed pipe ends a send still waiting for the child
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._proc = None
        self.frames = None  # unmapped when the last view of it is gone


def start_stage1(pipe, *, stage1: bool = True, frame_bytes: int = 0):
    """A :class:`Stage1Worker` when a fork is safe (:func:`can_fork`), else :class:`InProcessStage1`.

    ``stage1=False``: the child loads no model (a skeleton was given) and only draws frames;
    ``frame_bytes`` > 0 gives it a shared buffer of that size for them (0: no drawing)."""
    if can_fork():
        try:
            return Stage1Worker(pipe, stage1=stage1, frame_bytes=frame_bytes)
        except OSError as e:  # e.g. no processes left: do the work here instead
            logger.info("stage-1 worker not started (%s); running stage 1 in this process", e)
    return InProcessStage1(pipe)


# --- the child -------------------------------------------------------------------------------------
def _child(conn, parent_end, pipe, preimport: tuple[str, ...], stage1: bool = True,
           frames=None) -> None:
    """Load stage 1 (unless ``stage1`` is False), then answer requests until the parent closes
    the pipe: one ``generate`` (stage 1), ``render_setup`` and any number of ``render`` (frame
    spans drawn into the shared ``frames`` buffer). Runs in the forked process."""
    import signal

    parent_end.close()
    # the parent's handlers (SIGTERM -> cleanup of its outputs) are not the child's business:
    # default actions, except a SIGINT the parent was started with ignored stays ignored
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # OMP_WAIT_POLICY=PASSIVE comes with the parent's environment (csg run sets it before torch)
    spans: dict[str, tuple[float, float]] = {}
    render: tuple | None = None
    try:
        t0 = time.perf_counter()
        if stage1:
            pipe.audio2pose  # noqa: B018 - imports torch + diffusers, loads the weights
            _preimport(preimport)
            spans["stage1_load"] = (t0, time.perf_counter())
        while True:
            t0 = time.perf_counter()
            try:
                kind, request = conn.recv()
            except (EOFError, OSError):
                return  # the parent finished (or failed): nothing more to do
            if kind == "generate":
                spans["stage1_wait"] = (t0, time.perf_counter())
                wav, sr, ref_pose, seed, guidance, progress = request
                t0 = time.perf_counter()
                poses = pipe.generate_poses(wav, sr, ref_pose,
                                            generator=pipe.generators(seed)["audio2pose"],
                                            guidance=guidance, progress=progress)
                spans["stage1_generate"] = (t0, time.perf_counter())
                conn.send(("ok", (poses, spans)))
            elif kind == "render_setup":
                render = (pipe.renderer(), *request)
            elif kind == "render":
                index, start, stop, offset = request
                renderer, state, plan = render
                h, w = state.size_hw
                n = stop - start
                out = np.frombuffer(frames, np.uint8, n * h * w * 3, offset).reshape(n, h, w, 3)
                renderer.render_span(state, plan, start, stop, out=out)
                conn.send(("rendered", index))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        if isinstance(e, KeyboardInterrupt):
            raise
        try:
            conn.send(("error", _pack_error(e)))
        except (OSError, EOFError):
            pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


PREIMPORT = ("audio2pose.sampling", "csg.smoothing")
"""Modules stage 1 imports on its first call (sampling, Savitzky-Golay smoothing), imported by
the worker with the model, before the request can arrive."""


def _preimport(names: tuple[str, ...]) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - the real call reports it
            pass


def _pack_error(e: BaseException) -> dict[str, Any]:
    import pickle
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        blob = pickle.dumps(e)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - unpicklable: send its type and message
        blob = None
    return {"pickled": blob, "type": type(e).__name__, "message": str(e), "traceback": text}


def _raise_from_child(info: dict[str, Any]):
    import pickle

    logger.debug("stage-1 worker traceback:\n%s", info["traceback"])
    err = pickle.loads(info["pickled"]) if info["pickled"] is not None else None
    if err is None:
        err = RuntimeError(f"{info['type']}: {info['message']}")
    err.__cause__ = _ChildTraceback(info["traceback"])
    raise err


class _ChildTraceback(Exception):
    """The child's traceback text, chained to the re-raised error (shown by ``csg --debug``)."""

    def __str__(self) -> str:
        return "in the stage-1 worker process:\n" + str(self.args[0])
