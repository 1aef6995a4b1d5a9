"""Annotated videos: H.264 that browsers play, frame-accurate, with the source's audio if asked."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.detect import video_writer as video_writer_module
from emotion_lightning.detect.video_writer import H264Writer, Mp4vWriter, open_video_writer
from tests.helpers import StubFinder, write_video

av = pytest.importorskip("av", reason="PyAV (a dependency) writes H.264")

LEVELS = [20 + 18 * i for i in range(12)]  # one gray level per frame: frame order is visible


def frames(height: int = 80, width: int = 96) -> list[np.ndarray]:
    return [np.full((height, width, 3), level, np.uint8) for level in LEVELS]


def decoded(path: Path) -> tuple[list[np.ndarray], dict]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "rate": stream.average_rate, "audio": [s.codec_context.name
                                                        for s in container.streams.audio]}
        images = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return images, info


def test_h264_yuv420p_decodes_frame_accurately(tmp_path):
    writer = H264Writer(tmp_path / "out.mp4", 12.5, (80, 96, 3))
    for frame in frames():
        writer.write(frame)
    writer.release()
    writer.release()  # a second close (e.g. in a finally) is harmless
    images, info = decoded(tmp_path / "out.mp4")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == Fraction(25, 2) and info["audio"] == []
    assert len(images) == len(LEVELS)
    assert [int(round(img.mean())) for img in images] == pytest.approx(LEVELS, abs=3)


def test_odd_sizes_gray_and_non_contiguous_frames(tmp_path):
    small = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    picture = cv2.resize(small, (97, 81), interpolation=cv2.INTER_CUBIC)
    flipped = picture[:, ::-1]
    assert not flipped.flags["C_CONTIGUOUS"]
    writer = H264Writer(tmp_path / "odd.mp4", 5.0, flipped.shape)
    writer.write(flipped)
    writer.write(np.full((81, 97), 200, np.uint8))  # gray frames are accepted
    with pytest.raises(ValueError, match="frame of 96x80 in a 97x81 video"):
        writer.write(np.zeros((80, 96, 3), np.uint8))
    writer.release()
    images, _ = decoded(tmp_path / "odd.mp4")
    assert [img.shape for img in images] == [(82, 98, 3)] * 2  # padded to even sides
    error = np.abs(images[0][:81, :97].astype(int) - flipped.astype(int)).mean()
    unflipped = np.abs(images[0][:81, :97].astype(int) - picture.astype(int)).mean()
    assert error < 8 < unflipped, "the flipped picture was written, not a scrambled buffer"
    assert abs(images[1][:81, :97].mean() - 200) < 3


def write_clip_with_audio(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        samples = 0
        for i in range(int(seconds * fps)):
            image = np.full((48, 64, 3), 10 * i % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            while samples < (i + 1) * 16000 / fps:
                tone = np.sin(2 * np.pi * 440 * (samples + np.arange(1024)) / 16000)
                frame = av.AudioFrame.from_ndarray((0.3 * tone[None]).astype(np.float32),
                                                   format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, samples
                samples += 1024
                for packet in audio.encode(frame):
                    container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.codec_context.sample_rate


def test_keep_audio_copies_the_track_up_to_the_video_end(tmp_path):
    source = write_clip_with_audio(tmp_path / "talk.mp4", seconds=2.0)
    assert audio_seconds(source) >= 2.0
    writer = H264Writer(tmp_path / "out.mp4", 10.0, (48, 64, 3), audio_from=source)
    for i in range(10):  # one second of video
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    images, info = decoded(tmp_path / "out.mp4")
    assert len(images) == 10 and info["audio"] == ["aac"]
    assert 0.9 <= audio_seconds(tmp_path / "out.mp4") <= 1.2  # cut where the video ends
    # a source without audio gives a silent video, not an error
    silent = write_video(tmp_path / "silent.avi", frames=3)
    writer = H264Writer(tmp_path / "silent.mp4", 7.0, (80, 96, 3), audio_from=silent)
    writer.write(np.zeros((80, 96, 3), np.uint8))
    writer.release()
    assert decoded(tmp_path / "silent.mp4")[1]["audio"] == []


def test_auto_falls_back_to_mp4v_with_a_warning(tmp_path, monkeypatch, caplog):
    assert open_video_writer(tmp_path / "a.mp4", 5.0, (8, 8, 3)).codec == "h264"
    assert isinstance(open_video_writer(tmp_path / "b.mp4", 5.0, (8, 8, 3), "mp4v"), Mp4vWriter)

    def no_pyav(*args, **kwargs):
        raise ImportError("No module named 'av'")

    monkeypatch.setattr(video_writer_module, "H264Writer", no_pyav)
    with caplog.at_level(logging.WARNING):
        writer = open_video_writer(tmp_path / "c.mp4", 5.0, (8, 8, 3), "auto", "src.mp4")
    assert isinstance(writer, Mp4vWriter)
    assert "browsers do not play" in caplog.text and "will be silent" in caplog.text
    with pytest.raises(OSError, match="cannot write H.264 video .*pip install av"):
        open_video_writer(tmp_path / "d.mp4", 5.0, (8, 8, 3), "h264")
    with pytest.raises(ValueError, match="video codec must be one of"):
        open_video_writer(tmp_path / "e.mp4", 5.0, (8, 8, 3), "vp9")


def test_emotion_detect_writes_h264_with_the_audio(classifier, tmp_path):
    source = write_clip_with_audio(tmp_path / "talk.mp4", seconds=1.0)
    detector = EmotionDetector(classifier, StubFinder([[10, 5, 40, 40]]))
    report = MediaAnnotator(detector, tmp_path / "out", keep_audio=True,
                            progress=False).run(str(source))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sources"][0]["codec"] == "h264" == report.sources[0].codec
    images, info = decoded(Path(report.sources[0].output))
    assert len(images) == 10 and info["codec"] == "h264" and info["audio"] == ["aac"]
    with pytest.raises(ValueError, match="video_codec must be one of"):
        MediaAnnotator(detector, tmp_path / "out2", video_codec="gif")
