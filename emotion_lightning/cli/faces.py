"""``emotion-faces``: build a face-crop dataset from raw photos, and review it.

    emotion-faces build raw_dir=data/raw out_dir=data/processed [builder.policy=largest face_crop.align=false ...]
    emotion-faces review out_dir=data/processed [exclude_from=[exclude_happy.txt]]
    emotion-faces review out_dir=data/processed ckpt_path=STAGE1.ckpt   # model-assisted

The first word is the action; everything after it is a Hydra override.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.faces.build import FaceDatasetBuilder
from emotion_lightning.faces.exclusions import EXCLUDE_NAME, merge_exclusion_list
from emotion_lightning.faces.report import summarize_build
from emotion_lightning.faces.review import REVIEW_DIR, review_rows, write_review_pages
from emotion_lightning.faces.suspicion import RANKING_NAME
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.runtime import resolve_device

ACTIONS = ("build", "review")
USAGE = "usage: emotion-faces {build|review} [key=value ...]   (see conf/faces.yaml)"


def main() -> None:
    """Turn the leading action word into the ``action=`` override, then run Hydra."""
    if len(sys.argv) > 1 and sys.argv[1] in ACTIONS:
        sys.argv.append(f"action={sys.argv.pop(1)}")
    elif len(sys.argv) < 2 or not (sys.argv[1].startswith("-") or "=" in sys.argv[1]):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    run()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="faces")
def run(cfg: DictConfig) -> None:
    if cfg.action == "build":
        build(cfg)
    elif cfg.action == "review":
        review(cfg)
    else:
        raise ValueError(f"unknown action {cfg.action!r}; {USAGE}")


def build(cfg: DictConfig) -> None:
    """Detect, crop and report every unprocessed raw photo."""
    # the detector and crop are built first and handed over as objects (Hydra would turn a
    # dataclass passed to instantiate back into a config)
    make_builder = instantiate(cfg.builder, _partial_=True)
    builder: FaceDatasetBuilder = make_builder(detector=instantiate(cfg.face_detector),
                                               crop=instantiate(cfg.face_crop))
    rows = builder.build(
        cfg.raw_dir, cfg.out_dir, list(cfg.classes) if cfg.classes else None, cfg.progress
    )
    print(summarize_build(rows))
    print(f"crops in {cfg.out_dir}/<label>/, one row per photo in {cfg.out_dir}/report.csv")


def review(cfg: DictConfig) -> None:
    """Merge downloaded exclusion lists, then (re)write the review pages (sorted by the
    suspicion of ``ckpt_path``'s model when given)."""
    exclude_file = Path(cfg.out_dir) / EXCLUDE_NAME
    crops = {row["crop"] for row in review_rows(cfg.out_dir)} if cfg.exclude_from else set()
    for listing in cfg.exclude_from:
        path = Path(listing).expanduser()
        merged = merge_exclusion_list(exclude_file, path, crops)
        print(f"{path}: {merged.added} new exclusions added to {exclude_file}")
        if merged.unmatched:
            print(f"{path}: {merged.describe()}")
    classifier = None
    if cfg.ckpt_path:
        classifier = load_classifier(cfg.ckpt_path, resolve_device(cfg.device))
    for page in write_review_pages(cfg.out_dir, classifier, cfg.progress):
        print(f"review page: {page}")
    if classifier is not None:
        print(f"ranking (most suspicious first): {Path(cfg.out_dir) / REVIEW_DIR / RANKING_NAME}")


if __name__ == "__main__":
    main()
