"""One contract suite, run against every registered renderer (diffusers with tiny components)."""
from __future__ import annotations

import numpy as np
import pytest

from csg.errors import ConfigError, CsgError
from pose2video.base import (CanvasMismatchError, Renderer, UnknownRendererError,
                             available_renderers, get_renderer, window_bounds)
from tests.helpers import make_moving_pose, make_reference_pose
from tests.test_diffusers_renderer import one_torch_thread  # noqa: F401 - autouse fixture

H, W = 48, 64
NAMES = [name for name, _, _ in available_renderers()]


def _options(name: str, tmp_path) -> dict:
    if name == "warp":
        return {"segment": False, "window": 3}
    if name == "diffusers":
        from tests.test_diffusers_renderer import tiny_options

        return tiny_options(tmp_path, window=3, strength=0.5)
    raise AssertionError(f"renderer {name!r} has no test options: add them to this suite")


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256
    return (base + rng.integers(0, 30, (H, W, 3))).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=NAMES)
def renderer_name(request):
    return request.param


def _render(r, poses, seed=0, **kw):
    import torch

    return list(r.render(_photo(), poses, ref_pose=make_reference_pose(H, W),
                         generator=torch.Generator().manual_seed(seed), progress=False, **kw))


def test_registry_lists_both_builtins():
    assert {"warp", "diffusers"} <= set(NAMES)
    for name, needs, desc in available_renderers():
        assert needs and desc


def test_contract(renderer_name, tmp_path):
    r = get_renderer(renderer_name, **_options(renderer_name, tmp_path))
    assert isinstance(r, Renderer) and r.name == renderer_name and r.needs
    poses = make_moving_pose(5, H, W, fps=24.0)
    calls = []
    windows = _render(r, poses, callback=lambda done, total: calls.append((done, total)))
    assert [len(w) for w in windows] == [3, 2]  # streamed window by window
    frames = np.concatenate(windows)
    assert frames.shape == (len(poses), H, W, 3) and frames.dtype == np.uint8
    assert calls == [(3, 5), (5, 5)]
    again = np.concatenate(_render(r, poses))
    np.testing.assert_array_equal(frames, again)  # same generator seed -> same frames


def test_canvas_mismatch_is_a_clear_error(renderer_name, tmp_path):
    r = get_renderer(renderer_name, **_options(renderer_name, tmp_path))
    wrong = make_moving_pose(2, W, H)  # swapped canvas
    with pytest.raises(CanvasMismatchError, match=f"{H}x{W}.*{W}x{H}"):
        next(iter(r.render(_photo(), wrong, ref_pose=make_reference_pose(H, W), progress=False)))


def test_unknown_renderer_lists_available():
    with pytest.raises(UnknownRendererError, match="available: .*diffusers.*warp") as e:
        get_renderer("nope")
    assert isinstance(e.value, ValueError) and isinstance(e.value, ConfigError)
    assert isinstance(e.value, CsgError)


def test_window_bounds_cover_exactly():
    assert window_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert window_bounds(3, 8) == [(0, 3)]
    with pytest.raises(ValueError):
        window_bounds(3, 0)
