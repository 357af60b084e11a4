"""`csg edit` in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

The page is used the way a person would: go to frame 10, drag the right wrist, lock the frame,
re-generate frames 0-50 with stage 1 (the embedded checkpoint), save. The saved JSON must have the
wrist where it was dropped, frame 10 byte-exact through the re-generation, the other frames of the
range changed and the frames after it untouched. A screenshot goes to a temp file (docs/figures/editor.png with CSG_UPDATE_FIGURES=1).

Skips, with the reason printed in the warnings summary, when Chromium, chromedriver or Selenium is
missing (install: ``apt-get install -y chromium chromium-driver``; ``pip install selenium``).
"""
from __future__ import annotations

import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from csg import keypoints as K

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "images" / "moore_anyone-3.png"
AUDIO = ROOT / "examples" / "audio" / "whisper_jfk.flac"
# the README's figure is refreshed only on request (CSG_UPDATE_FIGURES=1); otherwise a temp file
FIGURE = ROOT / "docs" / "figures" / "editor.png"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,1040", "--hide-scrollbars"]

pytestmark = pytest.mark.slow
_real_connect = socket.socket.connect


def _skip(reason: str) -> None:
    warnings.warn(f"browser test skipped: {reason}", UserWarning, stacklevel=2)
    pytest.skip(reason)


def _browser_paths() -> tuple[str, str]:
    chromium = os.environ.get("CSG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = (os.environ.get("CSG_CHROMEDRIVER") or shutil.which("chromedriver")
              or "/usr/bin/chromedriver")
    if not os.access(chromium, os.X_OK):
        _skip("Chromium is not installed (apt-get install -y chromium chromium-driver)")
    if not os.access(driver, os.X_OK):
        _skip("chromedriver is not installed (apt-get install -y chromium-driver)")
    return chromium, driver


@pytest.fixture(autouse=True)
def _loopback_only(_no_network, monkeypatch):
    """Selenium talks to chromedriver, the page to the editor: both on 127.0.0.1 only."""
    def connect(self, address):
        if self.family == socket.AF_UNIX or (self.family == socket.AF_INET
                                             and address[0] == "127.0.0.1"):
            return _real_connect(self, address)
        raise RuntimeError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def driver(tmp_path):
    chromium, chromedriver = _browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip("selenium is not installed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    d.set_script_timeout(30)
    yield d
    d.quit()


@pytest.fixture
def editor(tmp_path):
    """The embedded stage-1 model makes a 4-second skeleton for the example photo; the editor
    serves it on a free port."""
    import soundfile as sf
    import torch

    from audio2pose import Audio2PosePipeline
    from csg.audio import load_audio
    from csg.errors import WeightsNotFoundError
    from csg.extract import extract_pose
    from csg.image import load_image
    from pipeline.editor.server import EditorServer
    from pipeline.editor.session import EditorSession

    try:
        pipe = Audio2PosePipeline.from_pretrained()
    except WeightsNotFoundError as e:
        _skip(f"the embedded stage-1 checkpoint is missing ({e})")
    wav = load_audio(AUDIO)[: 16000 * 4]
    sf.write(tmp_path / "speech.wav", wav, 16000)
    ref = extract_pose(load_image(PHOTO))
    ref.save(tmp_path / "photo.pose.json")
    poses = pipe(wav, 16000, ref, generator=torch.Generator().manual_seed(0), progress=False)
    pose_file = tmp_path / "talk.pose.json"
    poses.save(pose_file)
    session = EditorSession(pose_file, PHOTO, tmp_path / "speech.wav", stage1=pipe,
                            ref_pose_path=tmp_path / "photo.pose.json", max_side=512)
    server = EditorServer(session)
    url = server.start()
    yield url, pose_file
    server.stop()


def _wait(d, script: str, timeout: float = 120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = d.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    status = d.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for: {script}; status: {status}")


def _status_has(d, text: str, timeout: float = 180.0) -> str:
    """Wait for the status line to show ``text``; fail at once when it shows an error."""
    got = _wait(d, f"const s = document.getElementById('status'); "
                   f"return s.className !== 'error' && s.textContent.includes({text!r}) "
                   f"? s.textContent : (s.className === 'error' ? 'ERROR ' + s.textContent : null)",
                timeout)
    assert not got.startswith("ERROR"), got
    return got


def _frames(path: Path) -> list[str]:
    """One line per frame (csg.pose writes frames one per line)."""
    lines = path.read_text().splitlines()
    return lines[1:-1]


def test_drag_lock_regenerate_save_in_chromium(driver, editor, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from csg.pose import PoseSequence

    url, pose_file = editor
    original = PoseSequence.load(pose_file)
    d = driver
    d.get(url)
    _wait(d, "return window.csgEditor && window.csgEditor.ready")

    box = d.find_element(By.ID, "frame-input")  # go to frame 10 as a user would
    box.clear()
    box.send_keys("10\n")
    _wait(d, "return window.csgEditor.frame === 10")

    # drag the right wrist 55 px left and 65 px up; record where the mouse was released
    d.execute_script("window.__drop = null; window.addEventListener('mouseup', "
                     "e => { window.__drop = [e.clientX, e.clientY]; }, true);")
    stage = d.find_element(By.ID, "stage")
    wrist = d.execute_script(f"return window.csgEditor.jointClientXY({K.RIGHT_WRIST})")
    rect = d.execute_script("return document.getElementById('stage').getBoundingClientRect()"
                            ".toJSON()")
    cx, cy = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
    (ActionChains(d).move_to_element_with_offset(stage, int(round(wrist["x"] - cx)),
                                                 int(round(wrist["y"] - cy)))
     .click_and_hold().move_by_offset(-30, -30).move_by_offset(-25, -35).release().perform())
    _status_has(d, "move right_wrist on frame 10")
    drop = d.execute_script("return window.__drop")
    # the photo is shown scaled to fit the canvas and centred (object-fit: contain)
    s = min(rect["width"] / original.width, rect["height"] / original.height)
    ox = rect["x"] + (rect["width"] - original.width * s) / 2
    oy = rect["y"] + (rect["height"] - original.height * s) / 2
    expected = np.array([(drop[0] - ox) / s, (drop[1] - oy) / s])

    d.find_element(By.ID, "btn-lock").click()
    _status_has(d, "lock frames 10-10")
    d.find_element(By.ID, "btn-save").click()
    _status_has(d, "saved talk.pose.json")
    after_drag = PoseSequence.load(pose_file)
    lines_a = _frames(pose_file)
    np.testing.assert_allclose(after_drag.keypoints[10, K.RIGHT_WRIST, :2], expected, atol=1e-3)
    moved = after_drag.keypoints[10, K.RIGHT_WRIST, :2] - original.keypoints[10, K.RIGHT_WRIST, :2]
    assert np.linalg.norm(moved) > 20  # it really moved (-55, -65 CSS px, scaled to the photo)

    for box_id, value in (("range-start", "0"), ("range-end", "50")):
        box = d.find_element(By.ID, box_id)
        box.clear()
        box.send_keys(value + "\t")
    d.find_element(By.ID, "btn-regenerate").click()
    _status_has(d, "re-generated", timeout=300)
    d.find_element(By.ID, "btn-save").click()
    _status_has(d, "saved talk.pose.json")
    lines_b = _frames(pose_file)
    final = PoseSequence.load(pose_file)

    assert lines_b[10] == lines_a[10]  # the locked frame, byte-exact
    np.testing.assert_allclose(final.keypoints[10, K.RIGHT_WRIST, :2], expected, atol=1e-3)
    changed = [t for t in range(51) if lines_b[t] != lines_a[t]]
    assert changed == [t for t in range(51) if t != 10]
    assert lines_b[51:] == lines_a[51:]
    assert final.meta["editor"]["locked"] == [[10, 11]]

    # play: the frame follows the audio clock
    d.find_element(By.ID, "btn-play").click()
    time.sleep(1.0)
    d.find_element(By.ID, "btn-play").click()
    frame, clock = d.execute_script("return [window.csgEditor.frame, "
                                    "document.getElementById('audio').currentTime]")
    assert clock > 0.3 and frame > 10 and abs(frame - int(clock * final.fps)) <= 1, (frame, clock)
    d.execute_script("window.csgEditor.setFrame(10)")

    # the figure: the rendered frame beside the skeleton, the range selected on the timeline
    d.find_element(By.ID, "btn-render-frame").click()
    _status_has(d, "rendered frame 10", timeout=180)
    _wait(d, "const i = document.getElementById('rendered'); return i.complete && "
             "i.naturalWidth > 0")
    time.sleep(0.3)
    shot = FIGURE if os.environ.get("CSG_UPDATE_FIGURES") == "1" else tmp_path / "editor.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # undo from the keyboard takes the re-generation back (the page reloads those frames)
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "z")
    _status_has(d, "undone: re-generate frames 0-50")
    d.execute_script("window.csgEditor.setFrame(30)")
    wrist_30 = d.execute_script(f"return window.csgEditor.jointClientXY({K.RIGHT_WRIST})")
    rect = d.execute_script("return document.getElementById('stage').getBoundingClientRect()"
                            ".toJSON()")  # smaller now: the rendered frame is shown beside it
    s = min(rect["width"] / original.width, rect["height"] / original.height)
    ox = rect["x"] + (rect["width"] - original.width * s) / 2
    oy = rect["y"] + (rect["height"] - original.height * s) / 2
    shown = [(wrist_30["x"] - ox) / s, (wrist_30["y"] - oy) / s]
    np.testing.assert_allclose(shown, after_drag.keypoints[30, K.RIGHT_WRIST, :2], atol=1e-2)
    assert np.abs(final.keypoints[30, K.RIGHT_WRIST, :2] - shown).max() > 0.1
