"""The ``vdm`` renderer (protocol v2): photo + skeletons (+ speech) -> frames by latent diffusion.

``prepare(photo, ref_pose)`` resizes the photo to the working size (long side ``size``, both sides
multiples of 8 x patch; any photo size works, the output is resized back) and encodes it: the
reference latent, frame 0 of every window (UniVDM, PAHA §4.1.1).

``render(state, poses, audio=...)`` covers the sequence with model windows of ``window`` frames:
the first window samples ``window`` new frames; each later window takes the previous window's last
``overlap`` latents *exactly* as clean context frames (after the reference) and samples
``window - overlap`` new ones (PAHA B.4.1: first-frame-conditioned windows, no seams). Sampling is
DDIM through :func:`csg.diffusion.sampling.ddim_sample` with classifier-free guidance on the pose
(``cfg_pose``) and the audio (``cfg_audio``) as nested :func:`~csg.diffusion.sampling.classifier_free`
wrappers. Memory holds one window of latents; frames are decoded window by window and streamed in
chunks of at most ``chunk``. All noise comes from one CPU ``torch.Generator`` (seeded 0 when none is
given), so the same seed gives the same bytes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from csg.errors import WeightsNotFoundError
from csg.pose import PoseSequence

from ..base import CanvasMismatchError, ProgressBar, ProgressCallback, check_inputs, \
    reference_pose_for
from .config import VdmRenderConfig

log = logging.getLogger(__name__)

EMBEDDED = Path(__file__).resolve().parent.parent / "weights" / "vdm"
"""The embedded checkpoint (config.json, diffusion_pytorch_model.safetensors, vdm.json)."""
TRAIN_HINT = "csg train renderer --out {path}"


@dataclass
class VdmState:
    """What :meth:`VdmRenderer.prepare` builds once per photo."""

    size_hw: tuple[int, int]  # the photo (H, W)
    work_hw: tuple[int, int]  # working resolution (multiples of 8 x patch)
    ref_latent: Any  # (1, C, h, w) torch tensor
    ref_pose: np.ndarray  # (133, 3) on the working canvas
    box: tuple[int, int, int, int] | None = None  # (y0, x0, h, w) rendered crop of the photo; None: all
    photo: np.ndarray | None = None  # (H, W, 3) uint8, what surrounds the crop (or the model frame)
    keep: np.ndarray | None = None  # (h, w) bool on the crop: the photo's person's zone (background
    # "photo"); None: the model's frame everywhere in the crop
    feather: float = 0.0  # fade width of the zone, px on the crop (zone_feather)


def working_size(size_hw: tuple[int, int], long_side: int, multiple: int) -> tuple[int, int]:
    """(H', W'): long side ``long_side``, aspect kept as closely as multiples of ``multiple`` allow
    (each side at least ``multiple``)."""
    h, w = size_hw
    s = long_side / max(h, w)
    return (max(multiple, int(round(h * s / multiple)) * multiple),
            max(multiple, int(round(w * s / multiple)) * multiple))


def _in_box(kp: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """(..., 133, 3) skeletons moved into the crop ``box`` (y0, x0, h, w); None: unchanged."""
    if box is None:
        return kp
    out = np.array(kp, np.float32, copy=True)
    out[..., 0] -= box[1]
    out[..., 1] -= box[0]
    return out


def _paste(frames: np.ndarray, box: tuple[int, int, int, int] | None,
           photo: np.ndarray | None, zones: np.ndarray | None = None) -> np.ndarray:
    """(n, h, w, 3) frames of the crop ``box`` placed into ``photo`` (H, W, 3), faded into it over
    5 % of the crop's side along the edges inside the photo (no hard rectangle); box None: the
    frames cover the photo. ``zones`` (n, h, w) float alpha: the model's pixels only there (the
    photo's elsewhere). No box and no zones: the frames unchanged."""
    if box is None and zones is None:
        return frames
    H, W = photo.shape[:2]
    y0, x0, h, w = box or (0, 0, H, W)
    ramp = max(2.0, 0.05 * min(h, w))
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None]
    a = np.ones((h, w), np.float32)
    if y0 > 0:
        a = np.minimum(a, (yy + 0.5) / ramp)
    if y0 + h < H:
        a = np.minimum(a, (h - yy - 0.5) / ramp)
    if x0 > 0:
        a = np.minimum(a, (xx + 0.5) / ramp)
    if x0 + w < W:
        a = np.minimum(a, (w - xx - 0.5) / ramp)
    a = np.clip(a, 0.0, 1.0)[None, ..., None]
    if zones is not None:
        a = a * zones[..., None]
    out = np.repeat(photo[None], len(frames), 0)
    region = out[:, y0:y0 + h, x0:x0 + w].astype(np.float32)
    out[:, y0:y0 + h, x0:x0 + w] = np.round(region * (1 - a) + frames * a).astype(np.uint8)
    return out


ZONE_PAD = 0.05
"""Shoulder widths the skeleton zone grows by (render.background "photo"): 0.25 left a pale aura of
the model's background around head and hands (docs/vdm.md); 0.0 thins the limb capsules under the
fade's width."""


def _zones(keep: np.ndarray, kp: np.ndarray, feather: float) -> np.ndarray:
    """(n, h, w) float32 alpha of the model's pixels: the photo's person's zone ``keep`` (h, w)
    joined with each frame's skeleton zone (n, 133, 3 on the crop), faded in over ``feather`` px
    inside it (:func:`zone_feather`)."""
    from ..masks import skeleton_zone, soft_alpha

    return np.stack([soft_alpha(keep | skeleton_zone(f, keep.shape, pad=ZONE_PAD), feather)
                     for f in kp])


def zone_feather(ref_kp: np.ndarray, size_hw: tuple[int, int]) -> float:
    """Fade width of the background rule, px: 4 % of the crop's short side, at most a tenth of
    the person's shoulder width (:func:`pose2video.masks.zone_unit`), so a small person's limbs
    (capsules 0.25 shoulder widths wide) keep an opaque core and fingertips (0.1 from the zone's
    edge) stay opaque."""
    from ..masks import zone_unit

    return max(1.0, min(0.04 * min(size_hw), 0.1 * zone_unit(ref_kp, size_hw)))


def scale_poses(kp: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """(..., 133, 3) pixel skeletons from a src canvas to a dst canvas (scores kept)."""
    out = np.array(kp, np.float32, copy=True)
    out[..., 0] *= dst_hw[1] / src_hw[1]
    out[..., 1] *= dst_hw[0] / src_hw[0]
    return out


def load_vdm(path: str | Path | None):
    """(model, note) from a trained folder (default: the embedded checkpoint).

    Raises :class:`WeightsNotFoundError` with one line naming the path and the training command.
    """
    import torch

    from .model import VdmDenoiser

    folder = Path(path) if path else EMBEDDED
    need = [folder / "config.json", folder / "vdm.json"]
    if not folder.is_dir() or not all(p.is_file() for p in need) or \
            not any(folder.glob("*.safetensors")):
        raise WeightsNotFoundError(
            f"{folder}: vdm weights not found (config.json, vdm.json, *.safetensors); train them "
            f"with `{TRAIN_HINT.format(path=folder)}`")
    model = VdmDenoiser.from_pretrained(str(folder), torch_dtype=torch.float32)
    note = json.loads((folder / "vdm.json").read_text())
    return model, note


class VdmRenderer:
    """Latent video diffusion renderer (module doc)."""

    name = "vdm"
    needs = "nothing (embedded checkpoint)"

    def __init__(self, config: VdmRenderConfig = VdmRenderConfig(), *, device: str = "cpu",
                 dtype: str | None = None, model=None, note: dict | None = None, codec=None):
        import torch

        from csg.features import AudioFeatureConfig
        from csg.config import from_dict

        self.config = config
        self.device = torch.device(device)
        self.dtype = {None: torch.float32, "float32": torch.float32, "float16": torch.float16,
                      "bfloat16": torch.bfloat16}[dtype]
        if model is None:
            model, note = load_vdm(config.weights or None)
        if next(model.parameters()).dtype != self.dtype:  # (diffusers warns on every dtype cast)
            model = model.to(dtype=self.dtype)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.note = dict(note or {})
        self.features = from_dict(AudioFeatureConfig, self.note.get("features", {}),
                                  "vdm.json features")
        if codec is None:
            from .codec import build_codec

            codec = build_codec(config.codec or self.note.get("codec", "taef2"),
                                config.codec_path or self.note.get("codec_path") or None,
                                device=device, dtype=self.dtype)
        self.codec = codec
        # sampler defaults: the option, else the checkpoint's vdm.json "render" (a few-step
        # student: 1 step, no CFG), else the teacher's 12 steps with pose CFG 2
        rd = self.note.get("render", {})
        self.steps = int(config.steps or rd.get("steps", 12))
        self.cfg_pose = float(config.cfg_pose or rd.get("cfg_pose", 2.0))
        self.cfg_audio = float(config.cfg_audio or rd.get("cfg_audio", 1.0))
        from .sparse import check_mode

        self.attention = check_mode(config.attention or self.model.config.get("attention", "dense"))
        self.attention_topk = int(config.attention_topk or self.model.config.get("attention_topk", 2))
        self.size = int(config.size or self.note.get("size", 256))
        self.framing = float(config.framing if config.framing > -2 else
                             self.note.get("framing", -1.0))
        if config.background not in ("photo", "model"):
            from csg.errors import ConfigError

            raise ConfigError(f"vdm: background must be 'photo' or 'model', got "
                              f"{config.background!r}")
        self.window = int(config.window or self.note.get("window", 8))
        self.overlap = int(config.overlap if config.overlap >= 0 else self.note.get("carry", 2))
        if not 0 <= self.overlap < self.window:
            from csg.errors import ConfigError

            raise ConfigError(f"vdm: overlap ({self.overlap}) must be in [0, window "
                              f"{self.window})")
        from .classifier import renderer_guidance  # PCE (render.guidance); None when "none"

        self.guidance, self._guide = renderer_guidance(config, device=device), None

    # --- protocol v2 ------------------------------------------------------------------------------
    def prepare(self, ref_image: np.ndarray, ref_pose: PoseSequence | None = None) -> VdmState:
        """Validate the photo, resize it to the working size and encode the reference latent."""
        import cv2
        import torch

        from csg.errors import InputError

        img = np.asarray(ref_image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InputError(f"reference image: expected (H, W, 3) uint8 RGB, got {img.shape} "
                             f"{img.dtype}")
        if ref_pose is not None:
            check_inputs(img, ref_pose)  # non-empty, canvas == photo size
        ref_pose = reference_pose_for(img, ref_pose)
        H, W = img.shape[:2]
        box = None
        if self.framing >= 0:  # the person's square, as the model's training clips were cut
            from csg.data.prepare import crop_box

            box = crop_box(ref_pose.keypoints, (H, W), (1, 1), self.framing)
            pts = ref_pose.keypoints[0][ref_pose.keypoints[0, :, 2] > 0.3, :2]
            y0, x0, h, w = box
            whole = len(pts) == 0 or pts[:, 0].min() < x0 or pts[:, 0].max() > x0 + w or \
                pts[:, 1].min() < y0 or pts[:, 1].max() > y0 + h  # the square cannot hold them
            box = None if whole or box == (0, 0, H, W) else box
        y0, x0, h, w = box or (0, 0, H, W)
        crop_ref = _in_box(ref_pose.keypoints[0], box)  # the photo's skeleton on the crop
        keep, feather = None, 0.0
        if self.config.background == "photo":  # the zone the photo's own person covers
            from ..masks import skeleton_zone
            from ..segment import person_mask

            keep = skeleton_zone(crop_ref, (h, w), pad=ZONE_PAD)
            feather = zone_feather(crop_ref, (h, w))
            seg = person_mask(img[y0:y0 + h, x0:x0 + w])
            if seg is not None:
                keep |= cv2.dilate((seg > 0.5).astype(np.uint8),
                                   np.ones((3, 3), np.uint8), iterations=max(1, h // 100)) > 0
        mult = 8 * self.model.config.patch_size
        work = working_size((h, w), self.size, mult)
        small = cv2.resize(img[y0:y0 + h, x0:x0 + w], (work[1], work[0]),
                           interpolation=cv2.INTER_AREA if work[0] < h else cv2.INTER_LINEAR)
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
        lat = self.codec.encode(x).to(self.device, self.dtype)
        kp = scale_poses(crop_ref, (h, w), work)
        photo = img.copy() if box or keep is not None else None
        return VdmState((H, W), work, lat, kp, box, photo, keep, feather)

    def render(self, state: VdmState, poses: PoseSequence, *, audio: np.ndarray | None = None,
               generator: Any = None, callback: ProgressCallback | None = None,
               progress: bool = True, chunk: int = 16) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 arrays, 1 <= n <= chunk, ``len(poses)`` frames in all."""
        from csg.errors import InputError

        if len(poses) == 0:
            raise InputError("pose: the sequence has no frames")
        H, W = state.size_hw
        if (poses.height, poses.width) != (H, W):
            raise CanvasMismatchError(
                f"pose: canvas is {poses.width}x{poses.height} (width x height) but the reference "
                f"photo is {W}x{H}; generate the skeleton for this photo, or fit it onto the photo "
                "with `csg render --retarget`")
        chunk = max(1, int(chunk))
        buf: list[np.ndarray] = []
        done = 0
        with ProgressBar(len(poses), progress, "vdm") as bar:
            for frames in self.render_windows(state, poses, audio=audio, generator=generator):
                buf.extend(frames)
                while len(buf) >= chunk:
                    out, buf = np.stack(buf[:chunk]), buf[chunk:]
                    done += len(out)
                    bar.update(len(out))
                    if callback is not None:
                        callback(done, len(poses))
                    yield out
            if buf:
                done += len(buf)
                bar.update(len(buf))
                if callback is not None:
                    callback(done, len(poses))
                yield np.stack(buf)

    # --- the model windows --------------------------------------------------------------------------
    def plan(self, num_frames: int) -> list[tuple[int, int, int]]:
        """[(start, stop, carried), ...]: window j samples frames [start, stop) given the
        ``carried`` frames before ``start`` as context (0 for the first window)."""
        from csg.diffusion.windows import plan_windows

        return [(w.new.start, w.new.stop, w.carried)
                for w in plan_windows(num_frames, self.window, self.overlap)]

    def render_windows(self, state: VdmState, poses: PoseSequence, *,
                       audio: np.ndarray | None = None, generator: Any = None,
                       on_window=None) -> Iterator[np.ndarray]:
        """Yield each model window's new frames, (n, H, W, 3) uint8. ``on_window(j, context,
        new_latents)`` (tests) sees the context latents given and the latents sampled."""
        import torch

        from .data import audio_tokens, pose_maps

        gen = _torch_generator(generator)
        T = len(poses)
        work = state.work_hw
        crop_hw = state.box[2:] if state.box else poses.size_hw
        crop_kp = _in_box(poses.keypoints, state.box)
        kp = scale_poses(crop_kp, crop_hw, work)
        has_audio = audio is not None and len(audio) > 0
        if has_audio:
            tok = torch.from_numpy(audio_tokens(audio, poses.fps, T, self.features))
        else:
            m = self.model.config
            tok = torch.zeros(T, 2 * m.audio_context + 1, m.audio_dim)
        ref_map = pose_maps(state.ref_pose[None], work, self.config.threshold)
        prev = None  # latents of the previous window (1, n, C, h, w)
        drawn, drawn_from = ref_map[:0], 0  # skeleton maps of the previous window, from frame
        for j, (a, b, k) in enumerate(self.plan(T)):
            carried = prev[:, prev.shape[1] - k:] if k else state.ref_latent[:, None][:, :0]
            context = torch.cat([state.ref_latent[:, None], carried], 1)
            # the carried frames' maps were drawn for the previous window: draw only the new ones
            kept = drawn[a - k - drawn_from:] if k else drawn[:0]
            drawn = torch.cat([kept, pose_maps(kp[a - k + len(kept):b], work,
                                               self.config.threshold)])
            drawn_from = a - k
            maps = torch.cat([ref_map, drawn])
            aud = torch.cat([torch.zeros_like(tok[:1]), tok[a - k:b]])
            from .classifier import window_guide  # PCE guide of this window, read by _sample

            self._guide = window_guide(self.guidance, kp[a:b], tok[a:b], work, has_audio)
            sparse = self.sparse_plan(np.concatenate([state.ref_pose[None], kp[a - k:b]]), work)
            new = self._sample(context, maps[None], aud[None], b - a, has_audio, gen, sparse)
            if on_window is not None:
                on_window(j, context, new)
            prev = torch.cat([carried, new], 1)
            yield _paste(self._decode(new[0], crop_hw), state.box, state.photo,
                         None if state.keep is None else
                         _zones(state.keep, crop_kp[a:b], state.feather))

    def sparse_plan(self, kp: np.ndarray, work_hw: tuple[int, int]):
        """The sparse cross-frame attention plan of one window (``kp``: its frames' skeletons,
        reference first, on the working canvas), or None for dense attention."""
        from .sparse import build_plan, plan_tensors

        p = self.model.config.patch_size
        plan = build_plan(kp, self.attention, self.attention_topk, work_hw,
                          (work_hw[0] // (8 * p), work_hw[1] // (8 * p)),
                          threshold=self.config.threshold)
        return None if plan is None else plan_tensors([plan], self.device)

    def _sample(self, context, maps, aud, n: int, has_audio: bool, gen, sparse=None):
        from csg.diffusion.sampling import ddim_sample, randn
        from csg.diffusion.schedule import NoiseSchedule, timesteps

        m = self.model
        mc = m.config
        dev, dt = self.device, self.dtype
        context, maps, aud = context.to(dev, dt), maps.to(dev, dt), aud.to(dev, dt)
        h, w = context.shape[-2:]
        fn = guided_denoiser(m, context, maps, aud, self.cfg_pose, self.cfg_audio,
                             has_audio=has_audio, sparse=sparse)
        schedule = NoiseSchedule.cosine(mc.num_train_timesteps, mc.prediction_type)
        ts = timesteps(mc.num_train_timesteps, self.steps, "trailing")
        x = randn((1, n, mc.latent_channels, h, w), gen, device=dev, dtype=dt)
        return ddim_sample(fn, x, ts, schedule, generator=gen, eta=self.config.eta,
                           guide=self._guide)

    def _decode(self, lat, size_hw: tuple[int, int]) -> np.ndarray:
        """(n, C, h, w) latents -> (n, H, W, 3) uint8 at the photo size."""
        import cv2
        import torch

        out = []
        for i in range(0, lat.shape[0], 4):
            x = self.codec.decode(lat[i:i + 4].float())
            out.append((x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
        frames = np.concatenate(out)
        H, W = size_hw
        if frames.shape[1:3] != (H, W):
            frames = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR)
                               for f in frames])
        del torch
        return frames


def guided_denoiser(model, context, maps, aud, cfg_pose: float, cfg_audio: float, *,
                    has_audio: bool = True, sparse=None):
    """``fn(x, t)`` for :func:`csg.diffusion.sampling.ddim_sample`: the vdm denoiser's prediction
    for the noisy frames ``x`` (B, n, C, h, w) given one window's context latents, skeleton maps and
    audio tokens (batch 1, expanded to B), with nested classifier-free guidance: pose outside
    (``cfg_pose``), audio inside (``cfg_audio``; off and the null audio used when ``has_audio`` is
    False). The renderer's sampler and the distillation teacher's."""
    import torch

    from csg.diffusion.sampling import classifier_free

    def model_fn(x, t, drop_pose, drop_audio):
        B = x.shape[0]
        rep = lambda y: y.expand(B, *y.shape[1:])  # noqa: E731
        if not has_audio:
            drop_audio = torch.ones(B, dtype=torch.bool, device=x.device)
        tt = torch.full((B,), int(t), dtype=torch.long, device=x.device)
        return model(rep(context), x, tt, rep(maps), rep(aud), drop_pose=drop_pose,
                     drop_audio=drop_audio, sparse=sparse).sample

    def pose_level(x, t, drop_pose):
        def audio_level(x2, t2, drop_audio):
            dp = None if drop_pose is None else drop_pose.repeat(x2.shape[0] // x.shape[0])
            return model_fn(x2, t2, dp, drop_audio)
        return classifier_free(audio_level, cfg_audio if has_audio else 1.0)(x, t)

    return classifier_free(pose_level, cfg_pose)


def _torch_generator(generator: Any):
    """A CPU ``torch.Generator``: the one given, one seeded from a numpy Generator, or seed 0."""
    import torch

    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, np.random.Generator):
        return torch.Generator().manual_seed(int(generator.integers(0, 2 ** 62)))
    return torch.Generator().manual_seed(0 if generator is None else int(generator))


def vdm_factory(*, device: str = "cpu", dtype: str | None = None, **options: Any) -> VdmRenderer:
    """Registry factory (protocol v2): ``options`` are :class:`VdmRenderConfig` fields (strict), or
    ``config=VdmRenderConfig(...)``; ``model=``/``note=``/``latent_codec=`` inject built parts
    (tests)."""
    from csg.config import from_dict

    parts = {k: options.pop(k) for k in ("model", "note") if k in options}
    if "latent_codec" in options:
        parts["codec"] = options.pop("latent_codec")
    if isinstance(options.get("config"), VdmRenderConfig) and len(options) == 1:
        cfg = options["config"]
    else:
        cfg = from_dict(VdmRenderConfig, options, "renderer options (VdmRenderConfig)")
    return VdmRenderer(cfg, device=device, dtype=dtype, **parts)
