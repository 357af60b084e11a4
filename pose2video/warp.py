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
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from csg import keypoints as K
from csg.pose import PoseSequence

from . import mesh
from .base import (CanvasMismatchError, ProgressBar, ProgressCallback, check_inputs,
                   reference_pose_for, window_bounds)
from .face import MouthStyle, mouth_style, paint_mouth
from .layers import (Layer, arm_ok, background_plate, base_anchors, forearm_anchors, hand_anchors,
                     person_alpha, person_zone, upper_arm_anchors)
from .masks import arm_free_base, arm_mask, arm_radius, elbow_split, hand_zone, soft_alpha
from .rig import (HAND_TWIST, SIDES, P, blend_transforms, part_transforms,
                  part_transforms_batch)

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
    face_rigid_residual: float = 0.05  # eyes/brows/nose keep their own offsets up to this (face h)
    map_stride: int = 2  # dense warp maps on a grid this much coarser, upsampled (1: exact)
    still_background: bool = False  # with segmentation: the moved person over a static clean
    # plate (a logo beside the head stays; ~15 % slower per frame, +0.1 dB person PSNR)
    hand_twist: float | None = HAND_TWIST  # degrees a hand may turn against its forearm; null: free

    def __post_init__(self) -> None:
        if self.hand_twist is not None and not 0.0 <= float(self.hand_twist) <= 180.0:
            raise ValueError(f"hand_twist must be null or in [0, 180] degrees, got "
                             f"{self.hand_twist}")


@dataclass
class WarpRig:
    """Everything precomputed for one photo."""

    size_hw: tuple[int, int]
    image: np.ndarray  # (H, W, 3) the photo, returned as is for the reference pose
    ref: np.ndarray  # (133, 2) reference keypoints
    ref_ok: np.ndarray  # (133,) bool
    base: Layer  # image (H, W, 4): photo, hole union
    arms: list[Layer]  # images (H, W, 4): photo, alpha; .hole (H, W); .order: content triangles
    mouth: MouthStyle | None
    outside: np.ndarray  # (H, W) bool outside the person zone: there the base is the photo
    hole_box: tuple[int, int, int, int] | None  # (y0, y1, x0, x1) around the hole union
    fill: np.ndarray  # (H, W, 3) the photo with the arms inpainted (masks.arm_free_base)
    plate: np.ndarray | None = None  # (H, W, 3) the photo with the person inpainted, or None
    person: np.ndarray | None = None  # (H, W) uint8 the skeleton's person (alpha over the plate)
    cloth: list[Layer] = field(default_factory=list)  # clothes over each arm (base mesh, RGBA),
    # drawn after the arms
    hand_twist: float | None = HAND_TWIST  # WarpConfig.hand_twist, for warp_frame
    # derived (__post_init__): 4-channel images for cv2's fast remap path, cv2 masks, samples
    base4: np.ndarray | None = None  # (H, W, 4) photo + person alpha (255 without a plate)
    fill4: np.ndarray | None = None  # (H, W, 4) fill + hole union
    outside_u8: np.ndarray | None = None  # (H, W) uint8 ``outside`` as a cv2 mask
    hole_samples: tuple[np.ndarray, np.ndarray] | None = None  # points of the hole union
    base_hole_tris: np.ndarray | None = None  # (M,) bool base triangles over the hole union

    def __post_init__(self) -> None:
        hole = self.base.image[..., 3]
        alpha = self.person if self.plate is not None and self.person is not None else \
            np.full(self.size_hw, 255, np.uint8)
        self.base4 = np.dstack([self.image, alpha])
        self.fill4 = np.dstack([self.fill, hole])
        self.outside_u8 = self.outside.astype(np.uint8)
        self.base_hole_tris = _content_triangles(self.base, hole > 0)
        self.hole_samples = _content_samples(self.base, hole > 0, HOLE_STEP)


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
    cloth = []  # per arm, the clothes lying over it: in front of it, moving with the body
    for side in sides:
        hz = hand_zone(ref, ref_ok, side, size_hw, r, person)
        over = np.zeros(size_hw, bool)
        m = arm_mask(image, ref, ref_ok, side, person, cloth=over) | hz
        over &= ~m
        arm_image = image
        if over.any():  # the arm goes on under the cloth: its own colour there, drawn behind it
            m |= over
            arm_image = _continue_arm(image, m & ~over, over, r)
            cloth.append((side, over))
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
        if own_hand:  # fingers are the hand layer's alone, away from the wrist's cross-fade:
            # a finger edge left in the upper-arm or forearm layer is a fragment on the chest
            wx, wy = ref[SIDES[side][2]]
            yy, xx = np.ogrid[:size_hw[0], :size_hw[1]]
            own = (cv2.dilate(hz.astype(np.uint8), disk) > 0) & \
                ((xx - wx) ** 2 + (yy - wy) ** 2 > r * r)
            w_up = np.where(own, 0.0, w_up)
        parts = [(f"{side}_upper", w_up, upper_arm_anchors(ref, side, reach)),
                 (f"{side}_fore", np.where((hzs >= 1.0) | own, 0.0, w_fore) if own_hand
                  else w_fore, forearm_anchors(ref, ref_ok, side, reach, with_hand=not own_hand))]
        if own_hand:
            parts.append((f"{side}_hand", np.maximum(hzs, own), hand_anchors(ref, ref_ok, side,
                                                                             reach)))
        for name, w_part, anchors in parts:  # drawn in order: upper arm, forearm, hand
            a = alpha * w_part
            layer = _layer(name, anchors, np.zeros((*size_hw, 5), np.uint8), 1.0,
                           priority=_coverage(a))
            inside = mesh.rasterize(layer.src, layer.tris, np.arange(len(layer.tris)),
                                    (0, size_hw[0], 0, size_hw[1])) >= 0
            h_part = hole * w_part * inside
            layer.image = np.dstack([arm_image, _u8(a * inside)])
            layer.hole = _u8(h_part)
            _fit_to_content(layer, (layer.image[..., 3] > 0) | (layer.hole > 0))
            arms.append(layer)
            union = np.maximum(union, np.round(h_part * 255) / 255)
    plate = alpha_p = None
    if person is not None and config.still_background:
        alpha_p = person_alpha(person, ref, ref_ok)
        plate = background_plate(image, alpha_p, config.inpaint_size, person > 0.3)
    fill = arm_free_base(image, union > 0, ref, ref_ok, person, config.inpaint_size, plate)
    zone = person_zone(ref, ref_ok, size_hw, person)
    base = _layer("base", base_anchors(ref, ref_ok, size_hw, zone),
                  np.dstack([image, _u8(union)]), 0.75, priority=_depth)
    style = mouth_style(image, ref, ref_ok) if config.mouth else None
    ys, xs = np.nonzero(union > 0)
    hole_box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else None
    front = []  # drawn last, moving with the body: the arm passes behind them
    for side, part in cloth:  # one layer per arm: a narrow box each (one for both spans the body)
        lay = Layer(f"{side}_cloth", base.src, base.weights, base.key, base.tris, base.order,
                    np.dstack([image, part.astype(np.uint8) * 255]),
                    hole=np.zeros(size_hw, np.uint8))
        _fit_to_content(lay, part)
        front.append(lay)
    return WarpRig(size_hw, image, ref, ref_ok, base, arms, style, ~zone, hole_box, fill,
                   plate, alpha_p, front, hand_twist=config.hand_twist)


def _fit_to_content(layer: Layer, has: np.ndarray) -> None:
    """Restrict an overlay ``layer`` to its content ``has`` (H, W) bool, in place: draw only the
    triangles with something to show (the others add nothing but area), its content points (its
    box per frame) and the box of its content, for frames where it does not move."""
    layer.order = layer.order[_content_triangles(layer, has)[layer.order]]
    layer.samples = _content_samples(layer, has)
    if has.any():
        ys, xs = np.nonzero(has)
        layer.rest_box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


def _continue_arm(image: np.ndarray, arm: np.ndarray, over: np.ndarray, r: float) -> np.ndarray:
    """``image`` with the ``over`` pixels (cloth in front of the arm) filled from the ``arm``
    pixels only (Telea, everything else unknown): what the arm layer shows there once it has
    moved out from behind the cloth."""
    import cv2

    ys, xs = np.nonzero(over)
    pad = int(np.ceil(2 * r)) + 2
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, image.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, image.shape[1])
    unknown = (~arm[y0:y1, x0:x1]).astype(np.uint8)
    crop = cv2.inpaint(np.ascontiguousarray(image[y0:y1, x0:x1]), unknown, 3, cv2.INPAINT_TELEA)
    out = image.copy()
    sub = over[y0:y1, x0:x1]
    out[y0:y1, x0:x1][sub] = crop[sub]
    return out


def _content_triangles(layer: Layer, content: np.ndarray, margin: int = 2) -> np.ndarray:
    """(M,) bool: triangles whose source footprint touches ``content`` (H, W) bool grown by
    ``margin`` px (the reach of bilinear sampling across an edge). Triangles too thin to own a
    pixel count when a vertex touches it."""
    import cv2

    h, w = content.shape
    grown = cv2.dilate(content.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    idx = mesh.rasterize(layer.src, layer.tris, np.arange(len(layer.tris)), (0, h, 0, w))
    sel = grown & (idx >= 0)
    out = np.bincount(idx[sel], minlength=len(layer.tris)) > 0
    owned = np.bincount(idx[idx >= 0], minlength=len(layer.tris)) > 0
    v = np.clip(np.round(layer.src).astype(int), 0, [w - 1, h - 1])
    touch = grown[v[:, 1], v[:, 0]][layer.tris].any(1)
    return out | (~owned & touch)


SAMPLE_STEP = 3  # px between the content points of an overlay (its box per frame)
HOLE_STEP = 6  # the same for the base's hole union (only its box is needed)


def _content_samples(layer: Layer, content: np.ndarray, step: int = SAMPLE_STEP,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Points of an overlay's content (a grid every SAMPLE_STEP px and its outline) as vertex
    ids (N, 3) and barycentric weights (N, 3) of the triangles they lie in: per frame their
    images bound where the content lands (:func:`_layer_box`)."""
    import cv2

    h, w = content.shape
    ys, xs = np.nonzero(content[::step, ::step])
    pts = [np.stack([xs, ys], 1) * step]
    contours, _ = cv2.findContours(content.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    pts += [c.reshape(-1, 2)[::max(step // 3, 1)] for c in contours]
    pts = np.concatenate(pts).astype(np.float64) if pts else np.zeros((0, 2))
    tri = mesh.rasterize(layer.src, layer.tris, np.arange(len(layer.tris)), (0, h, 0, w))
    t = tri[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    pts, t = pts[t >= 0], t[t >= 0]
    return layer.tris[t], mesh.barycentric(pts, layer.src, layer.tris, t)


def _layer_box(layer: Layer, dst: np.ndarray, affines: np.ndarray,
               size_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The box an overlay's content lands in for mesh ``dst``: the images of its content points
    grown by their spacing times the largest stretch (a piecewise-affine map is Lipschitz with
    that constant) plus the bilinear reach; never more than its triangles' box."""
    tri_box = mesh.bounding_box(dst[layer.tris[layer.order]].reshape(-1, 2), size_hw)
    if layer.samples is None or tri_box is None or len(layer.samples[0]) == 0:
        return tri_box
    vid, lam = layer.samples
    pts = np.einsum("nkc,nk->nc", dst[vid], lam)
    reach = (SAMPLE_STEP * 0.75 + 1.0) * float(mesh.forward_stretch(affines).max())
    box = mesh.bounding_box(pts, size_hw, pad=int(np.ceil(reach)) + 2)
    if box is None:
        return None
    return (max(box[0], tri_box[0]), min(box[1], tri_box[1]), max(box[2], tri_box[2]),
            min(box[3], tri_box[3]))


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
               mouth_ramp: float = 0.04, stride: int = 2, cache: dict | None = None,
               transforms: np.ndarray | None = None, out: np.ndarray | None = None,
               ) -> np.ndarray:
    """One frame (H, W, 3) uint8 for target keypoints (133, 3) on the photo's canvas.

    stride: the base layer's dense map is computed on a grid this much coarser (see
    mesh.warp_map). cache: an optional dict kept between the frames of one sequence; a layer
    whose mesh did not move since the previous frame is not warped again (same output).
    transforms: this frame's part transforms when already computed (rig.part_transforms_batch).
    out: an (H, W, 3) uint8 array to draw into (returned), instead of a new one.

    Compositing: the base layer (photo, fill, hole union) is warped; the arm layers are warped
    with their holes; ``h = hole_base * (1 - union of the arm holes)`` is where an arm has left,
    and there the fill replaces the photo; then the arms are drawn over, forearms last, and last
    the clothes found lying over an arm (``rig.cloth``, moving with the body: a ruffle stays in
    front of the upper arm it covered, which goes on under it in its own colour). Outside the
    person zone the base is the photo itself. All of it works on the boxes of what moved.
    """
    import cv2

    tgt = target[:, :2].astype(np.float64)
    tgt_ok = target[:, 2] >= threshold
    if transforms is None:
        transforms = part_transforms(rig.ref, rig.ref_ok, tgt, tgt_ok, rig.hand_twist)
    base = rig.base
    dst = _targets(base, transforms, tgt, tgt_ok)
    arm_dst = [_targets(arm, transforms, tgt, tgt_ok) for arm in rig.arms]
    moved = mesh.moved_triangles(base.src, dst, base.tris)
    still = not moved.any() and all(not np.abs(d - a.src).max() > 1e-3
                                    for d, a in zip(arm_dst, rig.arms))
    if out is None:
        out = rig.image.copy()
    else:
        np.copyto(out, rig.image)
    if not still:
        warped = _cached(cache, "base", dst, lambda: _warp_base(rig, dst, moved, stride))
        if warped is not None:
            (y0, y1, x0, x1), rgb, region, hole, fill = warped
            out[y0:y1, x0:x1] = rgb
        else:
            region, hole, fill = rig.hole_box, None, None
        layers = [_cached(cache, arm.name, d, lambda a=arm, d=d: _warp_layer(a, d, rig.size_hw))
                  for arm, d in zip(rig.arms, arm_dst)]
        if region is not None:
            y0, y1, x0, x1 = region
            if hole is None:  # the base did not move: its hole union and fill as in the photo
                hole = rig.fill4[y0:y1, x0:x1, 3]
                fill = rig.fill[y0:y1, x0:x1]
            keep = hole.astype(np.float32) * (1.0 / 255.0)  # base hole x (1 - arm holes)
            for lay in layers:
                if lay is None:
                    continue
                (ly0, ly1, lx0, lx1), _, lhole = lay
                a0, a1, b0, b1 = max(ly0, y0), min(ly1, y1), max(lx0, x0), min(lx1, x1)
                if a1 > a0 and b1 > b0:
                    sub = keep[a0 - y0:a1 - y0, b0 - x0:b1 - x0]
                    sub *= 1.0 - lhole[a0 - ly0:a1 - ly0, b0 - lx0:b1 - lx0] * (1.0 / 255.0)
            crop = np.ascontiguousarray(out[y0:y1, x0:x1])
            out[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(fill), crop, keep,
                                                1.0 - keep)
        for lay in layers:
            if lay is not None:
                _composite(out, lay[0], lay[1])
        for front in rig.cloth:  # a ruffle over the upper arm stays in front of it
            lay = _cached(cache, front.name, dst,
                          lambda f=front: _warp_layer(f, dst, rig.size_hw))
            if lay is not None:
                _composite(out, lay[0], lay[1])
    if rig.mouth is not None:
        paint_mouth(out, tgt, tgt_ok, rig.mouth, ramp=mouth_ramp)
    return out


def _cached(cache: dict | None, key: str, dst: np.ndarray, make: Any) -> Any:
    """``make()``, or the previous frame's result for ``key`` when its mesh ``dst`` is the same."""
    if cache is None:
        return make()
    hit = cache.get(key)
    if hit is not None and np.array_equal(hit[0], dst):
        return hit[1]
    res = make()
    cache[key] = (dst.copy(), res)
    return res


def _warp_base(rig: WarpRig, dst: np.ndarray, moved: np.ndarray, stride: int) -> tuple | None:
    """The base layer warped over the box of its moved triangles.

    With a clean plate (``still_background``) the warped person is laid over the plate by its
    warped alpha, so the background near a moving head or torso stays where it is (a logo
    beside the head is not dragged along); the photo itself outside the person zone. Returns
    (box, rgb (h, w, 3) uint8, region, hole (rh, rw) uint8, fill (rh, rw, 3) uint8)
    where ``region`` bounds the hole union where it now is, or None when nothing moved.
    """
    import cv2

    base = rig.base
    order = base.order[moved[base.order]]
    box = mesh.bounding_box(dst[base.tris[order]].reshape(-1, 2), rig.size_hw)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    mx, my, _ = mesh.warp_map(base.src, dst, base.tris, order, box, stride)
    warped = cv2.remap(rig.base4, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rgb = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
    if rig.plate is not None:  # the moved person over the still background
        alpha = cv2.extractChannel(warped, 3)
        plate = rig.plate[y0:y1, x0:x1]
        cv2.copyTo(plate, cv2.compare(alpha, 0, cv2.CMP_EQ), rgb)
        edge = np.flatnonzero(cv2.inRange(alpha, 1, 254))  # the soft edge (a few % of the box)
        if len(edge):
            a = alpha.ravel().take(edge).astype(np.float32)[:, None] * (1.0 / 255.0)
            flat = rgb.reshape(-1, 3)
            mix = flat.take(edge, 0) * a + np.ascontiguousarray(plate).reshape(-1, 3).take(
                edge, 0) * (1.0 - a)
            flat[edge] = (mix + 0.5).astype(np.uint8)
    # the background stays the photo's
    cv2.copyTo(rig.image[y0:y1, x0:x1], rig.outside_u8[y0:y1, x0:x1], rgb)
    region = _hole_region(rig, dst, moved)
    hole = fill = None
    if region is not None:
        r0, r1, c0, c1 = region
        fill4 = rig.fill4[r0:r1, c0:c1].copy()
        a0, a1, b0, b1 = max(r0, y0), min(r1, y1), max(c0, x0), min(c1, x1)
        if a1 > a0 and b1 > b0:  # fill and hole union, warped where the base moved
            sub = (slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0))
            fill4[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = cv2.remap(
                rig.fill4, mx[sub], my[sub], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        hole = cv2.extractChannel(fill4, 3)
        fill = cv2.cvtColor(fill4, cv2.COLOR_RGBA2RGB)
    return box, rgb, region, hole, fill


def _hole_region(rig: WarpRig, dst: np.ndarray, moved: np.ndarray,
                 ) -> tuple[int, int, int, int] | None:
    """The box the base's hole union lands in: the images of its sample points grown by their
    spacing times the largest stretch of the moved triangles over it (cf. :func:`_layer_box`)."""
    if rig.hole_samples is None or len(rig.hole_samples[0]) == 0:
        return rig.hole_box
    vid, lam = rig.hole_samples
    pts = np.einsum("nkc,nk->nc", dst[vid], lam)
    sel = moved & rig.base_hole_tris
    stretch = 1.0
    if sel.any():
        aff = mesh.backward_affines(rig.base.src, dst, rig.base.tris[sel])
        stretch = max(stretch, float(mesh.forward_stretch(aff).max()))
    pad = int(np.ceil((HOLE_STEP * 0.75 + 1.0) * stretch)) + 2
    return mesh.bounding_box(pts, rig.size_hw, pad=pad)


def _warp_layer(layer: Layer, dst: np.ndarray, size_hw: tuple[int, int],
                ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """An overlay layer warped to ``dst``: its box, (h, w, 4) uint8 RGBA and (h, w) uint8 hole.

    Only the triangles with content are drawn (``layer.order``), over their box; pixels no
    triangle covers come out 0. Full-resolution map (stride 1): arms fold over themselves at the
    elbow, and a coarse map would smear the fold edge.
    """
    import cv2

    if len(layer.order) == 0:
        return None
    if layer.rest_box is not None and np.array_equal(dst, layer.src):  # not moved: as in the photo
        y0, y1, x0, x1 = layer.rest_box
        return layer.rest_box, layer.image[y0:y1, x0:x1], layer.hole[y0:y1, x0:x1]
    aff = mesh.backward_affines(layer.src, dst, layer.tris[layer.order])
    box = _layer_box(layer, dst, aff, size_hw)
    if box is None or box[1] <= box[0] or box[3] <= box[2]:
        return None
    mx, my = mesh.affine_map(layer.src, dst, layer.tris, layer.order, box, aff)
    rgba = cv2.remap(layer.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    hole = cv2.remap(layer.hole, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    return box, rgba, hole


def _composite(out: np.ndarray, box: tuple[int, int, int, int], img: np.ndarray) -> None:
    """Draw a warped RGBA overlay (from :func:`_warp_layer`) over ``out`` in place."""
    import cv2

    y0, y1, x0, x1 = box
    a = img[..., 3].astype(np.float32) * (1.0 / 255.0)
    crop = np.ascontiguousarray(out[y0:y1, x0:x1])
    rgb = cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
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
    uses_generator = False  # deterministic: no random numbers

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
        plan = self.plan(state, poses)
        with ProgressBar(len(poses), progress, "warp") as bar:
            for a, b in window_bounds(len(poses), chunk):
                frames = self.render_span(state, plan, a, b)
                bar.update(b - a)
                if callback is not None:
                    callback(b, len(poses))
                yield frames

    def plan(self, state: WarpState, poses: PoseSequence, *, audio: np.ndarray | None = None,
             generator: Any = None) -> np.ndarray:
        """The whole-sequence part of :meth:`render`: validate ``poses``, retarget them
        (:meth:`driving_poses`) and stabilise the face over time. Returns the driving keypoints
        (T, 133, 3) float32, from which every frame is drawn on its own (:meth:`render_span`), so
        frame ranges can be rendered in any order or process (:mod:`pipeline.parallel`)."""
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
        kps = drive.keypoints
        if cfg.face_stabilize:
            from .face import stabilize_face

            kps = stabilize_face(kps, state.rig.ref, state.rig.ref_ok, cfg.threshold,
                                 cfg.face_smooth, rigid_residual=cfg.face_rigid_residual)
        return np.ascontiguousarray(kps, dtype=np.float32)

    def render_span(self, state: WarpState, plan: np.ndarray, start: int, stop: int,
                    out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``start:stop`` of the sequence :meth:`plan` returned, as (n, H, W, 3) uint8
        (into ``out`` when given). The same bytes whatever the order the spans are drawn in."""
        cfg = self.config
        h, w = state.size_hw
        kp = plan[start:stop]
        tr = part_transforms_batch(state.rig.ref, state.rig.ref_ok, kp[..., :2].astype(np.float64),
                                   kp[..., 2] >= cfg.threshold, cfg.hand_twist)
        frames = np.empty((stop - start, h, w, 3), np.uint8) if out is None else out
        cache: dict = {}  # layers that did not move since the last frame are not warped again
        for t in range(stop - start):
            warp_frame(state.rig, kp[t], cfg.threshold, cfg.mouth_ramp, cfg.map_stride,
                       cache, tr[t], frames[t])
        return frames


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
    """Raise :class:`csg.errors.InputError` when a frame's person is far outside the photo, or
    when no frame has two confident keypoints of the head, arms, face or hands; warn (one line)
    when some frames have none (they show the photo's own pose).

    Far: the neck (shoulder midpoint) more than one torso size outside the canvas, or a torso
    over 3x larger or smaller than the photo's. A warp would tear such a frame apart.
    """
    from csg import keypoints as K
    from csg.errors import InputError

    moving = np.r_[np.arange(K.LEFT_HIP), np.arange(K.FACE.start, K.NUM_KEYPOINTS)]
    empty = (poses.scores[:, moving] >= threshold).sum(1) < 2  # head, arms, face, hands
    if empty.all():
        raise InputError(f"driving skeleton: no frame has confident keypoints of the head, arms, "
                         f"face or hands (scores below {threshold:g}); nothing to animate")
    if empty.any():
        idx = np.flatnonzero(empty)
        log.warning("driving skeleton: %d of %d frames (first: %d) have no confident keypoints; "
                    "they show the photo's own pose", len(idx), len(empty), int(idx[0]))
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
            f"driving skeleton, frame {t}: the person is far outside the photo (neck at "
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
