"""csg.draw primitives: the scalar dot draws what the numpy/_blend dot did, absurd points are
skipped."""
from __future__ import annotations

import numpy as np

from csg import draw
from tests.helpers import make_moving_pose


def _reference_dot(img, p, color, radius, alpha):
    """The dot as it was drawn before the scalar path: through draw._blend."""
    import cv2

    pts = p[None, :2].astype(np.float64)

    def paint(canvas, off):
        c = np.round(pts[0] - off).astype(int)
        cv2.circle(canvas, (int(c[0]), int(c[1])), radius, color, thickness=-1,
                   lineType=cv2.LINE_AA)

    draw._blend(img, pts, radius, alpha, paint)


def test_dot_fast_path_draws_what_the_reference_dot_draws():
    rng = np.random.default_rng(0)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(10, 80, 2))
        n = 60
        pts = np.column_stack([rng.uniform(-8, w + 8, n), rng.uniform(-8, h + 8, n),
                               rng.uniform(0, 1.3, n)]).astype(np.float32)
        pts[rng.integers(0, n, 3), 0] = np.nan
        base = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        radius = int(rng.integers(1, 4))
        fast = base.copy()
        draw._draw_points(fast, pts, (255, 40, 90), radius, 0.3)
        ref = base.copy()
        for p in pts:  # the reference: one _blend dot per point, as before the scalar path
            alpha = draw._alpha(p[2], 0.3)
            if alpha > 0 and np.isfinite(p[:2]).all():
                _reference_dot(ref, p, (255, 40, 90), radius, alpha)
        assert np.array_equal(fast, ref), trial


def test_points_far_off_the_canvas_are_not_drawn():
    kp = make_moving_pose(1, 128, 128).keypoints[0].copy()
    far = kp.copy()
    far[100, 0], far[101, 1], far[30, 0] = 1e30, -1e12, np.inf  # hand and face points
    gone = kp.copy()
    gone[[100, 101, 30], 2] = 0.0
    assert np.array_equal(draw.draw_pose(far, (128, 128)), draw.draw_pose(gone, (128, 128)))
