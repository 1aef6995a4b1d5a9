"""emotion-distill-report: what conv1 distillation buys, in teacher–student agreement and cosine.

    emotion-distill-report images=/path/to/rgb/images checkpoint=/path/to/gray_distill.ckpt

writes ``distill_report.json`` and prints a table (:mod:`emotion_lightning.distill_report`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.distill_report import format_table

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Compute ``cfg.report`` (see ``conf/distill_report.yaml``), write and print it."""
    report = instantiate(cfg.report)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"teacher {report['arch']} ({report['teacher_weights']}) on {report['num_images']} "
          f"images from {report['images']}, target {report['target']}")
    print(format_table(report))
    log.info("wrote %s", output)
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="distill_report")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
