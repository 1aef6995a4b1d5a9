"""Annotated video files: H.264 that browsers play (PyAV), or OpenCV's mp4v as a fallback."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIDEO_CODECS = ("auto", "h264", "mp4v")


class VideoWriter(Protocol):
    path: Path
    codec: str

    def write(self, rgb: np.ndarray) -> None: ...

    def release(self) -> None: ...


def _checked_frame(path: Path, rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` as a C-contiguous 3-channel array, after checking its size against the video's."""
    frame = np.ascontiguousarray(rgb)
    if frame.shape[:2] != (height, width):
        raise ValueError(f"{path}: frame of {frame.shape[1]}x{frame.shape[0]} in a "
                         f"{width}x{height} video")
    if frame.ndim == 2:
        frame = np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    return frame


class Mp4vWriter:
    """An MP4 with OpenCV's mp4v (MPEG-4 part 2) codec: plays in VLC/ffplay, not in browsers.

    Every frame reaches OpenCV as a C-contiguous BGR array: ``VideoWriter.write`` reads the
    buffer as if it were contiguous and can crash on a view (a flipped or cropped frame).
    """

    codec = "mp4v"

    def __init__(self, path: str | Path, fps: float, shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.height, self.width = shape[:2]
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                       (self.width, self.height))
        if not self._writer.isOpened():
            raise OSError(f"cannot write the video {self.path} with OpenCV's mp4v codec")

    def write(self, rgb: np.ndarray) -> None:
        frame = _checked_frame(self.path, rgb, self.width, self.height)
        self._writer.write(np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)))

    def release(self) -> None:
        self._writer.release()


class _AudioCopy:
    """Copies a source file's first audio stream into ``container`` (no re-encoding), packet
    by packet in step with the video, and stops where the video stops."""

    def __init__(self, container, source: str | Path) -> None:
        import av

        self._container = container
        self._input = av.open(str(source))
        if not self._input.streams.audio:
            self._input.close()
            self._input = None
            log.info("%s has no audio track: the annotated video is silent", source)
            return
        self._source_stream = self._input.streams.audio[0]
        self._stream = container.add_stream_from_template(self._source_stream)
        self._packets = self._input.demux(self._source_stream)
        self._next = None

    def mux_until(self, seconds: float) -> None:
        """Write the source's audio packets that start before ``seconds``."""
        while self._input is not None:
            if self._next is None:
                self._next = next(self._packets, None)
                if self._next is None:
                    return
                if self._next.pts is None:  # demuxer's end-of-stream marker
                    self._next = None
                    continue
            if float(self._next.pts * self._source_stream.time_base) >= seconds:
                return
            packet, self._next = self._next, None
            packet.stream = self._stream
            self._container.mux(packet)

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None


class H264Writer:
    """An H.264 (yuv420p) MP4 through PyAV's bundled FFmpeg and x264: plays in browsers.

    ``audio_from`` copies that file's audio track alongside. yuv420p needs even sides: an odd
    width or height gets one black column/row. ``crf`` trades size for quality (18: visually
    lossless, 23: x264's default).
    """

    codec = "h264"

    def __init__(self, path: str | Path, fps: float, shape: tuple[int, ...],
                 audio_from: str | Path | None = None, crf: int = 20) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.height, self.width = shape[:2]
        self.fps = float(fps)
        self._container = av.open(str(self.path), "w")
        try:
            self._video = self._container.add_stream(
                "libx264", rate=Fraction(self.fps).limit_denominator(100_000))
            self._video.width = self.width + self.width % 2
            self._video.height = self.height + self.height % 2
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(crf), "preset": "veryfast"}
            self._audio = _AudioCopy(self._container, audio_from) if audio_from else None
        except Exception:
            self._container.close()
            raise
        self._frames = 0
        self._closed = False

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = _checked_frame(self.path, rgb, self.width, self.height)
        if frame.shape[:2] != (self._video.height, self._video.width):
            frame = np.pad(frame, ((0, self._video.height - self.height),
                                   (0, self._video.width - self.width), (0, 0)))
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self._frames
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)
        self._frames += 1
        if self._audio is not None:
            self._audio.mux_until(self._frames / self.fps)

    def release(self) -> None:
        """Flush the encoder and close the file (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(self._frames / self.fps)
        finally:
            if self._audio is not None:
                self._audio.close()
            self._container.close()


def open_video_writer(path: str | Path, fps: float, shape: tuple[int, ...], codec: str = "auto",
                      audio_from: str | Path | None = None) -> VideoWriter:
    """A writer for ``codec``: ``h264`` (fails without PyAV), ``mp4v``, or ``auto`` (H.264 when
    PyAV can encode it, else mp4v with a logged note). ``audio_from`` (H.264 only) copies that
    file's audio track."""
    if codec not in VIDEO_CODECS:
        raise ValueError(f"video codec must be one of {VIDEO_CODECS}, got {codec!r}")
    if codec != "mp4v":
        try:
            return H264Writer(path, fps, shape, audio_from)
        except ImportError as err:
            reason = f"PyAV is not installed ({err}); pip install av"
        except Exception as err:  # an FFmpeg build without libx264, an unwritable path, ...
            reason = f"{type(err).__name__}: {err}"
        if codec == "h264":
            raise OSError(f"cannot write H.264 video {path}: {reason}")
        log.warning("H.264 unavailable (%s): writing %s with mp4v, which browsers do not play",
                    reason, path)
    if audio_from:
        log.warning("the mp4v writer cannot copy audio: %s will be silent", path)
    return Mp4vWriter(path, fps, shape)
