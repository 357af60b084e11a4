"""Video in and out through PyAV: H.264 + AAC mp4 writing, probing and reading.

Frames are ``(H, W, 3)`` uint8 RGB. Outputs are written to a hidden temporary file in the target
folder and renamed into place on success (:func:`atomic_output`), so an error never leaves a
half-written video behind. ``av`` is imported inside the functions.
"""
from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .audio import SAMPLE_RATE, as_fraction, open_media, read_audio_track  # noqa: F401 - API
from .errors import InputError, OutputError, require_file
from .outputs import atomic_output, check_output_path  # noqa: F401 - re-exported

VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm")
"""File endings read as videos where csg looks through folders (benchmarks, decoder media)."""

logger = logging.getLogger(__name__)


# --- atomic outputs -------------------------------------------------------------------------------
# --- writing --------------------------------------------------------------------------------------
class VideoWriter:
    """Write RGB frames (and optional speech) to an H.264/AAC mp4, atomically.

    Use as a context manager; :meth:`write` takes ``(H, W, 3)`` uint8 RGB frames of ``size_hw``.
    Odd heights/widths are padded to even (yuv420p needs even sizes) by repeating the last
    row/column. ``audio`` (N,) float at ``audio_sr`` is trimmed or zero-padded to exactly
    ``frames_written / fps`` seconds and muxed as AAC. ``fps`` may be fractional (29.97).
    The output-exists / folder-not-writable checks happen here, before any work.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, size_hw: tuple[int, int], *,
                 audio: np.ndarray | None = None, audio_sr: int = SAMPLE_RATE,
                 overwrite: bool = False, crf: int = 18, codec: str = "libx264",
                 preset: str = "medium"):
        self.path = check_output_path(path, overwrite=overwrite)
        self.fps = as_fraction(fps)
        h, w = (int(v) for v in size_hw)
        if h <= 0 or w <= 0:
            raise OutputError(f"{self.path}: video size must be positive, got {h}x{w} (H x W)")
        self.size_hw = (h, w)
        self._enc_hw = (h + h % 2, w + w % 2)
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.audio_sr = int(audio_sr)
        self.overwrite, self.crf, self.codec, self.preset = overwrite, int(crf), codec, preset
        self.num_frames = 0
        self._ctx = None
        self._container = None
        self._vstream = None
        self._astream = None
        self._audio_sent = 0  # samples of audio encoded so far

    def __enter__(self) -> "VideoWriter":
        import av

        self._ctx = atomic_output(self.path, overwrite=self.overwrite)
        tmp = self._ctx.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
            vs = self._container.add_stream(self.codec, rate=self.fps)
            vs.height, vs.width = self._enc_hw
            vs.pix_fmt = "yuv420p"
            self._frame_tb = Fraction(self.fps.denominator, self.fps.numerator)
            vs.time_base = self._frame_tb
            vs.options = {"crf": str(self.crf), "preset": self.preset}
            self._vstream = vs
            if self.audio is not None:
                self._astream = self._container.add_stream("aac", rate=self.audio_sr)
                self._astream.layout = "mono"
        except BaseException as e:
            self._abort(e)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame."""
        import av

        if self._container is None:
            raise RuntimeError("VideoWriter.write called outside its with-block")
        frame = np.asarray(frame)
        if frame.shape != (*self.size_hw, 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame must be {(*self.size_hw, 3)} uint8 RGB, got "
                             f"{frame.shape} {frame.dtype}")
        h, w = self.size_hw
        if (h, w) != self._enc_hw:
            frame = np.pad(frame, ((0, self._enc_hw[0] - h), (0, self._enc_hw[1] - w), (0, 0)),
                           mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.num_frames
        vf.time_base = self._frame_tb  # not the stream's, which the muxer changes
        for packet in self._vstream.encode(vf):
            self._container.mux(packet)
        self.num_frames += 1
        if self._astream is not None:
            self._encode_audio_until(self.num_frames)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._abort(exc)
            return False
        if self.num_frames == 0:
            self._abort(None)
            raise OutputError(f"{self.path}: no frames were written; nothing saved")
        try:
            for packet in self._vstream.encode():
                self._container.mux(packet)
            if self._astream is not None:
                for packet in self._astream.encode():
                    self._container.mux(packet)
            self._container.close()
            self._container = None
        except BaseException as e:
            self._abort(e)
            raise
        self._ctx.__exit__(None, None, None)  # rename into place
        logger.info("wrote %s: %d frames at %s fps", self.path, self.num_frames, self.fps)
        return False

    def _encode_audio_until(self, num_frames: int) -> None:
        """Encode the audio up to the end of frame ``num_frames - 1`` (zeros past its end), so the
        audio track always ends exactly with the frames and is interleaved as frames arrive."""
        import av

        f = self.fps
        end = (2 * num_frames * self.audio_sr * f.denominator + f.numerator) // (2 * f.numerator)
        start = self._audio_sent
        if end <= start:
            return
        block = np.zeros(end - start, np.float32)
        src = self.audio[start:end]
        block[:src.shape[0]] = src
        af = av.AudioFrame.from_ndarray(block[None], format="flt", layout="mono")
        af.sample_rate = self.audio_sr
        af.pts = start
        af.time_base = Fraction(1, self.audio_sr)
        for packet in self._astream.encode(af):
            self._container.mux(packet)
        self._audio_sent = end

    def _abort(self, exc: BaseException | None) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._ctx is not None:
            exc = exc if exc is not None else OutputError("aborted")
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(type(exc), exc, None)  # deletes the temp file
            self._ctx = None


def write_video(path: str | os.PathLike, frames, fps: float, *, audio: np.ndarray | None = None,
                audio_sr: int = SAMPLE_RATE, overwrite: bool = False) -> Path:
    """Write an iterable of ``(H, W, 3)`` uint8 frames (size taken from the first) to ``path``."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise OutputError(f"{path}: no frames to write")
    with VideoWriter(path, fps, first.shape[:2], audio=audio, audio_sr=audio_sr,
                     overwrite=overwrite) as vw:
        vw.write(first)
        for f in it:
            vw.write(f)
    return Path(path)


# --- reading --------------------------------------------------------------------------------------
_open = open_media  # (path, container), one InputError line when unreadable


def probe_video(path: str | os.PathLike) -> dict:
    """``dict(num_frames, fps, width, height, duration, has_audio, audio_duration)`` of a video.

    ``num_frames`` is counted by demuxing (exact, no decoding); ``duration`` = num_frames / fps;
    ``audio_duration`` in seconds (0.0 when there is no audio).
    """
    p, c = _open(path)
    with c:
        if not c.streams.video:
            raise InputError(f"{p}: has no video stream")
        vs = c.streams.video[0]
        fps = vs.average_rate or vs.guessed_rate or Fraction(25)
        width, height = vs.codec_context.width, vs.codec_context.height
        has_audio = bool(c.streams.audio)
        n = 0
        audio_samples, audio_sr = 0, 0
        streams = [vs] + ([c.streams.audio[0]] if has_audio else [])
        for packet in c.demux(*streams):
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                n += 1
        if has_audio:
            a = c.streams.audio[0]
            audio_sr = a.codec_context.sample_rate
            if a.duration is not None and a.time_base is not None:
                audio_samples = float(a.duration * a.time_base) * audio_sr
    audio_duration = audio_samples / audio_sr if audio_sr else 0.0
    if has_audio and audio_duration == 0.0:
        wav, sr = read_audio_track(p)
        audio_duration = wav.shape[0] / sr
    return dict(num_frames=n, fps=float(fps), width=int(width), height=int(height),
                duration=n / float(fps), has_audio=has_audio, audio_duration=float(audio_duration))


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video as ``(H, W, 3)`` uint8 RGB, at most ``max_frames``."""
    p, c = _open(path)
    with c:
        if not c.streams.video:
            raise InputError(f"{p}: has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(c.decode(stream)):
            if max_frames is not None and i >= max_frames:
                return
            yield frame.to_ndarray(format="rgb24")


