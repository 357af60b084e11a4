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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from csg.errors import ConfigError, WeightsNotFoundError
from csg.pose import PoseSequence

from .base import ProgressBar, ProgressCallback, check_inputs, reference_pose_for, window_bounds

log = logging.getLogger(__name__)

INITS = ("warp", "noise")


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
    window: int = 8  # frames per yielded window (and per AnimateDiff call)
    device: str = "cpu"  # "cuda", "cuda:1", "mps", ...
    dtype: str = "float32"  # "float16" on GPUs
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


def render_size(size_hw: tuple[int, int], resolution: int, multiple: int = 8) -> tuple[int, int]:
    """(h, w) with the long side ``resolution``, the aspect kept, both multiples of ``multiple``."""
    h, w = size_hw
    f = resolution / max(h, w)
    return (max(multiple, int(round(h * f / multiple)) * multiple),
            max(multiple, int(round(w * f / multiple)) * multiple))


def _from_pretrained(cls: Any, path_or_id: str, field: str, cfg: DiffusersConfig,
                     **kwargs: Any) -> Any:
    """``cls.from_pretrained`` offline unless allowed; missing weights -> WeightsNotFoundError."""
    import torch

    try:
        return cls.from_pretrained(path_or_id, local_files_only=not cfg.allow_download,
                                   torch_dtype=getattr(torch, cfg.dtype), **kwargs)
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

    def __init__(self, config: DiffusersConfig | None = None, *,
                 components: dict[str, Any] | None = None) -> None:
        self.config = config or DiffusersConfig()
        self._components = components
        self._pipe: Any = None

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
                                                   cfg)
        if video and "motion_adapter" not in comps:
            comps["motion_adapter"] = _from_pretrained(MotionAdapter, cfg.motion_adapter,
                                                       "motion_adapter", cfg)
        extra = {} if video else {"safety_checker": None, "feature_extractor": None,
                                  "requires_safety_checker": False}
        if self._components is not None and "unet" in comps:
            if video:
                comps.setdefault("feature_extractor", None)
                comps.setdefault("image_encoder", None)
            pipe = cls(**comps, **extra)
        else:
            pipe = _from_pretrained(cls, cfg.base_model, "base_model", cfg, **comps, **extra)
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
        pipe = pipe.to(torch.device(cfg.device))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # --- rendering -------------------------------------------------------------------------------
    def render(self, ref_image: np.ndarray, poses: PoseSequence, *,
               ref_pose: PoseSequence | None = None, audio: np.ndarray | None = None,
               generator: Any = None, callback: ProgressCallback | None = None,
               progress: bool = True) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 windows (see :class:`pose2video.base.Renderer`).

        generator: a ``torch.Generator``; one seed is drawn from it and reused for every frame
        (same noise each frame: steadier video). None: seed 0.
        """
        import torch

        check_inputs(ref_image, poses, ref_pose)
        cfg = self.config
        pipe = self.pipeline()
        seed = 0 if generator is None else int(torch.randint(0, 2**31 - 1, (1,),
                                                             generator=generator))
        warp_frames = None
        drive = poses
        if cfg.init == "warp":
            from .warp import WarpConfig, WarpRenderer
            from csg.config import from_dict

            ref_pose = reference_pose_for(ref_image, ref_pose)
            warp = WarpRenderer(from_dict(WarpConfig, dict(cfg.warp or {}, window=cfg.window),
                                          "diffusers.warp"))
            drive = warp.driving_poses(poses, ref_pose)
            warp_frames = warp.render(ref_image, poses, ref_pose=ref_pose, progress=False)
        size = render_size(ref_image.shape[:2], cfg.resolution)
        with ProgressBar(len(poses), progress, "diffusers") as bar:
            for a, b in window_bounds(len(poses), cfg.window):
                init = next(warp_frames) if warp_frames is not None else None
                frames = self._window(pipe, ref_image, drive.keypoints[a:b], init, size, seed)
                bar.update(b - a)
                if callback is not None:
                    callback(b, len(poses))
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
        dev = torch.device(cfg.device)
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
