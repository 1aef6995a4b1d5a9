"""Annotate images, folders, globs, videos and webcams into an output folder.

Each input gets an annotated copy (``<output_dir>/<name>``; videos as MP4 at the source's
frame rate and size, H.264 where PyAV is installed, optionally with the source's audio) and one row per face per searched frame in
``<output_dir>/detections.csv``; ``<output_dir>/summary.json`` lists what was done and
skipped. Rows are flushed frame by frame and video writers are closed whatever happens,
so a run that fails or is stopped (Ctrl-C, or SIGTERM from ``kill``, ``timeout``, systemd
or SLURM) keeps everything written so far; ``stopped`` in the summary says why it ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from emotion_lightning.detect.drawing import draw_faces
from emotion_lightning.detect.emotion_detector import EmotionDetector
from emotion_lightning.detect.results import FaceEmotion
from emotion_lightning.detect.sources import (
    Frame,
    Media,
    Skipped,
    UnreadableVideo,
    VideoReader,
    collect_media,
)
from emotion_lightning.detect.table import DetectionTable
from emotion_lightning.detect.tracking import FaceTracker
from emotion_lightning.detect.video_writer import VIDEO_CODECS, open_video_writer
from emotion_lightning.images import UnreadableImage, load_image

log = logging.getLogger(__name__)

TABLE_NAME = "detections.csv"
SUMMARY_NAME = "summary.json"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives during a run, so it stops like Ctrl-C."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block; restore the previous handler.

    Only the first signal raises: a second one during the cleanup is ignored, so the
    writers are still closed and the summary written. Outside the main thread (where
    Python cannot install handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame) -> None:
        if fired:
            log.warning("%s again: still closing the outputs", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@dataclass
class SourceReport:
    """What was done with one input."""

    source: str
    kind: str
    frames: int = 0  # frames read
    searched: int = 0  # frames searched for faces (every n-th frame of a video)
    faces: int = 0  # rows written to the table
    output: str | None = None  # the annotated file
    codec: str | None = None  # the annotated video's codec: h264 or mp4v
    note: str | None = None  # e.g. a video that ended early


@dataclass
class RunReport:
    """Every input's report, the skipped inputs, and how the run ended."""

    output_dir: str
    table: str
    sources: list[SourceReport] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the run ended early: SIGINT, SIGTERM or the error

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sources)

    @property
    def faces(self) -> int:
        return sum(s.faces for s in self.sources)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(frames=self.frames, faces=self.faces,
                   frames_per_second=self.frames / self.seconds if self.seconds > 0 else None)
        return out


class MediaAnnotator:
    """Runs an :class:`EmotionDetector` over inputs and writes annotated files and a table.

    Args:
        detector: finds and classifies the faces.
        output_dir: where the annotated files, ``detections.csv`` and ``summary.json`` go.
        every_n_frames: search faces in every n-th video frame (the annotated video keeps
            every frame).
        track: follow the faces between searches (optical flow), give each a track id, and
            classify every face on every frame; ``False``: the frames between searches show
            the last search's faces and only searched frames get rows.
        smoothing: with ``track``, weight of the past in each track's running average of
            class probabilities, used for the drawn label and ``track_label`` (0: none).
        batch_size: images or searched video frames per detector batch (video frames in
            between are held in memory until their batch is done).
        max_frames: stop each video or webcam after this many frames (``None``: the end).
        save_annotated: write annotated images and videos (``False``: the table only).
        bars: draw the per-class probability chart beside each face.
        overwrite: replace existing output files instead of refusing to start.
        progress: show a progress bar with frames per second.
        video_codec: ``auto`` (H.264 when PyAV can encode it, else mp4v with a warning),
            ``h264`` (fail without it) or ``mp4v`` (OpenCV; browsers do not play it).
        keep_audio: copy a video file's audio track into its annotated copy (H.264 only).
    """

    def __init__(
        self,
        detector: EmotionDetector,
        output_dir: str | Path,
        every_n_frames: int = 1,
        batch_size: int = 8,
        max_frames: int | None = None,
        save_annotated: bool = True,
        bars: bool = True,
        overwrite: bool = False,
        progress: bool = True,
        video_codec: str = "auto",
        keep_audio: bool = False,
        track: bool = True,
        smoothing: float = 0.0,
    ) -> None:
        if video_codec not in VIDEO_CODECS:
            raise ValueError(f"video_codec must be one of {VIDEO_CODECS}, got {video_codec!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if every_n_frames < 1:
            raise ValueError(f"every_n_frames must be at least 1, got {every_n_frames}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1 or null, got {max_frames}")
        self.detector = detector
        self.output_dir = Path(output_dir)
        self.every_n_frames = every_n_frames
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.save_annotated = save_annotated
        self.bars = bars
        self.overwrite = overwrite
        self.progress = progress
        self.video_codec = video_codec
        self.keep_audio = keep_audio
        self.track = track
        self.smoothing = smoothing

    def run(self, inputs: str | int | Sequence[str | int]) -> RunReport:
        """Annotate every input; unreadable inputs are reported, skipped and listed."""
        media, skipped = collect_media(inputs, exclude=self.output_dir)
        for item in skipped:
            log.warning("skipped %s: %s", item.source, item.reason)
        if not media:
            reasons = "; ".join(f"{s.source}: {s.reason}" for s in skipped)
            raise FileNotFoundError(f"nothing to annotate ({reasons})")
        self._check_outputs(media)
        report = RunReport(str(self.output_dir), str(self.output_dir / TABLE_NAME), skipped=skipped)
        bar = tqdm(total=_announced_frames(media, self.max_frames), unit="frame",
                   disable=not self.progress, dynamic_ncols=True)
        start = time.perf_counter()
        with _stop_on_sigterm():
            try:
                with DetectionTable(report.table, self.detector.class_names) as table:
                    for group in _groups(media, self.batch_size):
                        if group[0].kind == "image":
                            self._annotate_images(group, table, report, bar)
                        else:
                            self._annotate_video(group[0], table, report, bar)
            except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Terminated
                report.stopped = getattr(stop, "signal_name", "SIGINT")
                log.warning("stopped by %s: everything written so far is kept", report.stopped)
            except BaseException as error:
                report.stopped = f"{type(error).__name__}: {error}"
                raise
            finally:
                bar.close()
                report.seconds = time.perf_counter() - start
                self.output_dir.mkdir(parents=True, exist_ok=True)
                (self.output_dir / SUMMARY_NAME).write_text(json.dumps(report.to_dict(), indent=2))
        return report

    def _check_outputs(self, media: list[Media]) -> None:
        """Refuse to write over an input, or over existing outputs unless ``overwrite``."""
        planned = [self.output_dir / TABLE_NAME, self.output_dir / SUMMARY_NAME]
        if self.save_annotated:
            planned += [self.output_dir / m.output_name for m in media]
        inputs = {Path(m.location).resolve() for m in media if m.kind != "webcam"}
        for path in planned:
            if path.resolve() in inputs:
                raise ValueError(f"the annotated copy would overwrite the input {path}; "
                                 "choose another output_dir")
        existing = [str(p) for p in planned if p.exists()]
        if existing and not self.overwrite:
            raise FileExistsError(
                f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; pass "
                "overwrite=true to replace them, or choose another output_dir"
            )

    def _annotate_images(self, group: list[Media], table, report: RunReport, bar) -> None:
        decoded: list[tuple[Media, np.ndarray]] = []
        for item in group:
            try:
                decoded.append((item, load_image(item.location).rgb))
            except UnreadableImage as error:
                report.skipped.append(Skipped(item.source, error.reason))
                log.warning("skipped %s", error)
                bar.update(1)
        found = self.detector.detect_batch([rgb for _, rgb in decoded]) if decoded else []
        for (item, rgb), faces in zip(decoded, found, strict=True):
            table.write_frame(item.source, 0, None, faces)
            entry = SourceReport(item.source, "image", frames=1, searched=1, faces=len(faces))
            if self.save_annotated:
                entry.output = str(self._write_image(item, rgb, faces))
            report.sources.append(entry)
            bar.update(1)

    def _write_image(self, item: Media, rgb: np.ndarray, faces: list[FaceEmotion]) -> Path:
        path = self.output_dir / item.output_name
        path.parent.mkdir(parents=True, exist_ok=True)
        drawn = draw_faces(rgb, faces, self.detector.class_names, self.bars)
        if not cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write the annotated image {path}")
        return path

    def _annotate_video(self, item: Media, table, report: RunReport, bar) -> None:
        try:
            reader = VideoReader(item)
        except UnreadableVideo as error:
            report.skipped.append(Skipped(item.source, error.reason))
            log.warning("skipped %s", error)
            return
        entry = SourceReport(item.source, item.kind)
        report.sources.append(entry)
        if not reader.fps_known:
            entry.note = f"unknown frame rate: timestamps and the output assume {reader.fps} fps"
        path = self.output_dir / item.output_name
        writer = None
        pending: list[Frame] = []
        faces: list[FaceEmotion] = []
        tracker = FaceTracker(smoothing=self.smoothing) if self.track else None
        live = item.kind == "webcam"  # write each frame as soon as it is annotated
        try:
            for frame in reader.frames(self.max_frames):
                if writer is None and self.save_annotated:
                    audio = item.location if self.keep_audio and item.kind == "video" else None
                    writer = open_video_writer(path, reader.fps, frame.rgb.shape,
                                               self.video_codec, audio)
                    entry.output = str(path)
                    entry.codec = writer.codec
                pending.append(frame)
                entry.frames += 1
                if live or sum(self._searched(f) for f in pending) == self.batch_size:
                    faces = self._flush(item, pending, faces, tracker, writer, table, entry, bar)
            faces = self._flush(item, pending, faces, tracker, writer, table, entry, bar)
        finally:
            reader.close()
            if writer is not None:
                writer.release()
        expected = reader.frame_count
        if expected and self.max_frames is None and entry.frames < expected:
            ended = (f"ended after {entry.frames} of {expected} announced frames "
                     "(truncated or corrupt file?); the frames read were annotated")
            entry.note = f"{entry.note}; {ended}" if entry.note else ended
            log.warning("%s: %s", item.source, ended)

    def _searched(self, frame: Frame) -> bool:
        return frame.index % self.every_n_frames == 0

    def _flush(self, item, pending: list[Frame], faces, tracker, writer, table, entry, bar):
        """Search the pending key frames in one batch, then write every pending frame."""
        if tracker is not None:
            self._flush_tracked(item, pending, tracker, writer, table, entry, bar)
            return faces
        keys = [f for f in pending if self._searched(f)]
        found = dict(zip((f.index for f in keys),
                         self.detector.detect_batch([f.rgb for f in keys]) if keys else [],
                         strict=True))
        for frame in pending:
            if frame.index in found:
                faces = found[frame.index]
                table.write_frame(item.source, frame.index, frame.timestamp, faces)
                entry.searched += 1
                entry.faces += len(faces)
            if writer is not None:
                writer.write(draw_faces(frame.rgb, faces, self.detector.class_names, self.bars))
            bar.update(1)
        pending.clear()
        return faces

    def _flush_tracked(self, item, pending: list[Frame], tracker: FaceTracker, writer, table,
                       entry, bar) -> None:
        """Search the pending key frames in one batch, follow the faces through every pending
        frame, classify all their faces together, then write each frame."""
        keys = [f for f in pending if self._searched(f)]
        found = dict(zip((f.index for f in keys),
                         self.detector.find_faces([f.rgb for f in keys]) if keys else [],
                         strict=True))
        tracked = [tracker.update(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY), found.get(f.index))
                   for f in pending]
        classified = self.detector.classify([f.rgb for f in pending], [d for d, _ in tracked])
        names = self.detector.class_names
        for frame, (_, ids), raw in zip(pending, tracked, classified, strict=True):
            raw = [replace(face, track=i) for face, i in zip(raw, ids, strict=True)]
            scores = np.array([[f.probabilities[n] for n in names] for f in raw], np.float32)
            shown = [FaceEmotion.from_scores(np.array(f.box), f.det_prob, names, p, f.track)
                     for f, p in zip(raw, tracker.smooth(ids, scores.reshape(-1, len(names))),
                                     strict=True)]
            table.write_frame(item.source, frame.index, frame.timestamp, raw,
                              [f.label for f in shown])
            entry.searched += frame.index in found
            entry.faces += len(raw)
            if writer is not None:
                writer.write(draw_faces(frame.rgb, shown, names, self.bars))
            bar.update(1)
        pending.clear()


def _groups(media: list[Media], batch_size: int) -> Iterator[list[Media]]:
    """Consecutive images in batches of ``batch_size``; every video or webcam on its own."""
    images: list[Media] = []
    for item in media:
        if item.kind == "image":
            images.append(item)
            if len(images) == batch_size:
                yield images
                images = []
            continue
        if images:
            yield images
            images = []
        yield [item]
    if images:
        yield images


def _announced_frames(media: list[Media], max_frames: int | None) -> int | None:
    """Frames the progress bar expects: images count one, videos their announced length."""
    total = 0
    for item in media:
        if item.kind == "webcam" and max_frames is None:
            return None
        if item.kind == "video":
            capture = cv2.VideoCapture(item.location)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            capture.release()
            total += min(count, max_frames) if max_frames else count
        else:
            total += 1 if item.kind == "image" else max_frames
    return total
