"""Video annotation speed: bare per-frame MTCNN vs emotion-detect, searching every frame or
every n-th frame with the faces tracked in between, on the same panning video.
``--keep-freed-memory`` first applies ``emotion_lightning.runtime.keep_freed_memory()`` (what
the entry points' ``keep_freed_memory: true`` does; without it glibc's allocator is as it ships);
``--alternate N`` runs the measurement N times each way, alternately, each in a fresh process,
and reports per setting the median and range of every speed, the kernel seconds and the peak
memory of a process, so a host whose speed drifts weighs on both settings alike.

The video pans a 640x360 window across the ../shared/data/group photos laid side by side
(3-7 faces a photo), else across drawn faces. The baseline is facenet-pytorch's MTCNN as it
ships, frame by frame (faces with probability >= 0.95); our FaceDetector alone is the second
row. For each emotion-detect setting it also reports the share of the baseline's boxes that
the boxes of the same frame match at IoU >= 0.5. Prints and saves JSON.

    python benchmarks/detect.py --frames 60 --every-n-frames 1 3 5 --threads 2 [--ckpt best.ckpt]
    python benchmarks/detect.py --width 1280 --height 720 --every-n-frames 1 2 --alternate 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
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
from emotion_lightning.faces.boxes import box_iou
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.records import write_json
from emotion_lightning.runtime import keep_freed_memory, machine_record

GROUP = Path(__file__).resolve().parents[2] / "shared" / "data" / "group"


def panorama(height: int) -> tuple[np.ndarray, str]:
    """The group photos scaled to ``height`` and laid side by side (BGR), or drawn faces."""
    photos = [cv2.imread(str(p)) for p in sorted(GROUP.glob("voc_*.jpg"))]
    if photos:
        scaled = [cv2.resize(p, (round(p.shape[1] * height / p.shape[0]), height),
                             interpolation=cv2.INTER_AREA) for p in photos]
        return np.concatenate(scaled, axis=1), f"{len(photos)} group photos from {GROUP}"
    rng = np.random.default_rng(0)
    canvas, size = np.full((height, 4 * height), 190, np.uint8), min(96, height // 2)
    for i in range(12):  # spread over the canvas whatever its height
        x, y = i * (canvas.shape[1] - size) // 11, (i % 3) * (height - size) // 2
        canvas[y:y + size, x:x + size] = draw_face(DEFAULT_CLASSES[i % 5], rng, size)
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), "drawn faces (no group photos found)"


def write_pan(path: Path, width: int, height: int, frames: int, fps: float = 25.0) -> list:
    """A video of a window panning across the panorama; returns its RGB frames."""
    wide, _ = panorama(height)
    step = max(1, (wide.shape[1] - width) // max(1, frames - 1))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    out = []
    for i in range(frames):
        x = min(i * step, wide.shape[1] - width)
        frame = np.ascontiguousarray(wide[:, x:x + width])
        writer.write(frame)
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    writer.release()
    return out


def per_frame_mtcnn(detect, video: Path) -> tuple[float, list[np.ndarray]]:
    """Frames/s of ``detect`` (RGB frame -> boxes) alone, one decoded frame at a time, and its
    boxes per frame."""
    capture, boxes = cv2.VideoCapture(str(video)), []
    start = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        boxes.append(detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    capture.release()
    return len(boxes) / (time.perf_counter() - start), boxes


def stock_mtcnn(device: str, min_prob: float):
    """facenet-pytorch's MTCNN as it ships (what the ``fer`` package runs per frame): boxes of
    the faces with probability >= ``min_prob``."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=device)

    def detect(rgb: np.ndarray) -> np.ndarray:
        boxes, probs = mtcnn.detect(rgb)
        if boxes is None:
            return np.zeros((0, 4), np.float32)
        return np.asarray(boxes, np.float32)[np.asarray(probs) >= min_prob]

    return detect


def table_boxes(path: Path, frames: int) -> list[np.ndarray]:
    rows: list[list[list[float]]] = [[] for _ in range(frames)]
    with path.open() as f:
        for row in csv.DictReader(f):
            rows[int(row["frame"])].append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    return [np.array(r, np.float32).reshape(-1, 4) for r in rows]


def matched_share(reference: list[np.ndarray], found: list[np.ndarray]) -> float:
    """Share of the reference boxes with a found box of IoU >= 0.5 on the same frame."""
    total = sum(len(r) for r in reference)
    hits = sum(int((box_iou(r, f).max(axis=1) >= 0.5).sum()) if len(f) else 0
               for r, f in zip(reference, found, strict=True) if len(r))
    return hits / max(1, total)


def annotate(detector: EmotionDetector, video: Path, out: Path, every: int, batch: int) -> dict:
    report = MediaAnnotator(detector, out, every_n_frames=every, batch_size=batch,
                            progress=False).run(str(video))
    return {"frames_per_second": report.frames / report.seconds, "seconds": report.seconds,
            "searched_frames": report.sources[0].searched, "rows": report.faces}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--ckpt", default=None, help="a checkpoint; default: an untrained model")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--every-n-frames", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="keep freed buffers for reuse (training's keep_freed_memory: true)")
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="run N fresh processes each way (glibc's default, freed memory kept),"
                             " alternately, and report both settings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "detect.json"))
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """One process's measurement: the bare detectors, then emotion-detect each way."""
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("--keep-freed-memory needs glibc (keep_freed_memory() is False here)")
    torch.set_num_threads(args.threads)

    finder = FaceDetector(device=args.device)
    if args.ckpt:
        detector = EmotionDetector.from_checkpoint(args.ckpt, device=args.device)
    else:
        model = EmotionClassifier(list(DEFAULT_CLASSES), arch=args.arch,  # as the CPU recipes
                                  image_size=args.image_size, channels_last=True).to(args.device)
        detector = EmotionDetector(model, finder)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "pan.avi"
        frames = write_pan(video, args.width, args.height, args.frames)
        bare = stock_mtcnn(args.device, finder.min_prob)
        bare(frames[0])  # warm-up
        bare_fps, reference = per_frame_mtcnn(bare, video)
        print(f"bare per-frame MTCNN (facenet-pytorch as it ships): {bare_fps:.2f} frames/s, "
              f"{sum(map(len, reference)) / len(reference):.1f} faces/frame")
        finder.detect(frames[:2])  # warm-up
        ours_fps, ours = per_frame_mtcnn(lambda rgb: finder.detect([rgb])[0].boxes, video)
        print(f"our FaceDetector per frame (channels-last MTCNN): {ours_fps:.2f} frames/s = "
              f"{ours_fps / bare_fps:.2f}x, {100 * matched_share(reference, ours):.1f}% of the "
              "bare boxes matched")
        runs = []
        for every in args.every_n_frames:
            out = Path(tmp) / f"every{every}"
            run = {"every_n_frames": every,
                   **annotate(detector, video, out, every, args.batch_size)}
            run["speed_vs_bare_mtcnn"] = run["frames_per_second"] / bare_fps
            run["reference_boxes_matched"] = matched_share(
                reference, table_boxes(out / "detections.csv", len(reference)))
            runs.append(run)
            print(f"emotion-detect every_n_frames={every}: "
                  f"{run['frames_per_second']:.2f} frames/s = {run['speed_vs_bare_mtcnn']:.2f}x"
                  f" bare MTCNN, {100 * run['reference_boxes_matched']:.1f}% of its boxes matched")
    result = {
        "task": "annotate a panning video: bare MTCNN vs emotion-detect (searched / tracked)",
        "content": panorama(args.height)[1],
        "frame_size": [args.width, args.height],
        "frames": args.frames,
        "reference_faces_per_frame": sum(map(len, reference)) / len(reference),
        "bare_mtcnn_frames_per_second": bare_fps,
        "face_detector_frames_per_second": ours_fps,
        "face_detector_boxes_matched": matched_share(reference, ours),
        "runs": runs,
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": args.threads,
        "keep_freed_memory": args.keep_freed_memory,
        "classifier": {"arch": detector.classifier.hparams.arch, "image_size": detector.image_size,
                       "channels_last": detector.classifier.hparams.channels_last,
                       "test_time_flip": detector.classifier.hparams.test_time_flip,
                       "checkpoint": args.ckpt},
        "load_average_1min": os.getloadavg()[0],
        **machine_record(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "kernel_seconds": os.times().system,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return result


SPEEDS = ("bare_mtcnn_frames_per_second", "face_detector_frames_per_second")


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def setting_summary(runs: list[dict]) -> dict:
    """Median and range of each speed, kernel seconds and peak memory over one setting's runs."""
    row = {key: spread([r[key] for r in runs]) for key in (*SPEEDS, "kernel_seconds",
                                                           "max_rss_mb")}
    for i, run in enumerate(runs[0]["runs"]):
        row[f"every_n_frames_{run['every_n_frames']}_frames_per_second"] = spread(
            [r["runs"][i]["frames_per_second"] for r in runs])
    return row


def alternate(args: argparse.Namespace, argv: list[str]) -> dict:
    """``args.alternate`` child processes each way, alternately; their records and a summary."""
    if platform.libc_ver()[0] != "glibc":
        raise SystemExit("--alternate needs glibc: the freed-memory setting is glibc's")
    base, tokens = [], iter(argv)
    for token in tokens:  # the parent's options, less those it sets for each child
        if token in ("--alternate", "--out"):
            next(tokens, None)
        elif token != "--keep-freed-memory" and not token.startswith(("--alternate=", "--out=")):
            base.append(token)
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.alternate):
            for setting in ("default", "kept"):
                out = Path(tmp) / f"{setting}{round_}.json"
                command = [sys.executable, __file__, *base, "--out", str(out)]
                if setting == "kept":
                    command.append("--keep-freed-memory")
                print(f"round {round_ + 1}/{args.alternate}, {setting}: {' '.join(command[1:])}",
                      flush=True)
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"the {setting} run failed:\n{done.stderr}")
                runs[setting].append(json.loads(out.read_text()))
    return {"task": "benchmarks/detect.py, glibc's allocator as it is vs --keep-freed-memory, "
                    f"{args.alternate} fresh processes each way, alternated",
            "command": " ".join(["python", "benchmarks/detect.py", *base]),
            "rounds": args.alternate, **machine_record(), "torch": torch.__version__,
            "settings": {name: setting_summary(r) for name, r in runs.items()}, "runs": runs}


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    result = alternate(args, argv) if args.alternate else measure(args)
    print(json.dumps(result.get("settings", result), indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()
