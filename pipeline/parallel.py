"""Frames drawn by two processes, written in order: ``csg run``'s renderer spans in its helper.

A renderer whose frames are independent once the whole sequence is planned (protocol v2's
optional ``plan`` / ``render_span``, :class:`pose2video.base.Renderer`; ``warp``) can draw any
frame range anywhere. :func:`render_parallel` cuts the sequence into spans of ``span`` frames and
shares them between this process and the forked helper of :mod:`pipeline.worker` (idle once
stage 1 has answered): the helper always holds the next one or two spans in order, this process
draws the spans after them meanwhile, and the spans are yielded strictly in order, so the encoder
(:func:`pipeline.cli.write_chunks`, a thread of this process) gets the same frames in the same
order as from ``renderer.render`` and writes the same bytes (``tests/test_parallel_render.py``).

Work is handed out as it is done, not split in advance, so the share adapts to what else runs on
the machine (the encoder thread, other jobs). Memory stays bounded: the helper draws into at most
``slots`` spans of a shared buffer and this process keeps at most ``slots`` drawn spans waiting.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

SPAN = 8
"""Frames per span: small enough to share the work evenly, large enough that messages cost
nothing next to drawing (about 0.1 s of warp work at 512 px)."""
SLOTS = 4
"""Spans of the helper's shared buffer."""
MAX_SIDE = 2048
"""Working sizes above this are drawn by one process (the buffer would pass 400 MB)."""


def buffer_bytes(max_side: int, span: int = SPAN, slots: int = SLOTS) -> int:
    """Bytes of the shared buffer for frames whose longer side is at most ``max_side`` (0 or
    less: unknown; above :data:`MAX_SIDE`: no buffer)."""
    if max_side <= 0 or max_side > MAX_SIDE:  # unknown, or frames too large to be worth it
        return 0
    side = int(max_side) + 16  # working sizes round to multiples of 8 or 16
    return slots * span * side * side * 3


def splittable(renderer: Any) -> bool:
    """Whether ``renderer`` draws frame spans on their own (``plan`` and ``render_span``)."""
    return callable(getattr(renderer, "plan", None)) and \
        callable(getattr(renderer, "render_span", None))


def can_split(renderer: Any, worker: Any) -> bool:
    """Whether ``renderer``'s frames can be drawn in ``worker`` too."""
    return bool(getattr(worker, "can_render", False)) and splittable(renderer)


def render_parallel(renderer: Any, state: Any, poses: Any, worker: Any, *,
                    audio: np.ndarray | None = None, span: int = SPAN, slots: int = SLOTS,
                    progress: bool = True, callback: Callable[[int, int], None] | None = None,
                    ) -> Iterator[np.ndarray]:
    """Yield (n, H, W, 3) uint8 spans of ``len(poses)`` frames in order, drawn here and in
    ``worker`` (:class:`pipeline.worker.Stage1Worker` with a frame buffer). A yielded span may
    be a view of the shared buffer, valid until the next one is requested (the caller copies
    it, as :func:`pipeline.cli.write_chunks` does). Errors of the helper are raised here."""
    from pose2video.base import ProgressBar, window_bounds

    h, w = state.size_hw
    slot_bytes = span * h * w * 3
    slots = min(int(slots), worker.frame_bytes // slot_bytes)
    if slots < 1:  # frames larger than the buffer: the renderer draws them all here
        yield from renderer.render(state, poses, audio=audio, progress=progress,
                                   callback=callback, chunk=span)
        return
    plan = renderer.plan(state, poses, audio=audio)
    bounds = window_bounds(len(poses), span)
    worker.render_setup(state, plan)
    free = list(range(slots))[::-1]
    away: dict[int, int] = {}  # span index -> slot, given to the helper
    ready: dict[int, Any] = {}  # span index -> drawn here (array) or by the helper (slot)
    nxt = emit = 0
    with ProgressBar(len(poses), progress, renderer.name) as bar:
        while emit < len(bounds):
            while nxt < len(bounds) and len(away) < 2 and free:  # keep the helper busy
                slot = free.pop()
                worker.render_span(nxt, *bounds[nxt], slot * slot_bytes)
                away[nxt] = slot
                nxt += 1
            for i in worker.rendered(timeout=0):
                ready[i] = away.pop(i)
            if emit in ready:
                a, b = bounds[emit]
                got = ready.pop(emit)
                if isinstance(got, np.ndarray):
                    yield got
                else:
                    yield np.frombuffer(worker.frames, np.uint8, (b - a) * h * w * 3,
                                        got * slot_bytes).reshape(b - a, h, w, 3)
                    free.append(got)
                bar.update(b - a)
                if callback is not None:
                    callback(b, len(poses))
                emit += 1
            elif nxt < len(bounds) and sum(1 for v in ready.values()
                                           if isinstance(v, np.ndarray)) < slots:
                ready[nxt] = renderer.render_span(state, plan, *bounds[nxt])  # draw one here
                nxt += 1
            else:  # the next span in order is the helper's: wait for it
                for i in worker.rendered(timeout=None):
                    ready[i] = away.pop(i)
