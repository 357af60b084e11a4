"""``CoSpeechPipeline``: photo + speech -> skeleton sequence -> frames, shaped like a diffusers pipeline.

::

    pipe = CoSpeechPipeline.from_pretrained()          # embedded defaults, no download
    out = pipe(image, wav, sr=16000, seed=0)
    out.poses.save("talk.pose.json"); out.frames        # (T, H, W, 3) uint8

Skeletons are on the canvas of the photo as given (so an edited JSON matches the photo the user
has); the renderer works on a copy resized to ``render.max_side`` and the poses are scaled to it.

Randomness: stage 1 and stage 2 each get their own generator derived from one seed
(:mod:`csg.seeds`), so re-rendering an edited skeleton with the same seed uses the same stage-2
noise as the run that produced it. The renderer follows protocol v2 (``prepare`` once per photo,
then ``render(state, poses, audio at 16 kHz, generator, callback, chunk)``).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from csg.canvas import rescale_pose, resize_to_working, working_size  # noqa: F401 - API
from csg.config import to_dict
from csg.errors import CsgError, InputError, WeightsNotFoundError
from csg.outputs import atomic_write_text
from csg.pose import PoseSequence

from .config import RunConfig, load_run_config, validate_run_config

logger = logging.getLogger(__name__)
PIPELINE_FILE = "csg_pipeline.json"
"""The component index written by :meth:`CoSpeechPipeline.save_pretrained` (cf. diffusers'
``model_index.json``)."""
INDEX_VERSION = 2
RENDERER_DIR = "renderer"
"""Subfolder of a saved pipeline holding copies of the renderer's local weights."""


@dataclass
class CoSpeechOutput:
    """What a run produced. ``frames`` is (T, H, W, 3) uint8, or an iterator of (n, H, W, 3)
    chunks when ``output_type="iterator"`` (bounded memory for long inputs)."""

    poses: PoseSequence
    frames: Any
    timings: dict[str, float] = field(default_factory=dict)


def check_pose_matches(pose: PoseSequence, image_hw: tuple[int, int], source: str) -> None:
    """Refuse a skeleton whose canvas is not the photo's (editing tools keep the canvas)."""
    h, w = image_hw
    if (pose.height, pose.width) != (h, w):
        raise InputError(f"{source}: skeleton canvas is {pose.width}x{pose.height} but the photo is "
                         f"{w}x{h}; extract the reference from this photo (csg pose extract) or "
                         "generate the skeleton with it")


def resolve_renderer_options(name: str, config: str | Path | None) -> dict[str, Any]:
    """The renderer's keyword options, resolved the same way for ``csg run`` and ``csg render``:
    the YAML file ``config`` if given, else ``configs/pose2video/<name>.yaml`` when packaged, else
    the renderer's defaults."""
    from pose2video.cli import renderer_options

    return renderer_options(name, None if config is None else str(config))


@dataclass
class Prepared:
    """The photo at the working size, its skeleton there, and the renderer's state for it."""

    image: np.ndarray
    ref_pose: PoseSequence
    state: Any

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


class CoSpeechPipeline:
    """Holds the stage-1 model (loaded on first use), its sync classifiers and a renderer."""

    def __init__(self, *, config: RunConfig | None = None, audio2pose: Any = None,
                 renderer: Any = None, stage1_dir: str | Path | None = None,
                 renderer_options: dict[str, Any] | None = None):
        self.config = validate_run_config(config or load_run_config(), check_device=False)
        self._audio2pose = audio2pose
        self._renderers: dict[str, Any] = {}
        if renderer is not None:
            self._renderers[getattr(renderer, "name", self.config.render.renderer)] = renderer
        self._renderer_options = dict(renderer_options) if renderer_options is not None else None
        self.stage1_dir = Path(stage1_dir) if stage1_dir else None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig | str | Path | None = None, overrides=(),
                    **components: Any) -> "CoSpeechPipeline":
        """From a :class:`RunConfig`, a YAML path, or ``configs/default.yaml``; ``overrides`` are
        ``key=value`` strings. Models are loaded lazily, on first use."""
        if not isinstance(config, RunConfig):
            config = load_run_config(config, overrides, check_device=False)
        elif overrides:
            from csg.config import replace_config

            config = replace_config(config, overrides)
        return cls(config=config, **components)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path | None = None,
                        config: RunConfig | None = None, **components: Any) -> "CoSpeechPipeline":
        """A folder written by :meth:`save_pretrained` (its component index names stage 1, the
        classifiers and the renderer with its options), a stage-1 checkpoint folder, a hub id
        already in the local cache, or ``None`` for the embedded defaults."""
        config = config or load_run_config(check_device=False)
        if path_or_id is None:
            return cls(config=config, **components)
        folder = _resolve_folder(path_or_id)
        spec = folder / PIPELINE_FILE
        if not spec.is_file():
            return cls(config=config, stage1_dir=folder, **components)
        from csg.config import from_dict

        try:
            data = json.loads(spec.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise WeightsNotFoundError(f"{spec}: unreadable component index ({e})") from None
        if not isinstance(data, dict) or data.get("format") != "csg.pipeline":
            raise WeightsNotFoundError(f"{spec}: not a csg pipeline index")
        saved = from_dict(RunConfig, data.get("run_config", {}), str(spec))
        stage1 = folder / data.get("audio2pose", "audio2pose")
        if not stage1.is_dir():
            raise WeightsNotFoundError(f"{spec}: its stage-1 folder {stage1} is missing")
        for region, rel in (data.get("classifiers") or {}).items():
            if not (folder / rel).is_dir():
                raise WeightsNotFoundError(f"{spec}: the {region} classifier folder "
                                           f"{folder / rel} is missing")
        rend = data.get("renderer") or {}
        if rend.get("name"):
            saved = replace(saved, render=replace(saved.render, renderer=rend["name"],
                                                  config=None))
        options = dict(rend.get("options") or {})
        for key, ref in (rend.get("weights") or {}).items():
            if isinstance(ref, str) and ref.startswith(f"{RENDERER_DIR}/"):
                if not (folder / ref).exists():
                    raise WeightsNotFoundError(f"{spec}: the renderer's {key} weights "
                                               f"{folder / ref} are missing")
                options[key] = str(folder / ref)
        components.setdefault("renderer_options", options)
        return cls(config=saved, stage1_dir=stage1, **components)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the stage-1 model with its classifiers, and a component index
        (:data:`PIPELINE_FILE`: stage 1, the classifiers, the renderer's name, options and weights,
        the run config) that :meth:`from_pretrained` reads back."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        src = self._stage1_folder()
        dst = folder / "audio2pose"
        if src.resolve() != dst.resolve():  # saving a loaded pipeline onto itself copies nothing
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.md"))
        classifiers = {region: f"audio2pose/{sub}" for region, sub in
                       (("face", "classifier_face"), ("nonface", "classifier_nonface"))
                       if (dst / sub).is_dir()}
        name = self.config.render.renderer
        options = _jsonable(self.renderer_options(), "renderer options")
        weights = _copy_renderer_weights(options, folder)
        cfg = replace(self.config, stage1=replace(self.config.stage1, checkpoint=None),
                      render=replace(self.config.render, config=None))
        index = {"format": "csg.pipeline", "version": INDEX_VERSION,
                 "audio2pose": "audio2pose", "classifiers": classifiers,
                 "renderer": {"name": name, "options": options,
                              "weights": weights},
                 "run_config": to_dict(cfg)}
        atomic_write_text(folder / PIPELINE_FILE, json.dumps(index, indent=2) + "\n")
        return folder

    # --- components -----------------------------------------------------------------------------
    def _stage1_folder(self) -> Path:
        if self.stage1_dir is not None:
            return self.stage1_dir
        from audio2pose.pipeline import resolve_checkpoint  # embedded names (student) too

        return resolve_checkpoint(self.config.stage1.checkpoint or None)

    @property
    def audio2pose(self):
        """The stage-1 pipeline, loaded on first use."""
        if self._audio2pose is None:
            from audio2pose import Audio2PosePipeline

            self._audio2pose = Audio2PosePipeline.from_pretrained(self._stage1_folder(),
                                                                  device=self.config.device)
        return self._audio2pose

    def renderer_options(self) -> dict[str, Any]:
        """Options of the configured renderer (see :func:`resolve_renderer_options`)."""
        if self._renderer_options is None:
            self._renderer_options = resolve_renderer_options(self.config.render.renderer,
                                                              self.config.render.config)
            if self.config.render.weights:
                self._renderer_options["weights"] = self.config.render.weights
            if self.config.render.guidance is not None:
                self._renderer_options["guidance"] = self.config.render.guidance
        return dict(self._renderer_options)

    def renderer(self, name: str | None = None):
        """The renderer ``name`` (default: the config's), built once from the registry with its
        options and ``device=config.device``. Building validates the options, so calling this
        first makes a bad option fail before any stage runs."""
        name = name or self.config.render.renderer
        if name not in self._renderers:
            options = (self.renderer_options() if name == self.config.render.renderer
                       else resolve_renderer_options(name, None))
            from pose2video.cli import build_renderer

            self._renderers[name] = build_renderer(name, self.config.device, options,
                                                   self.config.render.dtype)
        return self._renderers[name]

    def guide(self, mode: str | None = None):
        """The PCE sync-guidance hook for ``mode`` (none | sg | dg), or None."""
        from csg.diffusion.guidance import MODES

        mode = (mode or self.config.stage1.guidance).lower()
        if mode not in MODES:
            raise CsgError(f"guidance must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "none":
            return None
        try:
            from audio2pose.classifier import load_guide
        except ImportError as e:
            raise CsgError(f"sync guidance '{mode}' is not available: {e}") from None
        return load_guide(self.config.stage1.guidance_config(mode), self._classifier_folder(),
                          device=self.config.device)

    def _classifier_folder(self) -> Path:
        """Where stage 1's sync classifiers are: the stage-1 folder's own; for an embedded
        checkpoint without them (the few-step ``student``), the embedded default's, which judge
        noisy skeletons whatever sampler made them (docs/guidance.md)."""
        from audio2pose.pipeline import WEIGHTS_DIR, default_checkpoint_dir

        folder = self._stage1_folder()
        if (not (folder / "classifier_face").is_dir()
                and folder.resolve().parent == Path(WEIGHTS_DIR).resolve()):
            return Path(default_checkpoint_dir())
        return folder

    def generators(self, seed: int | None = None) -> dict[str, Any]:
        """``{"audio2pose": ..., "render": ...}``: one CPU ``torch.Generator`` per stage derived
        from ``seed`` (default: the config's) by :func:`csg.seeds.stage_generator`."""
        from csg.seeds import stage_generator

        seed = self.config.seed if seed is None else int(seed)
        return {stage: stage_generator(seed, stage) for stage in ("audio2pose", "render")}

    # --- stages ---------------------------------------------------------------------------------
    def extract_reference(self, image: np.ndarray, source: str = "photo") -> PoseSequence:
        """The reference skeleton of the photo (MediaPipe, bundled weights); ``source`` names the
        photo in errors."""
        from csg.extract import extract_pose

        return extract_pose(image, source=source)

    def generate_poses(self, wav: np.ndarray, sr: int, ref_pose: PoseSequence, *,
                       generator=None, guidance: str | None = None, progress: bool = True,
                       callback: Callable | None = None) -> PoseSequence:
        """Stage 1: speech -> skeletons on the reference canvas, T = round(duration * fps)."""
        s1 = self.config.stage1
        if generator is None:
            generator = self.generators()["audio2pose"]
        ref = ref_pose.frame(0).replace(fps=self.config.fps)
        return self.audio2pose(wav, sr, ref, steps=s1.steps, cfg_scale=s1.cfg_scale,
                               generator=generator, guide=self.guide(guidance),
                               progress=progress, callback=callback)

    def prepare(self, image: np.ndarray, ref_pose: PoseSequence, *,
                renderer: str | None = None) -> Prepared:
        """Once per photo: resize it to the working size, scale its skeleton there and let the
        renderer build its state (protocol v2 ``prepare``)."""
        check_pose_matches(ref_pose, image.shape[:2], "reference pose")
        work = resize_to_working(image, self.config.render.max_side)
        h, w = work.shape[:2]
        ref_work = rescale_pose(ref_pose.frame(0), h, w)
        state = self.renderer(renderer).prepare(work, ref_work)
        return Prepared(work, ref_work, state)

    def render_frames(self, image: np.ndarray | Prepared, poses: PoseSequence,
                      ref_pose: PoseSequence | None = None, *, renderer: str | None = None,
                      generator=None, audio: np.ndarray | None = None, sr: int = 16000,
                      progress: bool = True, callback: Callable | None = None,
                      chunk: int = 16) -> Iterator[np.ndarray]:
        """Stage 2: yields (n, h, w, 3) uint8 chunks at the working size.

        ``image`` is the photo (then ``ref_pose`` is its skeleton on the photo's canvas) or what
        :meth:`prepare` returned. ``poses`` are on the photo's canvas; ``audio`` (N,) at ``sr`` is
        handed to the renderer at 16 kHz, aligned with frame 0.
        """
        from csg.audio import SAMPLE_RATE, resample

        if isinstance(image, Prepared):
            prepared = image
        else:
            if ref_pose is None:
                ref_pose = self.extract_reference(image)
            check_pose_matches(poses, image.shape[:2], "poses")
            prepared = self.prepare(image, ref_pose, renderer=renderer)
        r = self.renderer(renderer)
        if generator is None and uses_generator(r):
            generator = self.generators()["render"]
        if audio is not None:
            audio = resample(np.asarray(audio, np.float32), int(sr), SAMPLE_RATE)
        h, w = prepared.size_hw
        yield from r.render(
            prepared.state, rescale_pose(poses, h, w), audio=audio, generator=generator,
            callback=callback, progress=progress, chunk=chunk)

    def __call__(self, ref_image: np.ndarray, audio: np.ndarray, *, sr: int = 16000,
                 ref_pose: PoseSequence | None = None, poses: PoseSequence | None = None,
                 seed: int | None = None, generator=None, render_generator=None,
                 renderer: str | None = None, guidance: str | None = None,
                 callback: Callable | None = None, progress: bool = False,
                 output_type: str = "np", chunk: int = 16) -> CoSpeechOutput:
        """Run both stages. ``poses`` skips stage 1 (the edit-and-re-render workflow).

        Randomness: ``seed`` (default: the config's) gives each stage its own generator
        (:meth:`generators`); ``generator`` / ``render_generator`` replace stage 1's / stage 2's.
        ``output_type="iterator"`` returns the frames as a lazy iterator of chunks; the renderer is
        built (its options validated) and the photo prepared before this returns.
        """
        if output_type not in ("np", "iterator"):
            raise ValueError(f"output_type must be 'np' or 'iterator', got {output_type!r}")
        gens = self.generators(seed)
        generator = gens["audio2pose"] if generator is None else generator
        render_generator = gens["render"] if render_generator is None else render_generator
        self.renderer(renderer)  # fail on a bad renderer or option before any stage runs
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if ref_pose is None:
            ref_pose = self.extract_reference(ref_image)
        else:
            check_pose_matches(ref_pose, ref_image.shape[:2], "reference pose")
        timings["extract"] = time.perf_counter() - t0
        if poses is None:
            t0 = time.perf_counter()
            poses = self.generate_poses(audio, sr, ref_pose, generator=generator,
                                        guidance=guidance, progress=progress)
            timings["audio2pose"] = time.perf_counter() - t0
        else:
            check_pose_matches(poses, ref_image.shape[:2], "poses")
        t0 = time.perf_counter()
        prepared = self.prepare(ref_image, ref_pose, renderer=renderer)
        timings["prepare"] = time.perf_counter() - t0
        frames = self.render_frames(prepared, poses, renderer=renderer,
                                    generator=render_generator, audio=audio, sr=sr,
                                    progress=progress, callback=callback, chunk=chunk)
        if output_type == "iterator":
            return CoSpeechOutput(poses, frames, timings)
        t0 = time.perf_counter()
        stacked = np.concatenate(list(frames), axis=0)
        timings["render"] = time.perf_counter() - t0
        return CoSpeechOutput(poses, stacked, timings)


def uses_generator(renderer: Any) -> bool:
    """Whether ``renderer`` draws from the ``generator`` it is given: its ``uses_generator``
    attribute (protocol v2, :class:`pose2video.base.Renderer`), True when it does not say. For
    one that does not (``warp``) the pipeline builds no torch generator, so ``csg run`` never
    imports torch in its main process (stage 1 runs in a worker, :mod:`pipeline.worker`)."""
    return bool(getattr(renderer, "uses_generator", True))


def _jsonable(options: dict[str, Any], what: str) -> dict[str, Any]:
    """``options`` as plain JSON values (dataclasses as dicts, paths as strings)."""
    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, Path):
            return str(v)
        import dataclasses

        if dataclasses.is_dataclass(v):
            return conv(to_dict(v))
        raise CsgError(f"{what}: {type(v).__name__} value {v!r} cannot be saved in the component "
                       "index")
    return conv(options)


_WEIGHT_KEYS = ("weights", "checkpoint", "base_model", "controlnet", "motion_adapter",
                "ip_adapter", "vae", "model", "codec_path")


def _is_weight_key(key: str) -> bool:
    return key in _WEIGHT_KEYS or key.endswith(("_path", "_weights", "_checkpoint", "_model"))


def _copy_renderer_weights(options: dict[str, Any], folder: Path) -> dict[str, str]:
    """The renderer's weight references (options such as ``weights``, ``controlnet``,
    ``codec_path``). Local files or folders are copied to ``folder/renderer/<key>`` and the
    option (in ``options``, changed in place) and the returned entry point there, so the saved
    pipeline is self-contained; hub ids and "" (a renderer's embedded default) are kept as given."""
    import shutil

    weights: dict[str, str] = {}
    for key, value in list(options.items()):
        if not (_is_weight_key(key) and isinstance(value, str)):
            continue
        src = Path(value).expanduser()
        if value and src.exists():
            rel = f"{RENDERER_DIR}/{key}"
            dst = folder / rel
            if src.resolve() == dst.resolve() or dst.resolve() in src.resolve().parents:
                rel = str(src.resolve().relative_to(folder.resolve()))  # saved here already
                options[key] = weights[key] = rel
                continue
            if dst.exists():
                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                dst.mkdir()
                shutil.copy2(src, dst / src.name)
                rel = f"{rel}/{src.name}"
            options[key] = rel
            weights[key] = rel
        else:
            weights[key] = value
    return weights


def _resolve_folder(path_or_id: str | Path) -> Path:
    """A local folder, or a hub id resolved from the local cache only (never downloads):
    :func:`csg.hub.resolve_folder`, the one resolver."""
    from csg.hub import resolve_folder

    return resolve_folder(path_or_id, what="checkpoint")
