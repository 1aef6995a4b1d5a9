"""emotion-detect: annotate every face's emotion in images, folders, globs, videos or a webcam.

    emotion-detect ckpt_path=CKPT input=PATH output_dir=OUT

writes the annotated copies to ``OUT/``, one row per face per frame to
``OUT/detections.csv`` and what was done and skipped to ``OUT/summary.json``.
"""

from __future__ import annotations

import signal
import sys

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import checkpoint_paths, log, setup_allocator
from emotion_lightning.detect import EmotionDetector, MediaAnnotator, RunReport


def detect(cfg: DictConfig) -> RunReport:
    """Load ``cfg.ckpt_path`` and annotate ``cfg.input`` into ``cfg.output_dir``."""
    setup_allocator(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    detector = EmotionDetector.from_checkpoint(
        checkpoint_paths(cfg.ckpt_path),
        device=cfg.device,
        face_finder=instantiate(cfg.face_detector),
        crop=instantiate(cfg.face_crop),
        test_time_flip=cfg.test_time_flip,
        test_time_shift=cfg.get("test_time_shift"),
        precision=cfg.precision,
        prior_tau=cfg.get("prior_tau"),
    )
    annotator = MediaAnnotator(
        detector,
        cfg.output_dir,
        every_n_frames=cfg.every_n_frames,
        tracker=instantiate(cfg.tracker),
        batch_size=cfg.batch_size,
        max_frames=cfg.max_frames,
        save_annotated=cfg.save_annotated,
        video_codec=cfg.video_codec,
        keep_audio=cfg.keep_audio,
        bars=cfg.bars,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
    )
    inputs = OmegaConf.to_container(cfg.input) if isinstance(cfg.input, ListConfig) else cfg.input
    report = annotator.run(inputs)
    log.info("%d faces in %d frames of %d inputs (%d skipped) in %.1f s -> %s",
             report.faces, report.frames, len(report.sources), len(report.skipped),
             report.seconds, report.table)
    for item in report.skipped:
        log.warning("skipped %s: %s", item.source, item.reason)
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="detect")
def main(cfg: DictConfig) -> None:
    report = detect(cfg)
    if report.stopped in ("SIGINT", "SIGTERM"):  # outputs kept; still not a finished run
        log.error("stopped by %s before the end: the outputs hold what was done so far",
                  report.stopped)
        sys.exit(128 + signal.Signals[report.stopped].value)  # 130 / 143, as the shell does


if __name__ == "__main__":
    main()
