"""Shared pieces of the bad-input tests (issue #11 B): a tiny scene that `csg run` renders in about a
second without any model (a given skeleton, the warp renderer without segmentation), and the
assertion every case makes: a non-zero exit, exactly one error line that says what is wrong (never
"unexpected"), no traceback, no file left, nothing outside the output touched."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.helpers import make_moving_pose, make_reference_pose

H, W = 96, 128  # photo and skeleton canvas


def textured(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 6, w // 6, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def speech_like(seconds: float = 0.8, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * env * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def make_scene(root: Path) -> dict[str, Path]:
    """Inputs under ``root/in``: photo.png, ref.json, pose.json (12 frames), speech.wav,
    warp.yaml (no segmentation: no MediaPipe)."""
    import soundfile as sf

    from csg.image import save_image

    d = root / "in"
    d.mkdir(parents=True, exist_ok=True)
    save_image(d / "photo.png", textured())
    make_reference_pose(height=H, width=W).save(d / "ref.json")
    make_moving_pose(12, height=H, width=W).save(d / "pose.json")
    sf.write(d / "speech.wav", speech_like(), 16000)
    (d / "warp.yaml").write_text("segment: false\nmouth: false\nwindow: 4\n")
    return {"photo": d / "photo.png", "ref": d / "ref.json", "pose": d / "pose.json",
            "audio": d / "speech.wav", "yaml": d / "warp.yaml", "dir": d}


def run_args(scene: dict[str, Path], out: Path, *extra) -> list[str]:
    """`csg run` of the scene's skeleton (stage 1 skipped) into ``out``."""
    return ["run", "--ref", str(scene["photo"]), "--audio", str(scene["audio"]), "--pose",
            str(scene["pose"]), "--ref-pose", str(scene["ref"]), "--set", "render.max_side=64",
            "--set", f"render.config={scene['yaml']}", "--quiet", "-o", str(out),
            *map(str, extra)]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file (and (0, 0) for every folder) under
    ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            # folders: only that they exist (their mtime moves with any lock or temp file)
            out[str(p.relative_to(root))] = ((0, 0) if p.is_dir() else
                                             (st.st_size, st.st_mtime_ns))
    return out


def assert_one_clear_line(rc: int, err: str, needle: str, *, exit_code: int | None = None) -> str:
    """Non-zero exit, one line on stderr starting with ``error:``, naming ``needle``, without
    "unexpected" or a traceback. Returns the line."""
    assert rc != 0, err
    if exit_code is not None:
        assert rc == exit_code, (rc, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error:"), err
    assert "unexpected" not in line.lower(), err
    assert "Traceback" not in err
    assert needle.lower() in line.lower(), err
    return line


def assert_untouched(before: dict, root: Path, *, allowed: tuple[str, ...] = ()) -> None:
    """Nothing under ``root`` was created, changed or removed (``allowed``: relative paths that
    may differ)."""
    after = snapshot(root)
    changed = {k for k in set(before) | set(after)
               if before.get(k) != after.get(k) and not any(k == a or k.startswith(a + "/")
                                                             for a in allowed)}
    assert not changed, sorted(changed)
