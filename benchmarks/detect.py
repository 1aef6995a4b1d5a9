"""Annotation speed: frames/s of emotion-detect on a 640x360 video, split into face detection
(MTCNN), classification (one batched forward) and the rest (decode, draw, encode, CSV).

The video is built from ../shared/data/group photos when present (3-7 faces a frame), else
from drawn faces (MTCNN finds few: the split is then mostly detection). Prints and saves JSON.

    python benchmarks/detect.py --frames 48 --device cpu --threads 1 2 [--ckpt best.ckpt]

Each ``--threads`` value is one run (torch CPU threads); the load average is recorded, as
MTCNN's many small operations slow down sharply when threads compete for busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from emotion_lightning.constants import DEFAULT_CLASSES
from emotion_lightning.data.synthetic import draw_face
from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.faces import FaceDetector
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.runtime import available_cores

GROUP = Path(__file__).resolve().parents[2] / "shared" / "data" / "group"


def source_frames(width: int, height: int) -> tuple[list[np.ndarray], str]:
    """BGR frames to cycle through: the group photos letterboxed, or a canvas of drawn faces."""
    photos = sorted(GROUP.glob("voc_*.jpg"))
    frames = []
    for path in photos:
        image = cv2.imread(str(path))
        scale = min(width / image.shape[1], height / image.shape[0])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.zeros((height, width, 3), np.uint8)
        top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
        frames.append(canvas)
    if frames:
        return frames, f"{len(frames)} group photos from {GROUP}"
    rng = np.random.default_rng(0)
    canvas = np.full((height, width), 190, np.uint8)
    for i, expression in enumerate(DEFAULT_CLASSES):
        x = 20 + i * (width - 40) // len(DEFAULT_CLASSES)
        canvas[height // 3 : height // 3 + 96, x : x + 96] = draw_face(expression, rng, 96)
    return [cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)], "drawn faces (no group photos found)"


def write_video(path: Path, frames: list[np.ndarray], count: int, fps: float = 25.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(count):
        writer.write(frames[(i // 4) % len(frames)])  # each picture held for 4 frames
    writer.release()


class Timed:
    """Wraps a method and adds up the seconds spent in it."""

    def __init__(self, method) -> None:
        self.method, self.seconds, self.calls = method, 0.0, 0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.method(*args)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def build_detector(args) -> EmotionDetector:
    if args.ckpt:
        return EmotionDetector.from_checkpoint(args.ckpt, device=args.device)
    classifier = EmotionClassifier(list(DEFAULT_CLASSES), arch=args.arch, image_size=args.image_size)
    classifier = classifier.to(args.device)
    return EmotionDetector(classifier, FaceDetector(device=args.device))


def measure(detector: EmotionDetector, pictures: list[np.ndarray], args) -> dict:
    """Annotate a fresh ``args.frames``-frame video; seconds in total and per stage."""
    with tempfile.TemporaryDirectory() as tmp:
        video, warmup = Path(tmp) / "bench.mp4", Path(tmp) / "warmup.mp4"
        write_video(video, pictures, args.frames)
        write_video(warmup, pictures, args.batch_size)
        MediaAnnotator(detector, Path(tmp) / "warm", progress=False).run(str(warmup))
        find, classify = Timed(detector.find_faces), Timed(detector.classify)
        detector.find_faces, detector.classify = find, classify
        try:
            report = MediaAnnotator(detector, Path(tmp) / "out", every_n_frames=args.every_n_frames,
                                    batch_size=args.batch_size, progress=False).run(str(video))
        finally:
            del detector.find_faces, detector.classify  # back to the class's methods
    searched, total = report.sources[0].searched, report.seconds
    return {
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "frames": report.frames,
        "searched_frames": searched,
        "faces_per_searched_frame": report.faces / max(1, searched),
        "frames_per_second": report.frames / total,
        "seconds": {"total": total, "detection": find.seconds, "classification": classify.seconds,
                    "decode_draw_encode_csv": total - find.seconds - classify.seconds},
        "ms_per_searched_frame": {"detection": 1000 * find.seconds / max(1, searched),
                                  "classification": 1000 * classify.seconds / max(1, searched)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="a checkpoint; default: an untrained model")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--every-n-frames", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "detect.json"))
    args = parser.parse_args()

    detector = build_detector(args)
    pictures, content = source_frames(args.width, args.height)
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        runs.append(measure(detector, pictures, args))
        print(f"{threads} threads: {runs[-1]['frames_per_second']:.2f} frames/s, "
              f"per searched frame {runs[-1]['ms_per_searched_frame']}")
    result = {
        "task": "annotate a video with emotion-detect's pipeline",
        "content": content,
        "frame_size": [args.width, args.height],
        "every_n_frames": args.every_n_frames,
        "batch_size": args.batch_size,
        "device": args.device,
        "classifier": {"arch": detector.classifier.hparams.arch, "image_size": detector.image_size,
                       "checkpoint": args.ckpt},
        "runs": runs,
        "cpu_cores": available_cores(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
