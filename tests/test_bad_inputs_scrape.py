"""Bad inputs of the scraper: failures are counted, an all-failed query is not finished and is
retried, an oversized body is cut off at the cap."""

from __future__ import annotations

import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import cv2
import icrawler.crawler
import numpy as np
import pytest
from PIL import Image

from emotion_lightning.cli import scrape as scrape_cli
from emotion_lightning.scrape import downloader as downloader_module
from emotion_lightning.scrape.manifest import ScrapeManifest
from emotion_lightning.scrape.queries import Query
from emotion_lightning.scrape.runner import Scraper, summarize_queries


def jpeg_bytes(seed: int = 0, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


BIG_TOTAL = 64 * 1024 * 1024  # what /big would send if read to the end


class FailingHost(BaseHTTPRequestHandler):
    """404 for /missing/*, an image at /ok.jpg, an endless-looking body at /big (no length)."""

    sent = {"big": 0}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/ok.jpg":
            body = jpeg_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/big.jpg":  # HTTP/1.0 without Content-Length: the body ends at close
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(BIG_TOTAL // len(chunk)):
                    self.wfile.write(chunk)
                    self.sent["big"] += len(chunk)
            except OSError:  # the client hung up
                pass
            return
        body = b"missing"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_host():
    handler = type("Host", (FailingHost,), {"sent": {"big": 0}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", handler=handler)
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_only(monkeypatch):
    """Requests go straight to 127.0.0.1; icrawler polls its threads every 20 ms, not 1 s."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(icrawler.crawler, "time", SimpleNamespace(sleep=lambda _: time.sleep(0.02)))


def url_scraper(raw: Path) -> Scraper:
    return Scraper(raw, engines=["urls"], threads=2, timeout_s=2, queue_timeout_s=0.3)


def test_all_404_url_list_is_counted_not_finished_and_retried(tmp_path, failing_host, local_only):
    urls = tmp_path / "sad.txt"
    urls.write_text("".join(f"{failing_host.url}/missing/{i}.jpg\n" for i in range(3)))
    raw = tmp_path / "raw"
    [outcome] = url_scraper(raw).run([], url_lists=[Query("sad", str(urls), 0)])
    assert outcome.kept == 0 and outcome.attempted == 3
    assert outcome.failed == {"HTTP 404": 3}
    assert outcome.error == "none of 3 image URL(s) gave a usable image (3 HTTP 404)"
    assert ScrapeManifest(raw).finished_queries() == set(), "a re-run must retry it"
    assert "download failures 3 (3 HTTP 404)" in summarize_queries([outcome])
    [again] = url_scraper(raw).run([], url_lists=[Query("sad", str(urls), 0)])
    assert not again.skipped and again.failed == {"HTTP 404": 3}


def test_refused_connections_are_counted(tmp_path, local_only):
    urls = tmp_path / "sad.txt"
    urls.write_text("http://127.0.0.1:9/a.jpg\n")  # discard port: nothing listens
    [outcome] = url_scraper(tmp_path / "raw").run([], url_lists=[Query("sad", str(urls), 0)])
    assert outcome.failed == {"connection refused": 1}
    assert "1 connection refused" in outcome.error


def test_cli_exits_non_zero_when_an_engine_produced_nothing(tmp_path, failing_host, local_only,
                                                              monkeypatch, capsys):
    urls = tmp_path / "sad.txt"
    urls.write_text(f"{failing_host.url}/missing/1.jpg\n{failing_host.url}/missing/2.jpg\n")
    raw = tmp_path / "raw"
    monkeypatch.setattr(sys, "argv", [
        "emotion-scrape", f"out_dir={raw}", "scraper.engines=[urls]", "classes=[sad]",
        "query_plan=tiny", f"url_lists.sad={urls}", "scraper.queue_timeout_s=0.3",
        "scraper.timeout_s=2",
        f"paths.log_dir={tmp_path / 'logs'}", "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ])
    with pytest.raises(SystemExit) as stop:
        scrape_cli.main()
    assert stop.value.code != 0
    out = capsys.readouterr().out
    assert "urls: 1 queries run, 0 skipped, 1 failed; kept 0" in out
    assert "2 HTTP 404" in out
    assert not (raw / "queries.csv").exists() or not ScrapeManifest(raw).finished_queries()


def test_a_large_body_is_cut_off_at_the_cap(tmp_path, failing_host, local_only, monkeypatch):
    monkeypatch.setattr(downloader_module, "MAX_BYTES", 256 * 1024)
    urls = tmp_path / "happy.txt"
    urls.write_text(f"{failing_host.url}/big.jpg\n{failing_host.url}/ok.jpg\n")
    [outcome] = url_scraper(tmp_path / "raw").run([], url_lists=[Query("happy", str(urls), 0)])
    assert outcome.kept == 1 and outcome.rejected == {"too large": 1} and not outcome.error
    deadline = time.monotonic() + 5
    while failing_host.handler.sent["big"] < BIG_TOTAL and time.monotonic() < deadline:
        before = failing_host.handler.sent["big"]
        time.sleep(0.2)
        if failing_host.handler.sent["big"] == before:
            break  # the server is stuck or done: the client stopped reading
    assert failing_host.handler.sent["big"] < BIG_TOTAL // 4, "the body was read far past the cap"


