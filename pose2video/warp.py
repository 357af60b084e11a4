"""``warp``: the weight-free default renderer. The photo itself is bent into each target pose.

Per reference photo (once): retarget the driving skeleton onto the photo's skeleton
(:mod:`pose2video.align`), build a base layer (arms inpainted away) and two overlays per arm, upper
arm and forearm + hand, cross-faded at the elbow (:mod:`pose2video.layers`). Per frame: part
transforms from the target pose (:mod:`pose2video.rig`), anchors moved by linear blend skinning
or pinned to their keypoints, a dense backward map per layer (:mod:`pose2video.mesh`),
``cv2.remap``, alpha compositing, then the mouth interior (:mod:`pose2video.face`).

Protocol v2: ``prepare(photo, ref_pose)`` builds the rig once per photo (a :class:`WarpState`),
``render(state, poses)`` streams frames. It is deterministic (``generator`` is accepted and
ignored) and runs on the CPU in real time. A frame whose pose equals the reference pose returns
the photo unchanged (bit-exact).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from csg import keypoints as K
from csg.pose import PoseSequence

from . import mesh
from .base import (CanvasMismatchError, ProgressBar, ProgressCallback, check_inputs,
                   reference_pose_for, window_bounds)
from .face import MouthStyle, mouth_style, paint_mouth
from .layers import (Layer, arm_ok, base_anchors, forearm_anchors, hand_anchors, person_zone,
                     upper_arm_anchors)
from .masks import arm_free_base, arm_mask, arm_radius, elbow_split, hand_zone, soft_alpha
from .rig import SIDES, P, blend_transforms, part_transforms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarpConfig:
    """Options of the ``warp`` renderer (``configs/pose2video/warp.yaml``)."""

    window: int = 16  # frames per yielded window (memory bound: window * H * W * 3 bytes)
    align: bool = True  # retarget the driving skeleton onto the photo's proportions first ...
    fit_tolerance: float = 0.2  # ... unless it already fits the photo (align.fits_reference; 0: always)
    threshold: float = 0.3  # keypoints scoring below this count as missing
    segment: bool = True  # refine arm masks with MediaPipe person segmentation
    mouth: bool = True  # paint a mouth cavity and teeth when the lips part
    mouth_ramp: float = 0.04  # mouth opening (gap / face height) over which the cavity fades in
    feather: float = 0.25  # soft edge of the arm overlays, in arm radii
    inpaint_size: int = 256  # the arm-free base is inpainted at this long side, then upsampled
    face_stabilize: bool = True  # rigid skull + jaw/lip expression, robust fit (face.stabilize_face)
    face_smooth: float = 1.0  # temporal Gaussian sigma (frames) of the face fit; 0: none
    map_stride: int = 2  # dense warp maps on a grid this much coarser, upsampled (1: exact)


@dataclass
class WarpRig:
    """Everything precomputed for one photo."""

    size_hw: tuple[int, int]
    image: np.ndarray  # (H, W, 3) the photo, returned as is for the reference pose
    ref: np.ndarray  # (133, 2) reference keypoints
    ref_ok: np.ndarray  # (133,) bool
    base: Layer  # image (H, W, 4): photo, hole union
    arms: list[Layer]  # images (H, W, 5): photo, alpha, hole
    mouth: MouthStyle | None
    outside: np.ndarray  # (H, W) bool outside the person zone: there the base is the photo
    hole_box: tuple[int, int, int, int] | None  # (y0, y1, x0, x1) around the hole union
    fill: np.ndarray  # (H, W, 3) the photo with the arms inpainted (masks.arm_free_base)


def _layer(name: str, anchors: Any, image: np.ndarray, min_dist: float,
           priority: np.ndarray | None = None) -> Layer:
    src, w, key = anchors.arrays(min_dist)
    tris = mesh.triangulate(src)
    if priority is None:
        order = np.arange(len(tris))
    else:
        order = np.lexsort((np.arange(len(tris)), priority(src, w, tris)))
    return Layer(name, src, w, key, tris, order.astype(np.int64), image)


def build_rig(image: np.ndarray, ref_pose: PoseSequence, config: WarpConfig,
              person: np.ndarray | None = None) -> WarpRig:
    """Precompute the layers for ``image`` (H, W, 3) uint8 and its skeleton ``ref_pose`` (T=1).

    person: optional (H, W) person probability (see :mod:`pose2video.segment`).

    Layers carry one channel more than they show: each arm layer an RGBA image plus its *hole*
    (the arm's pixels grown by a margin: where the photo shows this arm), the base the photo, its
    fill (the photo with the arms inpainted) and the union of the holes. Per frame the fill shows
    only where a hole is no longer covered by its arm (:func:`warp_frame`), so a pose equal to the
    photo's is the photo, and a small move changes the frame a little.
    """
    import cv2

    size_hw = image.shape[:2]
    ref = ref_pose.xy[0].astype(np.float64)
    ref_ok = ref_pose.scores[0] >= config.threshold
    sides = [s for s in ("r", "l") if arm_ok(ref_ok, s)]
    r = arm_radius(ref) if sides else 4.0
    feather = max(config.feather * r, 1.0)
    arms, union = [], np.zeros(size_hw, np.float32)
    grow = max(int(round(0.3 * r)), 1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    for side in sides:
        hz = hand_zone(ref, ref_ok, side, size_hw, r, person)
        m = arm_mask(image, ref, ref_ok, side, person) | hz
        alpha = soft_alpha(m, feather)  # fades inside the mask: no background travels along
        hole = soft_alpha(cv2.dilate(m.astype(np.uint8), disk) > 0, 1.5)
        hole = np.maximum(hole, (alpha > 0).astype(np.float32))
        w_up, w_fore = elbow_split(ref, side, size_hw, r)
        # the whole hand travels with the forearm, even fingers raised beside the shoulder
        hzs = cv2.GaussianBlur(cv2.dilate(hz.astype(np.uint8), disk).astype(np.float32), (0, 0),
                               max(0.15 * r, 0.5))
        w_fore = np.maximum(w_fore, hzs)
        w_up = np.where(w_fore >= 1.0, w_up * (1.0 - hzs), 1.0)  # max(w_up, w_fore) stays 1
        reach = 2.2 * r + feather + 3
        root = SIDES[side][3]
        own_hand = ref_ok[root:root + K.HAND_SIZE].sum() >= 5  # a visible hand: a rigid layer
        parts = [(f"{side}_upper", w_up, upper_arm_anchors(ref, side, reach)),
                 (f"{side}_fore", np.where(hzs >= 1.0, 0.0, w_fore) if own_hand else w_fore,
                  forearm_anchors(ref, ref_ok, side, reach, with_hand=not own_hand))]
        if own_hand:
            parts.append((f"{side}_hand", hzs, hand_anchors(ref, ref_ok, side, reach)))
        for name, w_part, anchors in parts:  # drawn in order: upper arm, forearm, hand
            a = alpha * w_part
            layer = _layer(name, anchors, np.zeros((*size_hw, 5), np.uint8), 1.0,
                           priority=_coverage(a))
            inside = mesh.rasterize(layer.src, layer.tris, np.arange(len(layer.tris)),
                                    (0, size_hw[0], 0, size_hw[1])) >= 0
            h_part = hole * w_part * inside
            layer.image = np.dstack([image, _u8(a * inside), _u8(h_part)])
            arms.append(layer)
            union = np.maximum(union, np.round(h_part * 255) / 255)
    fill = arm_free_base(image, union > 0, ref, ref_ok, person, config.inpaint_size)
    zone = person_zone(ref, ref_ok, size_hw, person)
    base = _layer("base", base_anchors(ref, ref_ok, size_hw, zone),
                  np.dstack([image, _u8(union)]), 0.75, priority=_depth)
    style = mouth_style(image, ref, ref_ok) if config.mouth else None
    ys, xs = np.nonzero(union > 0)
    hole_box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else None
    return WarpRig(size_hw, image, ref, ref_ok, base, arms, style, ~zone, hole_box, fill)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _depth(src: np.ndarray, w: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Base z-order per triangle: background 0, body 1, head 2 (the highest vertex class wins)."""
    cls = np.where(w[:, P["head"]] > 0, 2, np.where(w[:, P["fixed"]] >= 1, 0, 1))
    return cls[tris].max(1)


def _coverage(alpha: np.ndarray):
    """Arm z-order per triangle: the mean alpha it covers on the photo (arm pixels drawn last)."""
    def priority(src: np.ndarray, w: np.ndarray, tris: np.ndarray) -> np.ndarray:
        box = (0, alpha.shape[0], 0, alpha.shape[1])
        idx = mesh.rasterize(src, tris, np.arange(len(tris)), box)
        sel = idx >= 0
        tot = np.bincount(idx[sel], weights=alpha[sel], minlength=len(tris))
        cnt = np.bincount(idx[sel], minlength=len(tris))
        return tot / np.maximum(cnt, 1)
    return priority


def _targets(layer: Layer, transforms: np.ndarray, tgt: np.ndarray, tgt_ok: np.ndarray,
             ) -> np.ndarray:
    dst = mesh.apply_affines(blend_transforms(layer.weights, transforms), layer.src)
    pin = layer.key >= 0
    pin[pin] = tgt_ok[layer.key[pin]]
    dst[pin] = tgt[layer.key[pin]]
    return dst


def warp_frame(rig: WarpRig, target: np.ndarray, threshold: float = 0.3,
               mouth_ramp: float = 0.04, stride: int = 2) -> np.ndarray:
    """One frame (H, W, 3) uint8 for target keypoints (133, 3) on the photo's canvas.

    stride: the dense maps are computed on a grid this much coarser (see mesh.warp_map).

    Compositing: the base layer (photo, fill, hole union) is warped; the arm layers are warped
    with their holes; ``h = hole_base * (1 - union of the arm holes)`` is where an arm has left,
    and there the fill replaces the photo; then the arms are drawn over, forearms last. Outside
    the person zone the base is the photo itself.
    """
    import cv2

    tgt = target[:, :2].astype(np.float64)
    tgt_ok = target[:, 2] >= threshold
    transforms = part_transforms(rig.ref, rig.ref_ok, tgt, tgt_ok)
    base = rig.base
    dst = _targets(base, transforms, tgt, tgt_ok)
    arm_dst = [_targets(arm, transforms, tgt, tgt_ok) for arm in rig.arms]
    moved = mesh.moved_triangles(base.src, dst, base.tris)
    still = not moved.any() and all(not np.abs(d - a.src).max() > 1e-3
                                    for d, a in zip(arm_dst, rig.arms))
    if still:  # the identity path: the photo itself, bit for bit
        out = rig.image.copy()
    else:
        order = base.order[moved[base.order]]
        img4 = base.image  # photo + hole union
        out4 = img4.copy()
        fill = rig.fill.copy()
        box = mesh.bounding_box(dst[base.tris[order]].reshape(-1, 2), rig.size_hw)
        region = rig.hole_box
        if box is not None:
            y0, y1, x0, x1 = box
            mx, my, _ = mesh.warp_map(base.src, dst, base.tris, order, box, stride)
            warped = cv2.remap(img4, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # the background stays the photo's
            np.copyto(warped, img4[y0:y1, x0:x1], where=rig.outside[y0:y1, x0:x1, None])
            out4[y0:y1, x0:x1] = warped
            region = _hole_box(out4[..., 3], rig.hole_box, box)
            if region is not None:  # the fill, warped where the hole now is
                a0, a1 = max(region[0], y0), min(region[1], y1)
                b0, b1 = max(region[2], x0), min(region[3], x1)
                if a1 > a0 and b1 > b0:
                    sub = (slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0))
                    fill[a0:a1, b0:b1] = cv2.remap(rig.fill, mx[sub], my[sub], cv2.INTER_LINEAR,
                                                   borderMode=cv2.BORDER_REPLICATE)
        layers = [(_warp_layer(arm, d, rig.size_hw)) for arm, d in zip(rig.arms, arm_dst)]
        out = out4[..., :3].copy()
        if region is not None:
            y0, y1, x0, x1 = region
            keep = np.ones((y1 - y0, x1 - x0), np.float32)  # 1 - union of the arms' holes
            for lay in layers:
                if lay is None:
                    continue
                (ly0, ly1, lx0, lx1), rgba = lay
                a0, a1, b0, b1 = max(ly0, y0), min(ly1, y1), max(lx0, x0), min(lx1, x1)
                if a1 > a0 and b1 > b0:
                    keep[a0 - y0:a1 - y0, b0 - x0:b1 - x0] *= \
                        1.0 - rgba[a0 - ly0:a1 - ly0, b0 - lx0:b1 - lx0, 4] * (1.0 / 255.0)
            h = (out4[y0:y1, x0:x1, 3].astype(np.float32) * (keep / 255.0))[..., None]
            crop = out[y0:y1, x0:x1].astype(np.float32)
            blend = crop + (fill[y0:y1, x0:x1] - crop) * h
            out[y0:y1, x0:x1] = (blend + 0.5).astype(np.uint8)
        for lay in layers:
            if lay is not None:
                _composite(out, *lay)
    if rig.mouth is not None:
        paint_mouth(out, tgt, tgt_ok, rig.mouth, ramp=mouth_ramp)
    return out


def _hole_box(hole: np.ndarray, rest: tuple[int, int, int, int] | None,
              box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) around the nonzero ``hole`` pixels, searched within ``rest`` and ``box``."""
    y0, y1, x0, x1 = box if rest is None else (min(rest[0], box[0]), max(rest[1], box[1]),
                                               min(rest[2], box[2]), max(rest[3], box[3]))
    sub = hole[y0:y1, x0:x1]
    rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
    if len(rows) == 0:
        return None
    return y0 + rows[0], y0 + rows[-1] + 1, x0 + cols[0], x0 + cols[-1] + 1


def _warp_layer(layer: Layer, dst: np.ndarray, size_hw: tuple[int, int],
                ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """An overlay layer warped to ``dst``: its box and (h, w, 5) uint8 RGB, alpha, hole.

    Alpha and hole are already multiplied by the mesh coverage. Full-resolution map (stride 1):
    arms fold over themselves at the elbow, and a coarse map would smear the fold edge.
    """
    import cv2

    box = mesh.bounding_box(dst, size_hw)
    if box is None:
        return None
    mx, my, cover = mesh.warp_map(layer.src, dst, layer.tris, layer.order, box, 1)
    img = cv2.remap(layer.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0)
    if cover.min() < 1.0:
        for c in (3, 4):
            img[..., c] = cv2.multiply(img[..., c], cover, dtype=cv2.CV_8U)
    return box, img


def _composite(out: np.ndarray, box: tuple[int, int, int, int], img: np.ndarray) -> None:
    """Draw a warped overlay (from :func:`_warp_layer`) over ``out`` in place (alpha blend)."""
    import cv2

    y0, y1, x0, x1 = box
    a = img[..., 3].astype(np.float32) * (1.0 / 255.0)
    crop = np.ascontiguousarray(out[y0:y1, x0:x1])
    rgb = np.ascontiguousarray(img[..., :3])
    out[y0:y1, x0:x1] = cv2.blendLinear(rgb, crop, a, 1.0 - a)


@dataclass
class WarpState:
    """What :meth:`WarpRenderer.prepare` builds once per photo: the rig and the photo's skeleton."""

    rig: WarpRig
    ref_pose: PoseSequence  # (T=1) on the photo's canvas

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.rig.size_hw


class WarpRenderer:
    """The ``warp`` renderer (protocol v2); see the module doc. Build with
    ``get_renderer("warp", **options)``: ``state = r.prepare(photo, ref_pose)`` once per photo, then
    ``r.render(state, poses)`` as often as needed."""

    name = "warp"
    needs = "nothing"
    window = 1  # frames processed together: each frame on its own
    overlap = 0

    def __init__(self, config: WarpConfig | None = None, *, device: str = "cpu",
                 dtype: str | None = None) -> None:
        self.config = config or WarpConfig()  # device / dtype: accepted and ignored (CPU, uint8)

    def driving_poses(self, poses: PoseSequence, ref_pose: PoseSequence) -> PoseSequence:
        """The skeletons actually rendered: ``poses`` retargeted onto ``ref_pose`` if ``align`` and
        they do not already lie on the photo's person (:func:`pose2video.align.fits_reference`)."""
        if not self.config.align:
            return poses
        from .align import fits_reference, retarget

        if fits_reference(poses, ref_pose, threshold=self.config.threshold,
                          tolerance=self.config.fit_tolerance):
            log.info("the skeleton already fits the photo: not retargeted")
            return poses

        return retarget(poses, ref_pose, threshold=self.config.threshold)

    def prepare(self, ref_image: np.ndarray, ref_pose: PoseSequence | None = None) -> WarpState:
        """Once per photo: validate, extract the skeleton when ``ref_pose`` is None, segment the
        person, build masks, fills and meshes. Returns the state :meth:`render` takes."""
        img = np.asarray(ref_image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            from csg.errors import InputError

            raise InputError(f"reference image: expected (H, W, 3) uint8 RGB, got {img.shape} "
                             f"{img.dtype}")
        if ref_pose is not None:
            check_inputs(ref_image, ref_pose)  # non-empty, canvas == photo size
        ref_pose = reference_pose_for(ref_image, ref_pose)
        ref_pose = ref_pose.frame(0) if len(ref_pose) > 1 else ref_pose
        person = None
        if self.config.segment:
            from .segment import person_mask

            person = person_mask(ref_image)
        rig = build_rig(ref_image, ref_pose, self.config, person)
        _explain_photo(rig, person)
        return WarpState(rig, ref_pose)

    def render(self, state: WarpState | np.ndarray, poses: PoseSequence, *,
               audio: np.ndarray | None = None, generator: Any = None,
               callback: ProgressCallback | None = None, progress: bool = True,
               chunk: int | None = None, ref_pose: PoseSequence | None = None,
               ) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 arrays of at most ``chunk`` frames, ``len(poses)`` in all.

        state: from :meth:`prepare`. (Transition: a photo array is still accepted, with
        ``ref_pose=``, and prepared on the fly; v1 callers keep working until they move to v2.)
        audio and generator are accepted and ignored (the warp is deterministic).
        """
        if not isinstance(state, WarpState):
            state = self.prepare(state, ref_pose)
        elif ref_pose is not None:
            raise TypeError("render(state, poses): ref_pose belongs to prepare()")
        chunk = int(chunk or self.config.window)
        if len(poses) == 0:
            from csg.errors import InputError

            raise InputError("pose: the sequence has no frames")
        h, w = state.size_hw
        if (poses.height, poses.width) != (h, w):
            raise CanvasMismatchError(
                f"pose: canvas is {poses.width}x{poses.height} (width x height) but the reference "
                f"photo is {w}x{h}; generate the skeleton for this photo, or fit it onto the photo "
                "with `csg render --retarget`")
        drive = self.driving_poses(poses, state.ref_pose)
        cfg = self.config
        check_driving(drive, state.ref_pose, cfg.threshold)
        if cfg.face_stabilize:
            from .face import stabilize_face

            kps = stabilize_face(drive.keypoints, state.rig.ref, state.rig.ref_ok, cfg.threshold,
                                 cfg.face_smooth)
            drive = drive.replace(keypoints=kps.astype(np.float32))
        with ProgressBar(len(poses), progress, "warp") as bar:
            for a, b in window_bounds(len(poses), chunk):
                frames = np.stack([warp_frame(state.rig, drive.keypoints[t], cfg.threshold,
                                              cfg.mouth_ramp, cfg.map_stride)
                                   for t in range(a, b)])
                bar.update(b - a)
                if callback is not None:
                    callback(b, len(poses))
                yield frames


def _explain_photo(rig: WarpRig, person: np.ndarray | None) -> None:
    """One line each for what the warp will not do with this photo (documented fallbacks)."""
    from csg import keypoints as K

    from .layers import other_people
    from .rig import SIDES

    names = {"l": "left", "r": "right"}
    for side in ("l", "r"):
        if not arm_ok(rig.ref_ok, side):
            log.warning("reference photo: the %s arm is not fully visible (shoulder, elbow and wrist "
                        "needed); it stays with the body and is not moved", names[side])
        else:
            root = SIDES[side][3]
            if rig.ref_ok[root:root + K.HAND_SIZE].sum() < 5:
                log.info("reference photo: the %s hand is hidden; it stays hidden", names[side])
    if person is not None:
        n = other_people(person > 0.3, ~rig.outside)
        if n:
            log.warning("reference photo: %d other person(s) beside the skeleton's; they stay still "
                        "(the warp moves the one person the skeleton belongs to)", n)


def check_driving(poses: PoseSequence, ref_pose: PoseSequence, threshold: float = 0.3) -> None:
    """Raise :class:`csg.errors.InputError` when a frame's person is far outside the photo.

    Far: the neck (shoulder midpoint) more than one torso size outside the canvas, or a torso
    over 3x larger or smaller than the photo's. A warp would tear such a frame apart.
    """
    from csg import keypoints as K
    from csg.errors import InputError

    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    ref_ok = ref_pose.scores[0][sh] >= threshold
    if not ref_ok.all():
        return
    ref_t = float(np.linalg.norm(np.subtract(*ref_pose.xy[0, sh])))
    xy, ok = poses.xy[:, sh].astype(np.float64), (poses.scores[:, sh] >= threshold).all(1)
    neck = xy.mean(1)
    tors = np.linalg.norm(xy[:, 0] - xy[:, 1], axis=-1)
    w, h = poses.width, poses.height
    out = ((neck[:, 0] < -ref_t) | (neck[:, 0] > w + ref_t) | (neck[:, 1] < -ref_t)
           | (neck[:, 1] > h + ref_t))
    scale = tors / max(ref_t, 1e-6)
    bad = ok & (out | (scale > 3.0) | (scale < 1 / 3))
    if bad.any():
        t = int(np.argmax(bad))
        raise InputError(
            f"pose: frame {t}: the skeleton's person is far outside the photo (neck at "
            f"({neck[t, 0]:.0f}, {neck[t, 1]:.0f}) on a {w}x{h} canvas, shoulders {scale[t]:.1f}x "
            "the photo's); generate the skeleton for this photo, or fit it onto the photo "
            "(renderer option align: true, `csg render --retarget`)")


def warp_factory(*, device: str = "cpu", dtype: str | None = None, **options: Any) -> WarpRenderer:
    """Registry factory (protocol v2): ``device`` / ``dtype`` accepted and ignored; ``options`` are
    :class:`WarpConfig` fields (strict), or ``config=WarpConfig(...)``."""
    from csg.config import from_dict

    if isinstance(options.get("config"), WarpConfig) and len(options) == 1:
        return WarpRenderer(options["config"])
    return WarpRenderer(from_dict(WarpConfig, options, "renderer options (WarpConfig)"))
