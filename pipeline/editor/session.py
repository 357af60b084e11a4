"""One editing session: the files it was started with, the document, stage 1, the renderers, jobs.

The HTTP layer (:mod:`.server`) only parses requests and calls these methods; everything here is
usable (and tested) without a server. Long work (re-generation, rendering a range) runs as a
:class:`Job` on a thread, one at a time; its progress is polled. Files are written only to the
paths fixed at start: the save target, and ``out_dir`` for exports and videos, under names this
module makes (a caller may only choose a plain file name inside ``out_dir``).
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from csg.audio import SAMPLE_RATE, fit_to_frames, frame_bounds
from csg.errors import CsgError, InputError
from csg.pose import PoseSequence

from .state import EditError, EditorState

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


class BusyError(CsgError):
    """Another job (re-generation or render) is running; try again when it is done."""


@dataclass
class Job:
    """A background task: ``state`` is "running", "done" or "error"; progress = done / total."""

    id: int
    kind: str
    state: str = "running"
    done: int = 0
    total: int = 0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        frac = self.done / self.total if self.total else (1.0 if self.state == "done" else 0.0)
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done,
                "total": self.total, "progress": round(frac, 4), "message": self.message,
                "result": self.result, "seconds": round(time.time() - self.started, 2)}


def plain_name(name: Any, suffix: str) -> str:
    """A file name chosen by the page: letters, digits, ``._-``, no folders; ends in ``suffix``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise EditError(f"name must be a plain file name (letters, digits, '.', '_', '-'; no "
                        f"folders), got {name!r}")
    return name if name.endswith(suffix) else name + suffix


class EditorSession:
    """Everything the editor serves. Paths are fixed here; nothing else is read or written.

    pose_path: the skeleton JSON; photo_path: the reference photo (same canvas); audio_path:
    speech (optional: no waveform, no re-generation without it); output: where "save" writes
    (default: ``pose_path`` itself); out_dir: exports and videos (default: the JSON's folder);
    ref_pose_path: the photo's skeleton (default: extracted from the photo when first needed);
    checkpoint / stage1: the stage-1 pipeline folder, or a ready :class:`Audio2PosePipeline`;
    max_side: render size; renderer_options: per renderer, options over its packaged YAML.
    """

    def __init__(self, pose_path: str | Path, photo_path: str | Path,
                 audio_path: str | Path | None = None, *, output: str | Path | None = None,
                 out_dir: str | Path | None = None, ref_pose_path: str | Path | None = None,
                 checkpoint: str | None = None, stage1: Any = None, device: str = "cpu",
                 max_side: int = 512, max_audio_seconds: float = 600.0,
                 renderer_options: dict[str, dict[str, Any]] | None = None):
        from csg.audio import load_audio
        from csg.image import load_image

        self.pose_path = Path(pose_path)
        poses = PoseSequence.load(self.pose_path)
        self.image = load_image(photo_path)
        self._photo_name = str(photo_path)
        h, w = self.image.shape[:2]
        if (poses.height, poses.width) != (h, w):
            raise InputError(f"{self.pose_path}: skeleton canvas is {poses.width}x{poses.height} "
                             f"but the photo {photo_path} is {w}x{h}; edit the skeleton made for "
                             "this photo")
        self.wav = None
        if audio_path is not None:
            wav = load_audio(audio_path, SAMPLE_RATE, max_seconds=max_audio_seconds,
                             limit_name="--max-audio-seconds")
            self.wav = fit_to_frames(wav, poses.num_frames, SAMPLE_RATE, poses.fps)
        self.output = Path(output) if output is not None else self.pose_path
        self.out_dir = Path(out_dir) if out_dir is not None else self.pose_path.parent
        if not self.out_dir.is_dir():
            raise InputError(f"{self.out_dir}: output folder does not exist; create it first")
        stem = self.pose_path.name
        for suffix in (".pose.json", ".json"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        self.stem = stem or "pose"
        self._ref_pose_path = Path(ref_pose_path) if ref_pose_path is not None else None
        self._ref_pose: PoseSequence | None = None
        self._checkpoint, self._stage1, self.device = checkpoint, stage1, device
        self._features: np.ndarray | None = None
        self.state = EditorState(poses)
        self.lock = threading.RLock()
        self.jobs: dict[int, Job] = {}
        self._job_lock = threading.Lock()
        self._running: Job | None = None
        self.written: dict[str, Path] = {}  # name -> file this session wrote (servable)
        from .render import RenderCache

        self.renders = RenderCache(self.image, self.ref_pose, max_side=max_side, device=device,
                                   options=renderer_options)

    # --- inputs made on demand ------------------------------------------------------------------
    def ref_pose(self) -> PoseSequence:
        """The photo's own skeleton (T=1): --ref-pose, else extracted from the photo once."""
        with self.lock:
            if self._ref_pose is None:
                if self._ref_pose_path is not None:
                    ref = PoseSequence.load(self._ref_pose_path).frame(0)
                else:
                    from csg.extract import extract_pose

                    ref = extract_pose(self.image, source=self._photo_name)
                if (ref.height, ref.width) != self.image.shape[:2]:
                    raise InputError(f"reference skeleton canvas {ref.width}x{ref.height} is not "
                                     "the photo's size")
                self._ref_pose = ref
            return self._ref_pose

    def stage1(self):
        with self.lock:
            if self._stage1 is None:
                from audio2pose import Audio2PosePipeline

                self._stage1 = Audio2PosePipeline.from_pretrained(self._checkpoint,
                                                                  device=self.device)
            return self._stage1

    # --- read-only views ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        from pose2video import available_renderers

        from .layout import layout

        st = self.state
        with self.lock:
            return {
                "num_frames": st.num_frames, "fps": st.poses.fps, "width": st.poses.width,
                "height": st.poses.height, "has_audio": self.wav is not None,
                "pose_file": self.pose_path.name, "save_file": self.output.name,
                "renderers": [n for n, _, _ in available_renderers()],
                "default_renderer": "warp",
                "layout": layout(), **self.status(),
            }

    def status(self) -> dict[str, Any]:
        st = self.state
        return {"version": st.version, "locked": st.locked_ranges(), "dirty": st.dirty,
                "can_undo": bool(st.undo_stack), "can_redo": bool(st.redo_stack),
                "undo_label": st.undo_stack[-1].label if st.undo_stack else None,
                "redo_label": st.redo_stack[-1].label if st.redo_stack else None,
                "job": self._running.to_dict() if self._running is not None else None}

    def poses_bytes(self, start: int = 0, stop: int | None = None) -> bytes:
        """Frames [start, stop) as little-endian float32 (n * 133 * 3 values)."""
        with self.lock:
            stop = self.state.num_frames if stop is None else stop
            a, b = self.state.check_span(start, stop)
            return np.ascontiguousarray(self.state.keypoints[a:b], "<f4").tobytes()

    def frame_json(self, t: int) -> dict[str, Any]:
        with self.lock:
            t = self.state.check_frame(t)
            return {"frame": t, "keypoints": self.state.keypoints[t].tolist(),
                    "locked": bool(self.state.locked[t])}

    def waveform(self, per_frame: int = 4) -> dict[str, Any]:
        """Peak |amplitude| in ``per_frame`` bins per pose frame, scaled so the loudest is 1."""
        if self.wav is None:
            return {"per_frame": per_frame, "peaks": []}
        T = self.state.num_frames
        edges = np.linspace(0, self.wav.shape[0], T * per_frame + 1).astype(np.int64)
        a = np.abs(self.wav)
        peaks = np.array([a[s:e].max() if e > s else 0.0 for s, e in zip(edges[:-1], edges[1:])])
        peaks = peaks / max(float(peaks.max()), 1e-9)
        return {"per_frame": per_frame, "peaks": np.round(peaks, 3).tolist()}

    def photo_png(self) -> bytes:
        return _encode(self.image, ".png")

    def audio_wav(self) -> bytes:
        import soundfile as sf

        if self.wav is None:
            raise EditError("this session was started without --audio")
        buf = io.BytesIO()
        sf.write(buf, self.wav, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    def render_frame_png(self, t: int, renderer: str = "warp", seed: int = 0) -> bytes:
        with self.lock:
            t = self.state.check_frame(t)
            poses = self.state.poses.slice(t, t + 1)
        return _encode(self.renders.frame(renderer, poses, 0, seed=seed), ".png")

    # --- edits ----------------------------------------------------------------------------------
    def _check_idle_for_edit(self) -> None:
        job = self._running
        if job is not None and job.kind == "regenerate":
            raise BusyError("re-generation is running; edit again when it is done")

    def edit(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{"op": "move", ...}`` or ``{"op": "part", ...}`` (see docs/editor.md)."""
        op = body.get("op")
        args = {k: v for k, v in body.items() if k != "op"}
        with self.lock:
            self._check_idle_for_edit()
            try:
                if op == "move":
                    ch = self.state.move_joint(**args)
                elif op == "part":
                    ch = self.state.move_part(**args)
                else:
                    raise EditError(f"op must be 'move' or 'part', got {op!r}")
            except TypeError as e:  # unknown or missing fields
                raise EditError(f"{op}: {e}".replace("EditorState.", "")) from None
            return self._changed(ch)

    def set_locked(self, start: Any, stop: Any, locked: Any = True) -> dict[str, Any]:
        with self.lock:
            self._check_idle_for_edit()
            return self._changed(self.state.set_locked(start, stop, locked))

    def undo(self) -> dict[str, Any]:
        with self.lock:
            self._check_idle_for_edit()
            return self._changed(self.state.undo())

    def redo(self) -> dict[str, Any]:
        with self.lock:
            self._check_idle_for_edit()
            return self._changed(self.state.redo())

    def _changed(self, ch) -> dict[str, Any]:
        out = self.status()
        if ch is not None and len(ch.frames):
            out["changed"] = [int(ch.frames.min()), int(ch.frames.max()) + 1]
            out["label"] = ch.label
        else:
            out["changed"] = None
        return out

    # --- files ----------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """Validate and write the document to the save target atomically (schema unchanged)."""
        with self.lock:
            doc = self.state.document()
            doc.save(self.output)  # validates, then temp file + rename
            self.state.saved_id = self.state.current_id
            return {"saved": self.output.name, "frames": doc.num_frames, **self.status()}

    def export_openpose(self, body_format: Any = "coco18") -> dict[str, Any]:
        from csg.openpose import to_openpose

        if body_format not in ("coco18", "body25"):
            raise EditError(f"body_format must be 'coco18' or 'body25', got {body_format!r}")
        with self.lock:
            doc = self.state.document()
        folder = self.out_dir / f"{self.stem}_openpose"
        to_openpose(doc, folder, body_format=body_format, overwrite=True)
        return {"exported": folder.name, "frames": doc.num_frames}

    def file_path(self, name: str) -> Path:
        """A file this session wrote, by name; anything else is refused."""
        if name not in self.written:
            raise EditError(f"{name!r} is not a file this editor session wrote")
        return self.written[name]

    # --- jobs -----------------------------------------------------------------------------------
    def _start(self, kind: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        with self._job_lock:
            if self._running is not None:
                raise BusyError(f"{self._running.kind} is running; wait for it to finish")
            job = Job(id=len(self.jobs) + 1, kind=kind)
            self.jobs[job.id] = job
            self._running = job

        def run() -> None:
            try:
                job.result = work(job)
                job.state, job.message = "done", ""
            except CsgError as e:
                job.state, job.message = "error", " ".join(str(e).split())
            except Exception as e:  # noqa: BLE001 - reported to the page, logged in full
                logger.error("%s job failed:\n%s", kind, traceback.format_exc())
                job.state, job.message = "error", f"unexpected {type(e).__name__}: {e}"
            finally:
                with self._job_lock:
                    self._running = None

        threading.Thread(target=run, name=f"csg-edit-{kind}", daemon=True).start()
        return job

    def job(self, job_id: int) -> Job:
        if job_id not in self.jobs:
            raise EditError(f"no job {job_id}")
        return self.jobs[job_id]

    def wait(self, job: Job, timeout: float = 600.0) -> Job:
        """Block until ``job`` ends (for scripts and tests)."""
        t0 = time.time()
        while job.state == "running" and time.time() - t0 < timeout:
            time.sleep(0.02)
        return job

    def start_regenerate(self, start: Any, stop: Any, seed: Any = 0, steps: Any = None,
                         cfg: Any = None) -> Job:
        """Re-generate the unlocked frames of [start, stop) with stage 1 (locked ones kept)."""
        from .regen import clip_features, regenerate

        if self.wav is None:
            raise EditError("re-generation needs the speech: start the editor with --audio")
        with self.lock:
            a, b = self.state.check_span(start, stop)
            kps, locked = self.state.keypoints.copy(), self.state.locked.copy()
        seed = _int(seed, "seed")
        steps = None if steps is None else _int(steps, "steps", 1)
        if cfg is not None and (isinstance(cfg, bool) or not isinstance(cfg, (int, float))
                                or not np.isfinite(cfg)):
            raise EditError(f"cfg must be a finite number, got {cfg!r}")

        def work(job: Job) -> dict[str, Any]:
            pipe = self.stage1()
            if abs(pipe.fps - self.state.poses.fps) > 1e-6:
                raise InputError(f"the skeleton is at {self.state.poses.fps:g} fps, the stage-1 "
                                 f"model at {pipe.fps:g} fps")
            ref = self.ref_pose().keypoints[0]
            if self._features is None:
                job.message = "audio features"
                self._features = clip_features(pipe, self.wav, self.state.num_frames)
            job.message = "sampling"

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            new = regenerate(pipe, self._features, ref, kps, a, b, locked, seed=seed, steps=steps,
                             cfg_scale=cfg, callback=progress)
            with self.lock:
                ch = self.state.replace_frames(a, new, f"re-generate frames {a}-{b - 1} "
                                                       f"(seed {seed})")
            return {"changed": [a, b], "frames": int(len(ch.frames)), "seed": seed,
                    "version": self.state.version}

        return self._start("regenerate", work)

    def start_render(self, start: Any = None, stop: Any = None, renderer: Any = "warp",
                     seed: Any = 0, name: Any = None) -> Job:
        """Render frames [start, stop) (default: all) to an mp4 in ``out_dir``, audio muxed."""
        from csg.video import VideoWriter

        with self.lock:
            T = self.state.num_frames
            a, b = self.state.check_span(0 if start is None else start, T if stop is None else stop)
            poses = self.state.poses.slice(a, b)
        if not isinstance(renderer, str):
            raise EditError(f"renderer must be a name, got {renderer!r}")
        seed = _int(seed, "seed")
        default = f"{self.stem}.edit.mp4" if (a, b) == (0, T) else \
            f"{self.stem}.edit.{a:06d}-{b - 1:06d}.mp4"
        fname = default if name is None else plain_name(name, ".mp4")
        path = self.out_dir / fname
        audio = None
        if self.wav is not None:
            bounds = frame_bounds(T, SAMPLE_RATE, poses.fps)
            audio = self.wav[bounds[a]:bounds[b]]

        def work(job: Job) -> dict[str, Any]:
            job.total, job.message = b - a, f"preparing {renderer}"
            self.renders.get(renderer)
            job.message = "rendering"
            h, w = self.renders.size_hw
            with VideoWriter(path, poses.fps, (h, w), audio=audio, overwrite=True) as vw:
                for chunk in self.renders.frames(renderer, poses, audio=audio, seed=seed):
                    for f in chunk:
                        vw.write(f)
                    job.done = min(job.total, job.done + len(chunk))
            self.written[fname] = path
            return {"file": fname, "frames": b - a, "range": [a, b], "size": [h, w]}

        return self._start("render", work)


def _int(v: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
        more = f" >= {minimum}" if minimum is not None else ""
        raise EditError(f"{name} must be a whole number{more}, got {v!r}")
    return v


def _encode(img: np.ndarray, ext: str) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img[..., ::-1]))
    if not ok:
        raise CsgError(f"could not encode the image as {ext}")
    return buf.tobytes()
