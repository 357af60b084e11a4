"""One contract suite (renderer protocol v2), run against every registered renderer
(diffusers with tiny components)."""
from __future__ import annotations

import numpy as np
import pytest

from csg.errors import ConfigError, CsgError, InputError
from pose2video.base import (AUDIO_RATE, CanvasMismatchError, Renderer, UnknownRendererError,
                             available_renderers, get_renderer, rechunk, window_bounds)
from tests.helpers import make_moving_pose, make_reference_pose
from tests.test_diffusers_renderer import one_torch_thread  # noqa: F401 - autouse fixture

H, W = 48, 64
NAMES = [name for name, _, _ in available_renderers()]


def _options(name: str, tmp_path) -> dict:
    if name == "warp":
        return {"segment": False}
    if name == "diffusers":
        from tests.test_diffusers_renderer import tiny_options

        return tiny_options(tmp_path, strength=0.5)
    if name == "vdm":
        from tests.test_vdm import tiny_options as tiny_vdm_options

        return tiny_vdm_options()
    raise AssertionError(f"renderer {name!r} has no test options: add them to this suite")


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256
    return (base + rng.integers(0, 30, (H, W, 3))).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=NAMES)
def renderer_name(request):
    return request.param


@pytest.fixture(scope="module")
def prepared(renderer_name, tmp_path_factory):
    """(renderer, state): one prepare per renderer for the whole module (the v2 promise)."""
    r = get_renderer(renderer_name, device="cpu", dtype=None,
                     **_options(renderer_name, tmp_path_factory.mktemp(renderer_name)))
    return r, r.prepare(_photo(), make_reference_pose(H, W))


def _render(r, state, poses, seed=0, **kw):
    import torch

    return list(r.render(state, poses, generator=torch.Generator().manual_seed(seed),
                         progress=False, **kw))


def test_registry_lists_both_builtins():
    assert {"warp", "diffusers"} <= set(NAMES)
    for name, needs, desc in available_renderers():
        assert needs and desc


def test_contract(prepared, renderer_name):
    r, state = prepared
    assert isinstance(r, Renderer) and r.name == renderer_name and r.needs
    assert isinstance(r.window, int) and r.window >= 1 and 0 <= r.overlap < max(r.window, 1)
    poses = make_moving_pose(5, H, W, fps=24.0)
    calls = []
    chunks = _render(r, state, poses, chunk=3,
                     callback=lambda done, total: calls.append((done, total)))
    assert [len(c) for c in chunks] == [3, 2]  # streamed chunk by chunk
    frames = np.concatenate(chunks)
    assert frames.shape == (len(poses), H, W, 3) and frames.dtype == np.uint8
    assert calls == [(3, 5), (5, 5)]
    # same state, same generator seed -> same frames, whatever the streaming chunk
    again = np.concatenate(_render(r, state, poses, chunk=16))
    np.testing.assert_array_equal(frames, again)
    ones = _render(r, state, poses, chunk=1)
    assert [len(c) for c in ones] == [1] * 5
    np.testing.assert_array_equal(frames, np.concatenate(ones))


def test_audio_at_the_documented_rate_is_accepted(prepared):
    r, state = prepared
    poses = make_moving_pose(2, H, W, fps=25.0)
    audio = np.zeros(int(AUDIO_RATE * 2 / 25.0), np.float32)
    out = np.concatenate(_render(r, state, poses, audio=audio))
    assert out.shape == (2, H, W, 3) and AUDIO_RATE == 16000


def test_a_frame_range_renders_as_a_slice(prepared):
    r, state = prepared
    if r.window != 1:
        pytest.skip("a windowed model's frames depend on the window's other frames")
    poses = make_moving_pose(5, H, W, fps=24.0)
    whole = np.concatenate(_render(r, state, poses))
    part = np.concatenate(_render(r, state, poses.slice(2, 4)))
    assert part.shape == (2, H, W, 3)
    # per-frame renderers give nearly the same frames (temporal filters, e.g. warp's face
    # stabiliser, see fewer neighbours in a slice, so a few pixels may differ)
    assert np.abs(part.astype(int) - whole[2:4]).mean() < 1.0


def test_canvas_mismatch_is_a_clear_error(prepared):
    r, state = prepared
    wrong = make_moving_pose(2, W, H)  # swapped canvas
    with pytest.raises(CanvasMismatchError, match=f"{H}x{W}.*{W}x{H}"):
        next(iter(r.render(state, wrong, progress=False)))


def test_prepare_refuses_a_bad_photo_and_a_mismatched_reference(renderer_name, tmp_path):
    r = get_renderer(renderer_name, **_options(renderer_name, tmp_path))
    with pytest.raises(InputError, match="uint8"):
        r.prepare(_photo().astype(np.float32), make_reference_pose(H, W))
    with pytest.raises(CanvasMismatchError):
        r.prepare(_photo(), make_reference_pose(W, H))


def test_unknown_renderer_and_unknown_option_are_one_line_errors():
    with pytest.raises(UnknownRendererError, match="available: .*diffusers.*warp") as e:
        get_renderer("nope")
    assert isinstance(e.value, ValueError) and isinstance(e.value, ConfigError)
    assert isinstance(e.value, CsgError)
    for name in NAMES:
        with pytest.raises(ConfigError, match="stepz|no_such"):
            get_renderer(name, no_such_option=3)


def test_window_bounds_and_rechunk_cover_exactly():
    assert window_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert window_bounds(3, 8) == [(0, 3)]
    with pytest.raises(ValueError):
        window_bounds(3, 0)
    blocks = [np.full((n, 1, 1, 3), i, np.uint8) for i, n in enumerate([2, 5, 1, 3])]
    out = list(rechunk(iter(blocks), 4))
    assert [len(c) for c in out] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(out), np.concatenate(blocks))


def test_base_imports_no_renderer():
    """The registrations live in pose2video.registry: base imports neither warp nor diffusers."""
    import ast
    from pathlib import Path

    import pose2video.base as B

    tree = ast.parse(Path(B.__file__).read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.split(".")[0] in ("warp", "diffusers_renderer") or "warp" in m
                   for m in names), names


def test_device_in_renderer_options_is_a_one_line_config_error():
    """device / dtype are factory keywords (the run's), never renderer options from a YAML."""
    from pose2video.cli import build_renderer

    for key in ("device", "dtype"):
        with pytest.raises(ConfigError, match="run settings"):
            build_renderer("warp", "cpu", {key: "cuda"})
