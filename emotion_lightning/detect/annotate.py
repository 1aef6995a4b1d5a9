"""Annotate images, folders, globs, videos and webcams into an output folder.

Each input gets an annotated copy (``<output_dir>/<name>``; videos as MP4 at the source's
frame rate and size, H.264 where PyAV is installed, optionally with the source's audio) and one row per face per searched frame in
``<output_dir>/detections.csv``; ``<output_dir>/summary.json`` lists what was done and
skipped. Rows are flushed frame by frame and video writers are closed whatever happens,
so a run that fails or is stopped (Ctrl-C, or SIGTERM from ``kill``, ``timeout``, systemd
or SLURM) keeps everything written so far; ``stopped`` in the summary says why it ended.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from emotion_lightning.detect.drawing import draw_faces
from emotion_lightning.detect.emotion_detector import EmotionDetector
from emotion_lightning.detect.reports import RunReport, SourceReport
from emotion_lightning.detect.results import FaceEmotion
from emotion_lightning.detect.sources import (
    Frame,
    Media,
    Skipped,
    UnreadableVideo,
    VideoReader,
    collect_media,
)
from emotion_lightning.detect.stopping import stop_on_sigterm
from emotion_lightning.detect.table import DetectionTable
from emotion_lightning.detect.tracking import FaceTracker, Tracker
from emotion_lightning.detect.video_writer import VIDEO_CODECS, VideoWriter, open_video_writer
from emotion_lightning.images import UnreadableImage, load_image

log = logging.getLogger(__name__)

TABLE_NAME = "detections.csv"
SUMMARY_NAME = "summary.json"


class MediaAnnotator:
    """Runs an :class:`EmotionDetector` over inputs and writes annotated files and a table.

    Args:
        detector: finds and classifies the faces.
        output_dir: where the annotated files, ``detections.csv`` and ``summary.json`` go.
        every_n_frames: search faces in every n-th video frame (the annotated video keeps
            every frame).
        tracker: makes a :class:`~emotion_lightning.detect.tracking.Tracker` for each video:
            :class:`FaceTracker` (the default; ``functools.partial(FaceTracker, smoothing=0.7)``
            to set it up) follows the faces between searches, gives each a track id and
            classifies every face on every frame; ``NoTracker``: the frames between searches
            show the last search's faces and only searched frames get rows.
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
        tracker: Callable[[], Tracker] = FaceTracker,
        batch_size: int = 8,
        max_frames: int | None = None,
        save_annotated: bool = True,
        bars: bool = True,
        overwrite: bool = False,
        progress: bool = True,
        video_codec: str = "auto",
        keep_audio: bool = False,
    ) -> None:
        if video_codec not in VIDEO_CODECS:
            raise ValueError(f"video_codec must be one of {VIDEO_CODECS}, got {video_codec!r}")
        if every_n_frames < 1:
            raise ValueError(f"every_n_frames must be at least 1, got {every_n_frames}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1 or null, got {max_frames}")
        tracker()  # bad tracker settings fail here, before any output is written
        self.detector = detector
        self.output_dir = Path(output_dir)
        self.every_n_frames = every_n_frames
        self.tracker = tracker
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.save_annotated = save_annotated
        self.bars = bars
        self.overwrite = overwrite
        self.progress = progress
        self.video_codec = video_codec
        self.keep_audio = keep_audio

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
        bar = tqdm(total=_frames_before_opening(media, self.max_frames), unit="frame",
                   disable=not self.progress, dynamic_ncols=True)
        start = time.perf_counter()
        with stop_on_sigterm():
            try:
                with DetectionTable(report.table, self.detector.class_names) as table:
                    for group in _groups(media, self.batch_size):
                        if group[0].kind == "image":
                            self._annotate_images(group, table, report, bar)
                        else:
                            _VideoPass(self, group[0], table, report, bar).run()
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

    def _annotate_images(self, group: list[Media], table: DetectionTable, report: RunReport,
                         bar: tqdm) -> None:
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


class _VideoPass:
    """One video or webcam through a :class:`MediaAnnotator`: frames are held until
    ``batch_size`` of them are searched, then searched, tracked, classified and written."""

    def __init__(self, annotator: MediaAnnotator, item: Media, table: DetectionTable,
                 report: RunReport, bar: tqdm) -> None:
        self.annotator = annotator
        self.detector = annotator.detector
        self.item = item
        self.table = table
        self.report = report
        self.bar = bar
        self.entry = SourceReport(item.source, item.kind)
        self.tracker = annotator.tracker()
        self.writer: VideoWriter | None = None
        self.pending: list[Frame] = []
        self.shown: list[FaceEmotion] = []  # drawn on the frames until faces are found again

    def run(self) -> None:
        try:
            reader = VideoReader(self.item)
        except UnreadableVideo as error:
            self.report.skipped.append(Skipped(self.item.source, error.reason))
            log.warning("skipped %s", error)
            return
        self.report.sources.append(self.entry)
        if not reader.fps_known:
            self.entry.note = f"unknown frame rate: timestamps and the output assume {reader.fps} fps"
        max_frames = self.annotator.max_frames
        if self.item.kind == "video" and self.bar.total is not None and reader.frame_count:
            self.bar.total += min(reader.frame_count, max_frames or reader.frame_count)
            self.bar.refresh()
        live = self.item.kind == "webcam"  # write each frame as soon as it is annotated
        try:
            for frame in reader.frames(max_frames):
                if self.writer is None and self.annotator.save_annotated:
                    self._open_writer(reader.fps, frame.rgb.shape)
                self.pending.append(frame)
                self.entry.frames += 1
                if live or sum(map(self._searched, self.pending)) == self.annotator.batch_size:
                    self._flush()
            self._flush()
        finally:
            reader.close()
            if self.writer is not None:
                self.writer.release()
        expected = reader.frame_count
        if expected and max_frames is None and self.entry.frames < expected:
            ended = (f"ended after {self.entry.frames} of {expected} announced frames "
                     "(truncated or corrupt file?); the frames read were annotated")
            self.entry.add_note(ended)
            log.warning("%s: %s", self.item.source, ended)

    def _open_writer(self, fps: float, shape: tuple[int, ...]) -> None:
        path = self.annotator.output_dir / self.item.output_name
        keep_audio = self.annotator.keep_audio and self.item.kind == "video"
        self.writer = open_video_writer(path, fps, shape, self.annotator.video_codec,
                                        self.item.location if keep_audio else None)
        self.entry.output = str(path)
        self.entry.codec = self.writer.codec

    def _searched(self, frame: Frame) -> bool:
        return frame.index % self.annotator.every_n_frames == 0

    def _flush(self) -> None:
        """Search the pending key frames in one batch, let the tracker place the faces on
        every pending frame, classify all of them in one batch, then write each frame."""
        keys = [f for f in self.pending if self._searched(f)]
        found = dict(zip((f.index for f in keys),
                         self.detector.find_faces([f.rgb for f in keys]) if keys else [],
                         strict=True))
        placed = [self.tracker.update(f.rgb, found.get(f.index)) for f in self.pending]
        faced = [(f, p) for f, p in zip(self.pending, placed, strict=True) if p is not None]
        classified = iter(self.detector.classify([f.rgb for f, _ in faced],
                                                 [detections for _, (detections, _) in faced]))
        names = self.detector.class_names
        for frame, tracked in zip(self.pending, placed, strict=True):
            self.entry.searched += frame.index in found
            if tracked is not None:
                ids = tracked[1]
                raw = [replace(face, track=i) for face, i in zip(next(classified), ids, strict=True)]
                scores = np.array([[f.probabilities[n] for n in names] for f in raw], np.float32)
                smoothed = self.tracker.smooth(ids, scores.reshape(-1, len(names)))
                self.shown = [FaceEmotion.from_scores(np.array(f.box), f.det_prob, names, p, f.track)
                              for f, p in zip(raw, smoothed, strict=True)]
                self.table.write_frame(self.item.source, frame.index, frame.timestamp, raw,
                                       [f.label for f in self.shown])
                self.entry.faces += len(raw)
            if self.writer is not None:
                self.writer.write(draw_faces(frame.rgb, self.shown, names, self.annotator.bars))
            self.bar.update(1)
        self.pending.clear()


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


def _frames_before_opening(media: list[Media], max_frames: int | None) -> int | None:
    """The progress bar's total before any video is opened (each adds its announced length
    when it is): an image counts one, a webcam ``max_frames`` (``None``: no total)."""
    if max_frames is None and any(m.kind == "webcam" for m in media):
        return None
    return sum(1 if m.kind == "image" else max_frames if m.kind == "webcam" else 0 for m in media)
