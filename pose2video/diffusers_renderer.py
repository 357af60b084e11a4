"""``diffusers``: an adapter (not a fork) over diffusers' ControlNet and AnimateDiff pipelines.

Each frame's skeleton is drawn as an OpenPose image (:func:`csg.draw.draw_pose`) and fed to a
ControlNet-openpose. Identity comes from the photo in one or both of two ways:

- ``init: warp`` (default): the ``warp`` renderer's frame is the img2img start and ``strength`` says
  how much the diffusion may repaint it (low: faithful, high: free);
- ``ip_adapter``: IP-Adapter weights, with the photo as the image prompt.

With ``motion_adapter`` set, windows of frames go through AnimateDiff (video-to-video with
ControlNet when ``init: warp``, else text-to-video) for temporal coherence; otherwise frames are
rendered one by one with the same noise seed, which limits flicker.

Weights are local folders or hub ids; nothing is downloaded unless ``allow_download: true``. A
missing model raises :class:`csg.errors.WeightsNotFoundError` naming the field and the fix.

Protocol v2 (:mod:`pose2video.base`): :meth:`DiffusersRenderer.prepare` loads the pipeline and,
with ``init: warp``, prepares the warp renderer's rig once per photo; :meth:`render` runs the model
window by window (``window`` frames per AnimateDiff call, 1 frame at a time otherwise) and streams
chunks of ``chunk`` frames. ``device`` / ``dtype`` come from the factory keywords (the run's
device, ``--device``); dtype None is float16 on CUDA, float32 elsewhere.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from csg.errors import ConfigError, WeightsNotFoundError
from csg.pose import PoseSequence

from .base import (DEFAULT_CHUNK, ProgressBar, ProgressCallback, check_audio, check_canvas,
                   check_inputs, config_from_options, rechunk, reference_pose_for, window_bounds)

log = logging.getLogger(__name__)

INITS = ("warp", "noise")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class DiffusersConfig:
    """Options of the ``diffusers`` renderer (``configs/pose2video/diffusers.yaml``)."""

    base_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # SD 1.5 folder or hub id
    controlnet: str = "lllyasviel/control_v11p_sd15_openpose"  # ControlNet-openpose folder or id
    motion_adapter: str | None = None  # AnimateDiff motion adapter; None: frame by frame
    ip_adapter: str | None = None  # IP-Adapter repo/folder (e.g. h94/IP-Adapter); None: unused
    ip_adapter_subfolder: str = "models"
    ip_adapter_weight_name: str = "ip-adapter_sd15.bin"
    ip_adapter_scale: float = 0.6
    init: str = "warp"  # "warp": img2img from the warp renderer's frames; "noise": from scratch
    strength: float = 0.45  # img2img strength with init=warp (0 keeps the warp, 1 ignores it)
    prompt: str = "a photo of a person talking, natural light, sharp, detailed hands and face"
    negative_prompt: str = "blurry, deformed, extra fingers, bad hands, distorted face"
    steps: int = 20  # denoising steps
    guidance_scale: float = 5.0  # classifier-free guidance weight
    controlnet_scale: float = 1.0
    resolution: int = 512  # long side the diffusion runs at (multiple of 64); resized back
    window: int = 8  # frames per AnimateDiff call (the model's temporal window)
    allow_download: bool = False  # let from_pretrained reach the hub
    warp: dict | None = None  # options of the warp renderer used for init=warp

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"diffusers config: init must be one of {', '.join(INITS)}, "
                              f"got {self.init!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ConfigError(f"diffusers config: strength must be in (0, 1], got {self.strength}")
        if self.resolution < 8 or self.steps < 1 or self.window < 1:
            raise ConfigError("diffusers config: resolution >= 8, steps >= 1 and window >= 1")


@dataclass
class DiffusersState:
    """What :meth:`DiffusersRenderer.prepare` builds once per photo."""

    image: np.ndarray  # (H, W, 3) uint8
    ref_pose: PoseSequence | None  # the photo's skeleton (needed for init=warp)
    warp: Any = None  # (WarpRenderer, WarpState) for init=warp

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.image.shape[:2]


def render_size(size_hw: tuple[int, int], resolution: int, multiple: int = 8) -> tuple[int, int]:
    """(h, w) with the long side ``resolution``, the aspect kept, both multiples of ``multiple``."""
    h, w = size_hw
    f = resolution / max(h, w)
    return (max(multiple, int(round(h * f / multiple)) * multiple),
            max(multiple, int(round(w * f / multiple)) * multiple))


def _from_pretrained(cls: Any, path_or_id: str, field: str, cfg: DiffusersConfig, dtype: str,
                     **kwargs: Any) -> Any:
    """``cls.from_pretrained`` offline unless allowed; missing weights -> WeightsNotFoundError."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # hub deprecation chatter would precede our one line
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return cls.from_pretrained(path_or_id, local_files_only=not cfg.allow_download,
                                       torch_dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsNotFoundError(
            f"diffusers renderer: {field}={path_or_id!r} is not available locally ({first[:160]}); "
            f"set {field} in configs/pose2video/diffusers.yaml to a local folder, or download it "
            f"once with `huggingface-cli download {path_or_id}` (or set allow_download: true)"
        ) from None


class DiffusersRenderer:
    """The ``diffusers`` renderer. ``components`` (unet, controlnet, vae, text_encoder, tokenizer,
    scheduler, optional motion_adapter) replace loading from ``base_model`` / ``controlnet``."""

    name = "diffusers"
    needs = "ControlNet weights"
    overlap = 0  # windows are rendered independently (same seed each)

    def __init__(self, config: DiffusersConfig | None = None, *,
                 components: dict[str, Any] | None = None, device: str | None = None,
                 dtype: str | None = None) -> None:
        self.config = config or DiffusersConfig()
        self._components = components
        self._pipe: Any = None
        self.device = device or "cpu"
        self.dtype = dtype or ("float16" if str(self.device).startswith("cuda") else "float32")
        if self.dtype not in DTYPES:
            raise ConfigError(f"diffusers renderer: dtype must be one of {', '.join(DTYPES)}, "
                              f"got {self.dtype!r}")
        video = self.config.motion_adapter is not None or "motion_adapter" in (components or {})
        self.window = self.config.window if video else 1

    # --- loading ---------------------------------------------------------------------------------
    def pipeline(self) -> Any:
        """The diffusers pipeline, built on first use."""
        if self._pipe is None:
            self._pipe = self._build()
        return self._pipe

    def _pipeline_class(self, video: bool) -> Any:
        import diffusers as d

        if video:
            return (d.AnimateDiffVideoToVideoControlNetPipeline if self.config.init == "warp"
                    else d.AnimateDiffControlNetPipeline)
        return (d.StableDiffusionControlNetImg2ImgPipeline if self.config.init == "warp"
                else d.StableDiffusionControlNetPipeline)

    def _build(self) -> Any:
        import torch
        from diffusers import ControlNetModel, MotionAdapter

        cfg = self.config
        comps = dict(self._components or {})
        video = cfg.motion_adapter is not None or "motion_adapter" in comps
        cls = self._pipeline_class(video)
        if "controlnet" not in comps:
            comps["controlnet"] = _from_pretrained(ControlNetModel, cfg.controlnet, "controlnet",
                                                   cfg, self.dtype)
        if video and "motion_adapter" not in comps:
            comps["motion_adapter"] = _from_pretrained(MotionAdapter, cfg.motion_adapter,
                                                       "motion_adapter", cfg, self.dtype)
        extra = {} if video else {"safety_checker": None, "feature_extractor": None,
                                  "requires_safety_checker": False}
        if self._components is not None and "unet" in comps:
            if video:
                comps.setdefault("feature_extractor", None)
                comps.setdefault("image_encoder", None)
            pipe = cls(**comps, **extra)
        else:
            pipe = _from_pretrained(cls, cfg.base_model, "base_model", cfg, self.dtype, **comps,
                                    **extra)
        if cfg.ip_adapter:
            try:
                pipe.load_ip_adapter(cfg.ip_adapter, subfolder=cfg.ip_adapter_subfolder,
                                     weight_name=cfg.ip_adapter_weight_name,
                                     local_files_only=not cfg.allow_download)
            except (OSError, ValueError) as e:
                raise WeightsNotFoundError(
                    f"diffusers renderer: ip_adapter={cfg.ip_adapter!r} "
                    f"({cfg.ip_adapter_subfolder}/{cfg.ip_adapter_weight_name}) is not available "
                    f"locally ({str(e).splitlines()[0][:120]}); download it or set ip_adapter: "
                    "null") from None
            pipe.set_ip_adapter_scale(cfg.ip_adapter_scale)
        pipe = pipe.to(torch.device(self.device))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # --- rendering (protocol v2) -----------------------------------------------------------------
    def prepare(self, ref_image: np.ndarray, ref_pose: PoseSequence | None = None) -> DiffusersState:
        """Once per photo: validate, load the pipeline, and with ``init: warp`` extract the
        skeleton (when None) and build the warp renderer's rig."""
        img = np.asarray(ref_image)
        _check_image(img)
        if ref_pose is not None:
            check_inputs(img, ref_pose)
        self.pipeline()
        warp = None
        if self.config.init == "warp":
            from .warp import WarpConfig, WarpRenderer

            ref_pose = reference_pose_for(img, ref_pose)
            w = WarpRenderer(config_from_options(WarpConfig, dict(self.config.warp or {})))
            warp = (w, w.prepare(img, ref_pose))
        return DiffusersState(img, ref_pose, warp)

    def render(self, state: DiffusersState, poses: PoseSequence, *,
               audio: np.ndarray | None = None, generator: Any = None,
               callback: ProgressCallback | None = None, progress: bool = True,
               chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 chunks of at most ``chunk`` frames (:class:`~pose2video.base.
        Renderer`). audio: accepted and unused. generator: a ``torch.Generator``; one seed is drawn
        from it and reused for every model window (same noise each window: steadier video); None:
        seed 0."""
        if not isinstance(state, DiffusersState):
            raise TypeError("render(state, poses): state comes from prepare(ref_image, ref_pose)")
        check_canvas(poses, state.size_hw)
        check_audio(audio)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return self._stream(state, poses, generator, callback, progress, chunk)

    def _stream(self, state, poses, generator, callback, progress, chunk):
        import torch

        pipe = self.pipeline()
        seed = 0 if generator is None else int(torch.randint(0, 2**31 - 1, (1,),
                                                             generator=generator))
        drive, warp_frames = poses, None
        if state.warp is not None:
            w, wstate = state.warp
            drive = w.driving_poses(poses, wstate.ref_pose)
            warp_frames = w.render(wstate, poses, progress=False, chunk=self.window)
        size = render_size(state.size_hw, self.config.resolution)

        def windows():
            for a, b in window_bounds(len(poses), self.window):
                init = next(warp_frames) if warp_frames is not None else None
                yield self._window(pipe, state.image, drive.keypoints[a:b], init, size, seed)

        done = 0
        with ProgressBar(len(poses), progress, "diffusers") as bar:
            for frames in rechunk(windows(), chunk):
                done += len(frames)
                bar.update(len(frames))
                if callback is not None:
                    callback(done, len(poses))
                yield frames

    def _window(self, pipe: Any, ref_image: np.ndarray, kps: np.ndarray,
                init: np.ndarray | None, size: tuple[int, int], seed: int) -> np.ndarray:
        """(n, H, W, 3) uint8 for one window of keypoints (n, 133, 3)."""
        import cv2
        import torch
        from PIL import Image

        from csg.draw import draw_pose

        cfg = self.config
        h, w = ref_image.shape[:2]
        sh, sw = size

        def pil(img: np.ndarray) -> Image.Image:
            return Image.fromarray(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA))

        controls = [pil(draw_pose(k, (h, w))) for k in kps]
        # img2img runs int(steps * strength) steps: keep at least one
        steps = max(cfg.steps, int(np.ceil(1.0 / cfg.strength))) if init is not None else cfg.steps
        common: dict[str, Any] = dict(prompt=cfg.prompt, negative_prompt=cfg.negative_prompt,
                                      num_inference_steps=steps,
                                      guidance_scale=cfg.guidance_scale,
                                      controlnet_conditioning_scale=cfg.controlnet_scale,
                                      height=sh, width=sw, output_type="np")
        if cfg.ip_adapter:
            common["ip_adapter_image"] = pil(ref_image)
        dev = torch.device(self.device)
        # a fresh scheduler per call: img2img leaves a begin index behind that changes the next run
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config)
        if hasattr(pipe, "motion_adapter"):
            extra = dict(conditioning_frames=controls, num_frames=len(kps))
            if init is not None:
                extra = dict(conditioning_frames=controls, video=[pil(f) for f in init],
                             strength=cfg.strength)
            gen = torch.Generator(dev).manual_seed(seed)
            out = np.asarray(pipe(**common, **extra, generator=gen).frames[0])
        else:
            outs = []
            for i, control in enumerate(controls):
                gen = torch.Generator(dev).manual_seed(seed)
                if init is not None:
                    res = pipe(**common, image=pil(init[i]), control_image=control,
                               strength=cfg.strength, generator=gen)
                else:
                    res = pipe(**common, image=control, generator=gen)
                outs.append(np.asarray(res.images[0]))
            out = np.stack(outs)
        out = np.clip(np.asarray(out, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
        if out.shape[1:3] != (h, w):
            out = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in out])
        return out


def _check_image(img: np.ndarray) -> None:
    from csg.errors import InputError

    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"reference image: expected (H, W, 3) uint8 RGB, got {img.shape} "
                         f"{img.dtype}")


def diffusers_factory(*, device: str | None = None, dtype: str | None = None,
                      components: dict[str, Any] | None = None,
                      **options: Any) -> DiffusersRenderer:
    """Registry factory (protocol v2): ``options`` are :class:`DiffusersConfig` fields (strict);
    ``components`` (tiny or preloaded diffusers modules) replace loading from the hub / folders."""
    return DiffusersRenderer(config_from_options(DiffusersConfig, options), components=components,
                             device=device, dtype=dtype)
