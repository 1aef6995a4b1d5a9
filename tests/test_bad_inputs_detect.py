"""Interruptions of emotion-detect: a signal stops it with a playable video and a summary;
the video writer takes any frame layout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.detect.video_writer import Mp4vWriter
from emotion_lightning.models import EmotionClassifier
from tests.helpers import StubFinder, video_info, write_video


def detect_command() -> list[str]:
    script = Path(sys.executable).with_name("emotion-detect")
    return [str(script)] if script.is_file() else [sys.executable, "-m",
                                                   "emotion_lightning.cli.detect"]


def frames_done(stderr_file: Path) -> int:
    """Frames the progress bar has counted so far (it is written to stderr)."""
    counts = re.findall(r"(\d+)/\d+ \[", stderr_file.read_text(errors="replace"))
    return int(counts[-1]) if counts else 0


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_emotion_detect_with_a_playable_video_and_a_summary(
        checkpoint, tmp_path, sig, code):
    video = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for i in range(6000):
        writer.write(np.full((48, 64, 3), (7 * i) % 256, np.uint8))
    writer.release()
    out = tmp_path / "out"
    env = {**os.environ, "EMOTION_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [*detect_command(), f"ckpt_path={checkpoint}", f"input={video}",
             f"output_dir={out}", "batch_size=1", "threads=1", "progress=true",
             f"paths.log_dir={tmp_path / 'logs'}"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=tmp_path,
            # a suite started in the background (`cmd &`) ignores SIGINT, and so would the
            # child: give it the default, as a terminal's Ctrl-C finds it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 180
            while frames_done(err) < 3:
                assert process.poll() is None, err.read_text()[-2000:]
                assert time.monotonic() < deadline, "no frames were annotated in time"
                time.sleep(0.1)
            process.send_signal(sig)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert returncode == code, err.read_text()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == sig.name
    assert 3 <= summary["frames"] < 6000
    frames, fps, size = video_info(out / "long.mp4")
    assert 0 < frames <= summary["frames"] and size == (64, 48), "the MP4 was closed properly"


@pytest.fixture(scope="module")
def classifier(checkpoint) -> EmotionClassifier:
    return EmotionClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()


def test_sigterm_in_process_keeps_outputs_and_restores_the_handler(classifier, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=10)

    class KilledFinder(StubFinder):
        def detect(self, images):
            if self.calls == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().detect(images)

    def previous(signum, frame):  # a handler of the program using MediaAnnotator
        raise AssertionError("the annotator's own handler must be active during the run")

    before = signal.signal(signal.SIGTERM, previous)
    try:
        annotator = MediaAnnotator(EmotionDetector(classifier, KilledFinder([[10, 10, 50, 60]])),
                                   tmp_path / "out", batch_size=1, progress=False)
        report = annotator.run(str(video))
        assert signal.getsignal(signal.SIGTERM) is previous, "the previous handler is restored"
    finally:
        signal.signal(signal.SIGTERM, before)
    assert report.stopped == "SIGTERM"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and 0 < summary["frames"] < 10
    assert 0 < video_info(tmp_path / "out" / "clip.mp4")[0] <= summary["frames"]


def test_video_writer_takes_non_contiguous_frames(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    picture = cv2.resize(small, (96, 80), interpolation=cv2.INTER_CUBIC)
    flipped = picture[:, ::-1]  # a view: negative strides, not C-contiguous
    assert not flipped.flags["C_CONTIGUOUS"]
    writer = Mp4vWriter(tmp_path / "flip.mp4", 7.0, flipped.shape)
    for _ in range(4):
        writer.write(flipped)
        writer.write(picture[::2, ::2].repeat(2, 0).repeat(2, 1)[:80, :96])
    writer.release()
    capture = cv2.VideoCapture(str(tmp_path / "flip.mp4"))
    ok, first = capture.read()
    capture.release()
    assert ok
    assert video_info(tmp_path / "flip.mp4")[0] == 8
    error = np.abs(cv2.cvtColor(first, cv2.COLOR_BGR2RGB).astype(int) - flipped.astype(int))
    assert error.mean() < 12, "the frame was written as the flipped picture, not scrambled"


