"""Frames drawn by csg run's helper process too (pipeline.parallel): same frames, same order.

The mechanics are tested with a pure-numpy renderer (forking a test process that may have
imported torch or OpenCV is only safe for such code); that `csg run` with warp writes the same
bytes drawn in two processes as in one is the slow subprocess test in tests/test_startup.py.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline import worker as W
from pipeline.parallel import buffer_bytes, can_split, render_parallel, splittable


class StripeRenderer:
    """Frame t is a function of the planned value of frame t alone (like warp's)."""

    name = "stripes"

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.drawn_by: list[int] = []

    def plan(self, state, poses, *, audio=None, generator=None):
        return np.asarray(poses, np.float64) * 3.0

    def render_span(self, state, plan, start, stop, out=None):
        h, w = state.size_hw
        out = np.empty((stop - start, h, w, 3), np.uint8) if out is None else out
        for t in range(start, stop):
            if self.fail_at is not None and t == self.fail_at and os.getpid() != PARENT:
                raise ValueError(f"frame {t}: cannot draw it")
            out[t - start] = (np.arange(h * w * 3).reshape(h, w, 3) + int(plan[t])) % 251
        self.drawn_by.append(os.getpid())
        return out

    def render(self, state, poses, chunk=16, **_):
        plan = self.plan(state, poses)
        for a in range(0, len(poses), chunk):
            yield self.render_span(state, plan, a, min(a + chunk, len(poses)))


class State:
    size_hw = (6, 10)


class Pipe:
    def __init__(self, renderer):
        self._r = renderer

    def renderer(self):
        return self._r


PARENT = os.getpid()


def _helper(renderer, frame_bytes):
    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    return W.Stage1Worker(Pipe(renderer), preimport=(), stage1=False, frame_bytes=frame_bytes)


@pytest.mark.parametrize("n", [1, 7, 40])
def test_spans_drawn_in_two_processes_come_out_in_order_and_equal(n):
    r = StripeRenderer()
    poses = np.arange(n) * 7 % 13
    expect = np.concatenate(list(r.render(State(), poses)))
    helper = _helper(r, 3 * 4 * 6 * 10 * 3)  # 3 slots of 4 frames
    try:
        assert can_split(r, helper) and splittable(r)
        seen = []
        chunks = render_parallel(r, State(), poses, helper, span=4, slots=3, progress=False,
                                 callback=lambda done, total: seen.append((done, total)))
        got = np.concatenate([np.array(c) for c in chunks])  # copied as the encoder does
    finally:
        helper.close()
    np.testing.assert_array_equal(got, expect)
    assert seen[-1] == (n, n) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_the_helper_really_draws_and_this_process_too():
    r = StripeRenderer()
    poses = np.arange(64)
    helper = _helper(r, 2 * 4 * 6 * 10 * 3)
    here = []
    try:
        orig = r.render_span

        def counted(*a, **k):
            here.append(a[2])
            return orig(*a, **k)

        r.render_span = counted  # in this process only (the child has its own copy)
        out = np.concatenate([np.array(c) for c in render_parallel(
            r, State(), poses, helper, span=4, slots=2, progress=False)])
    finally:
        helper.close()
    assert len(out) == 64
    assert 0 < len(here) < 16  # some spans here, the rest in the helper


def test_an_error_in_the_helper_is_raised_here_with_its_message():
    r = StripeRenderer(fail_at=0)  # frame 0 is always the helper's
    helper = _helper(r, 2 * 4 * 6 * 10 * 3)
    try:
        with pytest.raises(ValueError, match="frame 0: cannot draw it"):
            list(render_parallel(r, State(), np.arange(20), helper, span=4, slots=2,
                                 progress=False))
    finally:
        helper.close()


def test_frames_larger_than_the_buffer_are_all_drawn_here():
    r = StripeRenderer()
    poses = np.arange(9)
    helper = _helper(r, 10)  # too small for one span
    try:
        out = np.concatenate(list(render_parallel(r, State(), poses, helper, span=4,
                                                  progress=False)))
    finally:
        helper.close()
    np.testing.assert_array_equal(out, np.concatenate(list(r.render(State(), poses))))


def test_buffer_size_and_who_can_split():
    assert buffer_bytes(0) == 0 and buffer_bytes(4096) == 0
    assert buffer_bytes(512, span=8, slots=4) >= 4 * 8 * 512 * 512 * 3

    class Plain:
        def render(self):
            pass

    assert not splittable(Plain())
    assert not can_split(StripeRenderer(), W.InProcessStage1(None))


def test_warp_spans_in_any_order_are_the_frames_render_yields():
    from pose2video.warp import WarpRenderer, WarpConfig
    from tests.helpers import make_moving_pose, make_reference_pose
    from tests.test_warp import _textured

    img = _textured(96, 128)
    r = WarpRenderer(WarpConfig(segment=False))
    state = r.prepare(img, make_reference_pose(96, 128))
    poses = make_moving_pose(11, 96, 128)
    expect = np.concatenate(list(r.render(state, poses, chunk=4, progress=False)))
    plan = r.plan(state, poses)
    spans = [(8, 11), (0, 4), (4, 8)]
    got = {a: r.render_span(state, plan, a, b) for a, b in spans}
    np.testing.assert_array_equal(np.concatenate([got[0], got[4], got[8]]), expect)
    assert splittable(r)
