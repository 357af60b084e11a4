"""``CoSpeechPipeline``: photo + speech -> skeleton sequence -> frames, shaped like a diffusers pipeline.

::

    pipe = CoSpeechPipeline.from_pretrained()          # embedded defaults, no download
    out = pipe(image, wav, sr=16000, generator=torch.Generator().manual_seed(0))
    out.poses.save("talk.pose.json"); out.frames        # (T, H, W, 3) uint8

Skeletons are on the canvas of the photo as given (so an edited JSON matches the photo the user
has); the renderer works on a copy resized to ``render.max_side`` and the poses are scaled to it.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from csg.config import to_dict
from csg.errors import CsgError, InputError, WeightsNotFoundError
from csg.pose import PoseSequence, atomic_write_text

from .config import RunConfig, load_run_config

logger = logging.getLogger(__name__)
PIPELINE_FILE = "csg_pipeline.json"


@dataclass
class CoSpeechOutput:
    """What a run produced. ``frames`` is (T, H, W, 3) uint8, or an iterator of (n, H, W, 3)
    windows when ``output_type="iterator"`` (bounded memory for long inputs)."""

    poses: PoseSequence
    frames: Any
    timings: dict[str, float] = field(default_factory=dict)


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H, W) of the photo resized so the longer side is <= ``max_side``, both sides even.

    ``max_side = 0`` keeps the size (rounded down to even, which H.264 needs).
    """
    scale = 1.0 if max_side <= 0 else min(1.0, max_side / max(height, width))
    h = max(2, int(round(height * scale)) // 2 * 2)
    w = max(2, int(round(width * scale)) // 2 * 2)
    return h, w


def rescale_pose(pose: PoseSequence, height: int, width: int) -> PoseSequence:
    """Map keypoints from ``pose``'s canvas onto a ``height`` x ``width`` canvas (scores kept)."""
    k = pose.keypoints.copy()
    k[..., 0] *= width / pose.width
    k[..., 1] *= height / pose.height
    return pose.replace(keypoints=k, width=width, height=height)


def check_pose_matches(pose: PoseSequence, image_hw: tuple[int, int], source: str) -> None:
    """Refuse a skeleton whose canvas is not the photo's (editing tools keep the canvas)."""
    h, w = image_hw
    if (pose.height, pose.width) != (h, w):
        raise InputError(f"{source}: skeleton canvas is {pose.width}x{pose.height} but the photo is "
                         f"{w}x{h}; extract the reference from this photo (csg pose extract) or "
                         "generate the skeleton with it")


class CoSpeechPipeline:
    """Holds the stage-1 model (loaded on first use), its sync classifiers and a renderer."""

    def __init__(self, *, config: RunConfig | None = None, audio2pose: Any = None,
                 renderer: Any = None, stage1_dir: str | Path | None = None):
        self.config = config or load_run_config()
        self._audio2pose = audio2pose
        self._renderers: dict[str, Any] = {}
        if renderer is not None:
            self._renderers[getattr(renderer, "name", self.config.render.renderer)] = renderer
        self.stage1_dir = Path(stage1_dir) if stage1_dir else None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig | str | Path | None = None, overrides=(),
                    **components: Any) -> "CoSpeechPipeline":
        """From a :class:`RunConfig`, a YAML path, or ``configs/default.yaml``; ``overrides`` are
        ``key=value`` strings. Models are loaded lazily, on first use."""
        if not isinstance(config, RunConfig):
            config = load_run_config(config, overrides)
        elif overrides:
            from csg.config import replace_config

            config = replace_config(config, overrides)
        return cls(config=config, **components)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path | None = None,
                        config: RunConfig | None = None, **components: Any) -> "CoSpeechPipeline":
        """A folder written by :meth:`save_pretrained`, a stage-1 checkpoint folder, a hub id
        already in the local cache, or ``None`` for the embedded defaults."""
        config = config or load_run_config()
        if path_or_id is None:
            return cls(config=config, **components)
        folder = _resolve_folder(path_or_id)
        spec = folder / PIPELINE_FILE
        if spec.is_file():
            data = json.loads(spec.read_text())
            from csg.config import from_dict

            saved = from_dict(RunConfig, data.get("run_config", {}), str(spec))
            return cls(config=saved, stage1_dir=folder / data.get("audio2pose", "audio2pose"),
                       **components)
        return cls(config=config, stage1_dir=folder, **components)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the stage-1 model, its classifiers and the run config to ``folder``."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        src = self._stage1_folder()
        dst = folder / "audio2pose"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.md"))
        cfg = replace(self.config, stage1=replace(self.config.stage1, checkpoint=None))
        atomic_write_text(folder / PIPELINE_FILE, json.dumps(
            {"format": "csg.pipeline", "version": 1, "audio2pose": "audio2pose",
             "run_config": to_dict(cfg)}, indent=2) + "\n")
        return folder

    # --- components -----------------------------------------------------------------------------
    def _stage1_folder(self) -> Path:
        if self.stage1_dir is not None:
            return self.stage1_dir
        if self.config.stage1.checkpoint:
            return _resolve_folder(self.config.stage1.checkpoint)
        from audio2pose import default_checkpoint_dir

        return Path(default_checkpoint_dir())

    @property
    def audio2pose(self):
        """The stage-1 pipeline, loaded on first use."""
        if self._audio2pose is None:
            from audio2pose import Audio2PosePipeline

            self._audio2pose = Audio2PosePipeline.from_pretrained(self._stage1_folder(),
                                                                  device=self.config.device)
        return self._audio2pose

    def renderer(self, name: str | None = None):
        """The renderer ``name`` (default: the config's), built once from the registry."""
        from pose2video import get_renderer

        name = name or self.config.render.renderer
        if name not in self._renderers:
            kwargs: dict[str, Any] = {}
            if self.config.render.config and name == self.config.render.renderer:
                kwargs["config"] = self.config.render.config
            self._renderers[name] = get_renderer(name, **kwargs)
        return self._renderers[name]

    def guide(self, mode: str | None = None):
        """The PCE sync-guidance hook for ``mode`` (none | sg | dg), or None."""
        s1 = self.config.stage1
        mode = (mode or s1.guidance).lower()
        if mode not in ("none", "sg", "dg"):
            raise CsgError(f"guidance must be none, sg or dg, got {mode!r}")
        if mode == "none":
            return None
        try:
            from audio2pose.classifier import load_guide
        except ImportError as e:
            raise CsgError(f"sync guidance '{mode}' is not available: {e}") from None
        return load_guide(mode, self._stage1_folder(), lambda_nonface=s1.lambda_nonface,
                          lambda_face=s1.lambda_face, lambda_diff=s1.lambda_diff,
                          guided_fraction=s1.guided_fraction, device=self.config.device,
                          dg_form=s1.dg_form)

    # --- stages ---------------------------------------------------------------------------------
    def extract_reference(self, image: np.ndarray) -> PoseSequence:
        """The reference skeleton of the photo (MediaPipe, bundled weights)."""
        from csg.extract import extract_pose

        return extract_pose(image, source="photo")

    def generate_poses(self, wav: np.ndarray, sr: int, ref_pose: PoseSequence, *,
                       generator=None, guidance: str | None = None, progress: bool = True,
                       callback: Callable | None = None) -> PoseSequence:
        """Stage 1: speech -> skeletons on the reference canvas, T = round(duration * fps)."""
        s1 = self.config.stage1
        ref = ref_pose.frame(0).replace(fps=self.config.fps)
        return self.audio2pose(wav, sr, ref, steps=s1.steps, cfg_scale=s1.cfg_scale,
                               generator=generator, guide=self.guide(guidance),
                               progress=progress, callback=callback)

    def render_frames(self, image: np.ndarray, poses: PoseSequence, ref_pose: PoseSequence, *,
                      renderer: str | None = None, generator=None, audio=None,
                      progress: bool = True, callback: Callable | None = None
                      ) -> Iterator[np.ndarray]:
        """Stage 2: yields (n, h, w, 3) uint8 windows at the working size."""
        import cv2

        h, w = working_size(image.shape[0], image.shape[1], self.config.render.max_side)
        work = image if (h, w) == image.shape[:2] else cv2.resize(image, (w, h),
                                                                 interpolation=cv2.INTER_AREA)
        yield from self.renderer(renderer).render(
            work, rescale_pose(poses, h, w), ref_pose=rescale_pose(ref_pose, h, w), audio=audio,
            generator=generator, callback=callback, progress=progress)

    def __call__(self, ref_image: np.ndarray, audio: np.ndarray, *, sr: int = 16000,
                 ref_pose: PoseSequence | None = None, poses: PoseSequence | None = None,
                 generator=None, renderer: str | None = None, guidance: str | None = None,
                 callback: Callable | None = None, progress: bool = False,
                 output_type: str = "np") -> CoSpeechOutput:
        """Run both stages. ``poses`` skips stage 1 (the edit-and-re-render workflow)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if ref_pose is None:
            ref_pose = self.extract_reference(ref_image)
        timings["extract"] = time.perf_counter() - t0
        if poses is None:
            t0 = time.perf_counter()
            poses = self.generate_poses(audio, sr, ref_pose, generator=generator,
                                        guidance=guidance, progress=progress)
            timings["audio2pose"] = time.perf_counter() - t0
        else:
            check_pose_matches(poses, ref_image.shape[:2], "poses")
        frames = self.render_frames(ref_image, poses, ref_pose, renderer=renderer,
                                    generator=generator, audio=audio, progress=progress,
                                    callback=callback)
        if output_type == "iterator":
            return CoSpeechOutput(poses, frames, timings)
        if output_type != "np":
            raise ValueError(f"output_type must be 'np' or 'iterator', got {output_type!r}")
        t0 = time.perf_counter()
        stacked = np.concatenate(list(frames), axis=0)
        timings["render"] = time.perf_counter() - t0
        return CoSpeechOutput(poses, stacked, timings)


def _resolve_folder(path_or_id: str | Path) -> Path:
    """A local folder, or a hub id resolved from the local cache only (never downloads)."""
    p = Path(path_or_id)
    if p.is_dir():
        return p
    if p.exists() or str(path_or_id).count("/") != 1:
        raise WeightsNotFoundError(f"{path_or_id}: checkpoint folder not found")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id), local_files_only=True))
    except Exception:  # noqa: BLE001 - any hub failure means: not available offline
        raise WeightsNotFoundError(
            f"{path_or_id}: not a local folder and not in the Hugging Face cache; download it "
            f"with `huggingface-cli download {path_or_id}` where there is internet, then pass "
            "the folder") from None
