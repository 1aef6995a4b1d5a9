"""icrawler crawlers for each engine, with overridable search URLs and checked result pages.

icrawler's built-in feeders hard-code the search engines' addresses; the feeders here
take a ``base_url`` (a mirror, or a test server) and otherwise build the same requests.
The parsers count result pages and image links and record HTTP errors, so a blocked
or changed engine is reported instead of silently yielding nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from urllib.parse import urlencode

from icrawler import Crawler, Feeder, Parser, UrlListFeeder
from icrawler.builtin import BaiduParser as _BaiduParser
from icrawler.builtin import BingParser as _BingParser
from icrawler.builtin import GoogleParser as _GoogleParser
from icrawler.builtin import PseudoParser
from icrawler.builtin.baidu import BaiduFeeder as _BaiduFeeder
from icrawler.builtin.bing import BingFeeder as _BingFeeder
from icrawler.builtin.google import GoogleFeeder as _GoogleFeeder

from emotion_lightning.scrape.downloader import ManifestDownloader

SEARCH_ENGINES: tuple[str, ...] = ("google", "bing", "baidu")
#: ``urls`` downloads the URL lists given per label instead of searching.
ENGINES: tuple[str, ...] = (*SEARCH_ENGINES, "urls")


class _SearchFeeder(Feeder):
    """Feeds the result-page URLs of one keyword, from ``base_url`` or the engine's own."""

    default_base_url = ""

    def __init__(self, thread_num, signal, session, base_url: str | None = None) -> None:
        super().__init__(thread_num, signal, session)
        self.base_url = base_url or self.default_base_url

    def feed(self, keyword: str, max_num: int, filters: dict | None = None) -> None:
        filter_str = self.get_filter().apply(filters or None)
        for url in self.page_urls(keyword, max_num, filter_str):
            self.out_queue.put(url)

    def page_urls(self, keyword: str, max_num: int, filter_str: str) -> Iterator[str]:
        raise NotImplementedError


class GoogleFeeder(_SearchFeeder, _GoogleFeeder):
    default_base_url = "https://www.google.com/search"

    def page_urls(self, keyword: str, max_num: int, filter_str: str) -> Iterator[str]:
        for start in range(0, max(max_num, 1), 100):
            params = {
                "q": keyword,
                "ijn": start // 100,
                "start": start,
                "tbs": filter_str,
                "tbm": "isch",
            }
            yield f"{self.base_url}?{urlencode(params)}"


class BingFeeder(_SearchFeeder, _BingFeeder):
    default_base_url = "https://www.bing.com/images/async"

    def page_urls(self, keyword: str, max_num: int, filter_str: str) -> Iterator[str]:
        for first in range(0, max(max_num, 1), 20):
            params = {"q": keyword, "first": first, **({"qft": filter_str} if filter_str else {})}
            yield f"{self.base_url}?{urlencode(params)}"


class BaiduFeeder(_SearchFeeder, _BaiduFeeder):
    default_base_url = "https://image.baidu.com/search/acjson"

    def page_urls(self, keyword: str, max_num: int, filter_str: str) -> Iterator[str]:
        for pn in range(0, max(max_num, 1), 30):
            params = {"tn": "resultjson_com", "ipn": "rj", "word": keyword, "pn": pn, "rn": 30}
            yield f"{self.base_url}?{urlencode(params)}" + (f"&{filter_str}" if filter_str else "")


class _CheckedParser(Parser):
    """Counts result pages and image links; an HTTP error page is recorded, not parsed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pages = 0
        self.links = 0
        self.errors: list[str] = []

    def parse(self, response, **kwargs) -> Iterator[dict]:
        if response.status_code != 200:
            self._record_error(f"HTTP {response.status_code} from {response.url}")
            return
        try:
            tasks = list(super().parse(response, **kwargs) or [])
        except Exception as error:  # a changed page layout must not kill the parser thread
            self._record_error(f"cannot parse {response.url}: {type(error).__name__}: {error}")
            return
        with self.lock:
            self.pages += 1
            self.links += len(tasks)
        yield from tasks

    def _record_error(self, message: str) -> None:
        self.logger.warning(message)
        with self.lock:
            self.errors.append(message)


class GoogleParser(_CheckedParser, _GoogleParser):
    pass


class BingParser(_CheckedParser, _BingParser):
    pass


class BaiduParser(_CheckedParser, _BaiduParser):
    pass


_SEARCH_COMPONENTS = {
    "google": (GoogleFeeder, GoogleParser),
    "bing": (BingFeeder, BingParser),
    "baidu": (BaiduFeeder, BaiduParser),
}


def make_crawler(
    engine: str,
    raw_dir: str,
    downloader_args: Mapping[str, object],
    base_url: str | None = None,
    filters: Mapping[str, object] | None = None,
    threads: int = 4,
) -> Crawler:
    """An icrawler :class:`Crawler` for ``engine`` that saves through :class:`ManifestDownloader`."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "urls":
        feeder_cls, parser_cls, feeder_args = UrlListFeeder, PseudoParser, {}
    else:
        feeder_cls, parser_cls = _SEARCH_COMPONENTS[engine]
        feeder_args = {"base_url": base_url}
    crawler = Crawler(
        feeder_cls=feeder_cls,
        parser_cls=parser_cls,
        downloader_cls=ManifestDownloader,
        downloader_threads=threads,
        storage={"backend": "FileSystem", "root_dir": raw_dir},
        log_level=logging.WARNING,
        extra_feeder_args=feeder_args,
        extra_downloader_args=dict(downloader_args),
    )
    if filters:
        try:
            crawler.feeder.get_filter().apply(dict(filters))
        except (KeyError, ValueError, TypeError, AssertionError) as error:
            raise ValueError(f"bad {engine} filters {dict(filters)}: {error}") from None
    return crawler
