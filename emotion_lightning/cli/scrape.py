"""``emotion-scrape``: web images per emotion into ``out_dir/<label>/`` (resumable).

emotion-scrape out_dir=data/raw scraper.engines=[bing,google] max_per_query=50 classes=[happy,sad]
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.constants import canonical_emotion
from emotion_lightning.scrape.queries import Query, plan_queries
from emotion_lightning.scrape.runner import Scraper, summarize_queries

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="scrape")
def main(cfg: DictConfig) -> None:
    presets = OmegaConf.to_container(cfg.query_plan.queries, resolve=True)
    classes = [canonical_emotion(c) for c in cfg.classes]
    queries = plan_queries(
        presets, classes, cfg.query_plan.caps.main, cfg.query_plan.caps.synonym, cfg.max_per_query
    )
    url_lists = [
        Query(canonical_emotion(label), str(path), cfg.max_per_query or 0)
        for label, path in _given(cfg.url_lists).items()
        if canonical_emotion(label) in classes
    ]
    settings = OmegaConf.to_container(cfg.scraper, resolve=True)
    for key in ("base_urls", "filters"):  # engines left at null use their own
        settings[key] = _given(cfg.scraper[key])
    scraper: Scraper = instantiate(settings, _convert_="all")
    outcomes = scraper.run(queries, url_lists)
    print(summarize_queries(outcomes))
    print(f"images and manifest.csv in {cfg.out_dir}")
    ran = [o for o in outcomes if not o.skipped]
    if ran and all(o.error for o in ran):
        log.error("every engine failed on every query: nothing was downloaded")
        sys.exit(1)
    dead = [e for e in dict.fromkeys(o.engine for o in ran)
            if all(o.error for o in ran if o.engine == e)]
    if dead:
        log.error("engine(s) %s produced nothing: every query they ran failed (see the "
                  "failures above); those queries are not marked finished and a re-run "
                  "retries them", ", ".join(dead))
        sys.exit(1)


def _given(mapping: DictConfig) -> dict:
    """The entries of a config mapping that are set (not null)."""
    return {k: v for k, v in OmegaConf.to_container(mapping, resolve=True).items() if v is not None}


if __name__ == "__main__":
    main()
