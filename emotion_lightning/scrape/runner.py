"""Run every query on every engine into one raw directory, resumably and fault-tolerantly.

A query that finished in an earlier run (``queries.csv``) is skipped; an interrupted
one resumes with the rest of its cap. An engine that fails (an exception, HTTP errors,
pages without image links, image URLs of which none gave a usable image: 404s, refused
connections, timeouts, non-images, oversized bodies) is reported per query with its
failures counted by kind, its query is not marked finished
(a re-run retries it), and the other engines go on; after ``max_engine_failures``
failures in a row the engine is left out for the rest of the run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotion_lightning.scrape.dedup import DuplicateIndex
from emotion_lightning.scrape.engines import ENGINES, make_crawler
from emotion_lightning.scrape.manifest import ScrapeManifest
from emotion_lightning.scrape.queries import Query, read_url_list

log = logging.getLogger(__name__)

#: icrawler components log every image at INFO; keep them to warnings and errors.
_ICRAWLER_LOGGERS = ("icrawler", "feeder", "parser", "downloader")


@dataclass
class QueryOutcome:
    """What one query brought in on one engine."""

    engine: str
    query: Query
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: downloads that failed, by kind: "HTTP 404", "connection refused", "timeout", ...
    failed: Counter[str] = field(default_factory=Counter)
    attempted: int = 0  # image URLs tried
    error: str = ""  # why the engine failed on this query ("" when it did not)
    skipped: str = ""  # why the query was not run ("" when it was)


class Scraper:
    """Downloads images for queries into ``raw_dir/<label>/`` with ``raw_dir/manifest.csv``.

    Args:
        raw_dir: output folder (created); re-using it resumes the scrape.
        engines: any of ``google``, ``bing``, ``baidu`` and ``urls``.
        base_urls: engine -> search URL replacing the engine's own (mirrors, tests).
        filters: engine -> icrawler search filters, e.g. ``{"bing": {"people": "face"}}``.
        threads: download threads per engine.
        timeout_s: HTTP timeout per request.
        queue_timeout_s: how long idle icrawler threads wait for work before finishing.
        min_side: reject images smaller than this on either side.
        near_duplicate_distance: pHash bits within which two images are the same photo.
        max_engine_failures: consecutive failed queries after which an engine is dropped.
    """

    def __init__(
        self,
        raw_dir: str | Path,
        engines: Sequence[str] = ("bing",),
        base_urls: Mapping[str, str] | None = None,
        filters: Mapping[str, Mapping[str, object]] | None = None,
        threads: int = 4,
        timeout_s: float = 10.0,
        queue_timeout_s: float = 5.0,
        min_side: int = 48,
        near_duplicate_distance: int = 3,
        max_engine_failures: int = 3,
    ) -> None:
        unknown = [e for e in [*engines, *(base_urls or {}), *(filters or {})] if e not in ENGINES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
        if not engines:
            raise ValueError(f"no engines given; choose from {', '.join(ENGINES)}")
        self.manifest = ScrapeManifest(raw_dir)
        self.raw_dir = Path(raw_dir)
        self.engines = list(dict.fromkeys(engines))
        self.base_urls = dict(base_urls or {})
        self.filters = {engine: dict(f) for engine, f in (filters or {}).items()}
        self.threads = threads
        self.timeout_s = timeout_s
        self.queue_timeout_s = queue_timeout_s
        self.min_side = min_side
        self.max_engine_failures = max_engine_failures
        self.index = DuplicateIndex(near_duplicate_distance)
        for row in self.manifest.rows():
            if row["status"] == "kept":
                self.index.add(row["file"], row["label"], row["sha256"], int(row["phash"], 16))

    def run(self, queries: Sequence[Query], url_lists: Sequence[Query] = ()) -> list[QueryOutcome]:
        """Run ``queries`` on the search engines and ``url_lists`` (``text`` = file) on ``urls``."""
        if "urls" in self.engines and not url_lists:
            raise ValueError("engine 'urls' needs URL lists (url_lists: {label: file})")
        for name in _ICRAWLER_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        finished = self.manifest.finished_queries()
        failures: Counter[str] = Counter()
        jobs = [(e, q) for q in queries for e in self.engines if e != "urls"]
        jobs += [("urls", q) for q in url_lists if "urls" in self.engines]
        outcomes = []
        for engine, query in jobs:
            if (engine, query.label, query.text) in finished:
                outcome = QueryOutcome(engine, query, skipped="finished in an earlier run")
            elif failures[engine] >= self.max_engine_failures:
                outcome = QueryOutcome(
                    engine, query, skipped=f"{engine} failed {failures[engine]} times in a row"
                )
            else:
                outcome = self._run_one(engine, query)
                failures[engine] = failures[engine] + 1 if outcome.error else 0
                if failures[engine] == self.max_engine_failures:
                    log.error(
                        "%s failed %d queries in a row: leaving it out of this run",
                        engine,
                        failures[engine],
                    )
            outcomes.append(outcome)
        return outcomes

    def _run_one(self, engine: str, query: Query) -> QueryOutcome:
        outcome = QueryOutcome(engine, query)
        already = self.manifest.kept_count(engine, query.label, query.text)
        remaining = max(query.cap - already, 0) if query.cap else 0
        if query.cap and remaining == 0:
            self.manifest.mark_finished(engine, query.label, query.text, already)
            outcome.skipped = "cap reached in an earlier run"
            return outcome
        try:
            crawler = make_crawler(
                engine,
                str(self.raw_dir),
                {
                    "query": replace(query, cap=remaining),
                    "engine": engine,
                    "manifest": self.manifest,
                    "index": self.index,
                    "min_side": self.min_side,
                },
                base_url=self.base_urls.get(engine),
                filters=self.filters.get(engine),
                threads=self.threads,
            )
            if engine == "urls":
                feeder_kwargs: dict[str, object] = {"url_list": read_url_list(query.text)}
            else:
                feeder_kwargs = {
                    "keyword": query.text,
                    "max_num": remaining,
                    "filters": self.filters.get(engine),
                }
            timeouts = {"queue_timeout": self.queue_timeout_s, "req_timeout": self.timeout_s}
            crawler.crawl(
                feeder_kwargs=feeder_kwargs,
                parser_kwargs=timeouts,
                # names are content hashes and duplicates are rejected before writing, so
                # icrawler's "skip existing name" check (which needs the name up front) is off
                downloader_kwargs={"max_num": remaining, "overwrite": True, **timeouts},
            )
        except Exception as error:
            outcome.error = f"{type(error).__name__}: {error}"
        else:
            outcome.kept = crawler.downloader.kept
            outcome.rejected = crawler.downloader.rejected
            outcome.failed = crawler.downloader.failed
            outcome.attempted = crawler.downloader.attempted
            outcome.error = _search_failure(crawler.parser) if engine != "urls" else ""
            if not outcome.error:
                outcome.error = _download_failure(crawler.downloader)
        if outcome.error:
            log.error("%s failed on %r (%s): %s", engine, query.text, query.label, outcome.error)
        else:
            self.manifest.mark_finished(engine, query.label, query.text, already + outcome.kept)
            log.info(
                "%s %r: kept %d, rejected %s, failed %s",
                engine,
                query.text,
                outcome.kept,
                dict(outcome.rejected),
                dict(outcome.failed),
            )
        return outcome


def _download_failure(downloader) -> str:
    """Why a query brought nothing ("" when at least one download was a valid image)."""
    if downloader.attempted == 0 or downloader.decoded > 0:
        return ""
    kinds = downloader.failed + downloader.rejected
    return (f"none of {downloader.attempted} image URL(s) gave a usable image ("
            + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) + ")")


def _search_failure(parser) -> str:
    """Why a search engine yielded nothing usable ("" when it did)."""
    if parser.pages == 0:
        if parser.errors:
            return "; ".join(parser.errors[:3])
        return "no result page could be fetched (offline, blocked, or a wrong base URL)"
    if parser.links == 0:
        return "result pages held no image links (blocked, or the page layout changed)"
    return ""


def summarize_queries(outcomes: Sequence[QueryOutcome]) -> str:
    """A plain-text summary per engine: queries run, skipped and failed, images kept and rejected."""
    lines = []
    for engine in dict.fromkeys(o.engine for o in outcomes):
        mine = [o for o in outcomes if o.engine == engine]
        rejected: Counter[str] = sum((o.rejected for o in mine), Counter())
        failed: Counter[str] = sum((o.failed for o in mine), Counter())
        lines.append(
            f"{engine}: {sum(not o.skipped for o in mine)} queries run, "
            f"{sum(bool(o.skipped) for o in mine)} skipped, {sum(bool(o.error) for o in mine)} failed; "
            f"kept {sum(o.kept for o in mine)}, rejected {sum(rejected.values())}"
            + (f" ({', '.join(f'{n} {r}' for r, n in rejected.most_common())})" if rejected else "")
            + (f"; download failures {sum(failed.values())} "
               f"({', '.join(f'{n} {r}' for r, n in failed.most_common())})" if failed else "")
        )
        lines += [
            f"  failed {o.query.text!r} ({o.query.label}): {o.error}" for o in mine if o.error
        ]
    return "\n".join(lines)
