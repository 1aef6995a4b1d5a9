"""The scraper's real icrawler code against a local search engine and image host."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import cv2
import icrawler.crawler
import numpy as np
import pytest
from PIL import Image

from emotion_lightning.cli import scrape as scrape_cli
from emotion_lightning.scrape.dedup import DuplicateIndex, phash, sha256_hex
from emotion_lightning.scrape.manifest import ScrapeManifest, source_info
from emotion_lightning.scrape.queries import Query, plan_queries, read_url_list
from emotion_lightning.scrape.runner import Scraper, summarize_queries

REPO = Path(__file__).resolve().parents[1]


def smooth_picture(seed: int, size: int = 128) -> np.ndarray:
    """A photo-like RGB picture: random low-frequency blobs (stable under re-encoding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def encode(rgb: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_files() -> dict[str, bytes]:
    """The image host's files: good, duplicate and bad ones."""
    good = {f"happy{i}": encode(smooth_picture(i)) for i in range(3)}
    good |= {f"sad{i}": encode(smooth_picture(10 + i), "PNG") for i in range(2)}
    near = cv2.resize(smooth_picture(0), (100, 100), interpolation=cv2.INTER_AREA)
    return {
        **good,
        "happy_near": encode(near, quality=60),  # happy0 re-encoded and resized
        "happy_exact": good["happy1"],  # the same bytes at another URL
        "sad_shared": good["happy2"],  # a happy image found by a sad query
        "truncated": good["happy2"][: len(good["happy2"]) // 2],
        "tiny": encode(smooth_picture(20, size=16)),
        "text": b"<html><body>not an image</body></html>",
        "empty": b"",
    }


RESULTS = {
    "happy": [
        "happy0",
        "happy1",
        "happy2",
        "happy_near",
        "happy_exact",
        "truncated",
        "tiny",
        "missing",
    ],
    "sad": ["sad0", "sad1", "sad_shared", "text", "empty"],
}


class SearchAndImageHost(BaseHTTPRequestHandler):
    """Bing-, Google- and Baidu-shaped result pages for ``/<engine>?q=<label> ...`` plus images."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        self.requests.append(self.path)
        if url.path.startswith("/img/"):
            name = url.path[len("/img/") : -len(".jpg")]
            if name not in self.files:
                return self._send(404, b"missing", "text/plain")
            return self._send(200, self.files[name], "image/jpeg")
        if url.path == "/unavailable":
            return self._send(503, b"try later", "text/plain")
        keyword = (params.get("q") or params.get("word") or [""])[0]
        label = keyword.split()[0] if keyword else ""
        links = [
            f"http://127.0.0.1:{self.server.server_port}/img/{n}.jpg"
            for n in RESULTS.get(label, [])
        ]
        if url.path == "/bing":
            divs = "".join(
                f"<div class=\"imgpt\"><a m='{json.dumps({'murl': link}, separators=(',', ':'))}'>x</a></div>"
                for link in links
            )
            return self._send(200, f"<html><body>{divs}</body></html>".encode(), "text/html")
        if url.path == "/google":
            script = f"<script>var data = {json.dumps(links)};</script>"
            return self._send(200, f"<html><body>{script}</body></html>".encode(), "text/html")
        if url.path == "/baidu":
            data = {"data": [{"hoverURL": link} for link in links] + [{}]}
            return self._send(200, json.dumps(data).encode(), "application/json")
        self._send(404, b"no such page", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def host():
    """Base URL of a local search engine and image host on 127.0.0.1."""
    handler = type("Host", (SearchAndImageHost,), {"files": make_files(), "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def local_and_quick(monkeypatch):
    """Requests go straight to 127.0.0.1; icrawler polls its threads every 20 ms, not 1 s."""
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(icrawler.crawler, "time", SimpleNamespace(sleep=lambda _: time.sleep(0.02)))


QUERIES = [Query("happy", "happy human face", 10), Query("sad", "sad human face", 10)]


def scraper(raw: Path, host: str, engines=("bing",), **overrides) -> Scraper:
    base_urls = {e: f"{host}/{e}" for e in ("google", "bing", "baidu")}
    base_urls |= overrides.pop("base_urls", {})
    options = dict(threads=2, timeout_s=5, queue_timeout_s=0.3, max_engine_failures=2)
    return Scraper(raw, engines=engines, base_urls=base_urls, **(options | overrides))


def files_with_hashes(raw: Path) -> dict[str, str]:
    return {
        p.relative_to(raw).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in raw.glob("*/*")
        if p.is_file()
    }


def test_keeps_valid_new_images_and_flags_cross_label_copies(tmp_path, host):
    raw = tmp_path / "raw"
    outcomes = scraper(raw, host).run(QUERIES)

    assert [o.error for o in outcomes] == ["", ""]
    rows = ScrapeManifest(raw).rows()
    kept = [r for r in rows if r["status"] == "kept"]
    assert sorted(r["label"] for r in kept) == ["happy"] * 3 + ["sad"] * 2
    for row in kept:  # each manifest row describes its file exactly
        data = (raw / row["file"]).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["file"].startswith(row["label"] + "/")
        assert row["engine"] == "bing" and row["url"].startswith(host + "/img/")
        assert row["query"] == f"{row['label']} human face"
    assert len(files_with_hashes(raw)) == 5
    # happy_near and happy0 are one picture: exactly one of them is kept
    kept_urls = {r["url"].rsplit("/", 1)[1] for r in kept}
    assert len(kept_urls & {"happy0.jpg", "happy_near.jpg"}) == 1
    assert "happy_exact.jpg" not in kept_urls or "happy1.jpg" not in kept_urls
    # a sad query found a happy image: flagged, not stored twice
    (flag,) = [r for r in rows if r["status"] == "also_labelled"]
    assert flag["label"] == "sad" and flag["file"].startswith("happy/")
    assert flag["url"].endswith("/img/sad_shared.jpg")
    assert source_info(raw)[flag["file"]][1] == "also_labelled:sad"
    # the broken downloads are counted by reason
    happy, sad = outcomes
    assert happy.kept == 3 and sad.kept == 2
    assert happy.rejected["truncated or corrupt"] == 1 and happy.rejected["too small"] == 1
    assert happy.rejected["near duplicate"] + happy.rejected["duplicate"] == 2
    assert sad.rejected["not an image file"] == 1 and sad.rejected["empty file"] == 1
    assert sad.rejected["found under another label"] == 1
    assert "bing: 2 queries run" in summarize_queries(outcomes)


def test_rerun_skips_finished_queries_and_never_touches_files(tmp_path, host):
    raw = tmp_path / "raw"
    scraper(raw, host).run(QUERIES)
    before, manifest_before = files_with_hashes(raw), (raw / "manifest.csv").read_text()

    outcomes = scraper(raw, host).run(QUERIES)

    assert all(o.skipped == "finished in an earlier run" for o in outcomes)
    assert files_with_hashes(raw) == before
    assert (raw / "manifest.csv").read_text() == manifest_before


def test_interrupted_query_resumes_without_duplicates_or_losses(tmp_path, host):
    raw = tmp_path / "raw"
    capped = [Query(q.label, q.text, 2) for q in QUERIES]
    scraper(raw, host).run(capped)
    assert len(files_with_hashes(raw)) == 4  # the cap holds
    before = files_with_hashes(raw)
    (raw / "queries.csv").unlink()  # as if the run had been killed before finishing

    scraper(raw, host).run(QUERIES)

    after = files_with_hashes(raw)
    assert after.items() >= before.items()  # nothing lost or overwritten
    assert len(after) == 5
    kept = [r["file"] for r in ScrapeManifest(raw).rows() if r["status"] == "kept"]
    assert sorted(kept) == sorted(after)  # one manifest row per file, none twice


def test_failing_engine_is_reported_and_the_others_go_on(tmp_path, host):
    raw = tmp_path / "raw"
    dead = {"google": f"{host}/unavailable"}
    outcomes = scraper(raw, host, engines=("google", "bing"), base_urls=dead).run(QUERIES)

    google = [o for o in outcomes if o.engine == "google"]
    bing = [o for o in outcomes if o.engine == "bing"]
    assert all("HTTP 503" in o.error for o in google)
    assert [o.error for o in bing] == ["", ""] and sum(o.kept for o in bing) == 5
    finished = ScrapeManifest(raw).finished_queries()
    assert {engine for engine, _, _ in finished} == {"bing"}  # google is retried next time
    assert "failed 'happy human face' (happy): HTTP 503" in summarize_queries(outcomes)


def test_engine_left_out_after_repeated_failures(tmp_path, host):
    queries = [Query("happy", f"happy face {i}", 5) for i in range(4)]
    closed = {"bing": "http://127.0.0.1:9/bing"}  # discard port: nothing listens
    outcomes = scraper(tmp_path / "raw", host, base_urls=closed, timeout_s=1).run(queries)

    assert [bool(o.error) for o in outcomes] == [True, True, False, False]
    assert "no result page could be fetched" in outcomes[0].error
    assert all("failed 2 times in a row" in o.skipped for o in outcomes[2:])


def test_google_and_baidu_parsers_and_url_lists(tmp_path, host):
    raw = tmp_path / "raw"
    url_list = tmp_path / "sad_urls.csv"
    url_list.write_text(
        f"url,note\n{host}/img/sad0.jpg,a\n{host}/img/text.jpg,b\nftp://x/y.jpg,c\n"
    )
    outcomes = scraper(raw, host, engines=("google", "baidu", "urls")).run(
        [Query("happy", "happy human face", 10)], url_lists=[Query("sad", str(url_list), 0)]
    )

    assert [(o.engine, o.error) for o in outcomes] == [("google", ""), ("baidu", ""), ("urls", "")]
    google, baidu, urls = outcomes
    assert google.kept == 3 and baidu.kept == 0  # baidu found the same images again
    assert baidu.rejected["duplicate"] >= 3
    assert urls.kept == 1 and urls.rejected["not an image file"] == 1
    assert {r["engine"] for r in ScrapeManifest(raw).rows()} == {"google", "urls"}


def test_plan_queries_caps_and_errors():
    presets = {"happy": ["happy human face", {"query": "smiling face", "cap": 7}, "joyful face"]}
    assert plan_queries(presets, ["happiness"], 2000, 1000) == [
        Query("happy", "happy human face", 2000),
        Query("happy", "smiling face", 7),
        Query("happy", "joyful face", 1000),
    ]
    assert {q.cap for q in plan_queries(presets, ["happy"], 2000, 1000, max_per_query=5)} == {5}
    with pytest.raises(ValueError, match="no queries for class 'fear'"):
        plan_queries(presets, ["fear"], 1, 1)
    with pytest.raises(ValueError, match="must be a string"):
        plan_queries({"happy": [{"text": "x"}]}, ["happy"], 1, 1)


def test_url_list_formats(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("# comment\nhttp://a/1.jpg\n\n  https://b/2.png  \njavascript:alert(1)\n")
    assert read_url_list(text) == ["http://a/1.jpg", "https://b/2.png"]
    (tmp_path / "b.csv").write_text("link\nhttp://a/1.jpg\n")
    with pytest.raises(ValueError, match="'url' column"):
        read_url_list(tmp_path / "b.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_url_list(tmp_path / "missing.txt")


def test_unknown_engine_and_bad_filters_are_clear(tmp_path, host):
    with pytest.raises(ValueError, match="unknown engine.*yandex"):
        Scraper(tmp_path, engines=["yandex"])
    outcome = scraper(tmp_path, host, filters={"bing": {"colour": "red"}}).run(QUERIES[:1])[0]
    assert "bad bing filters" in outcome.error


def test_phash_finds_resized_copies_but_not_other_pictures():
    original = smooth_picture(1, 256)
    copy = cv2.resize(original, (180, 180), interpolation=cv2.INTER_AREA)
    index = DuplicateIndex(max_distance=3)
    assert index.claim("a", "happy", "sha-a", phash(original)) is None
    again = index.claim("b", "sad", "sha-b", phash(copy))
    assert again is not None and again.key == "a" and again.label == "happy" and not again.exact
    assert index.claim("c", "happy", "sha-c", phash(smooth_picture(2, 256))) is None
    assert index.find("sha-a").exact
    assert len(index) == 2
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


def test_cli_contract(tmp_path, host, monkeypatch, capsys):
    raw = tmp_path / "raw"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "emotion-scrape",
            f"out_dir={raw}",
            "scraper.engines=[bing]",
            "max_per_query=2",
            "classes=[happy]",
            "query_plan=tiny",
            f"scraper.base_urls.bing={host}/bing",
            "scraper.queue_timeout_s=0.3",
            f"paths.log_dir={tmp_path / 'logs'}",
            "hydra/job_logging=none",
            "hydra/hydra_logging=none",
        ],
    )
    scrape_cli.main()
    assert "bing: 1 queries run, 0 skipped, 0 failed; kept 2" in capsys.readouterr().out
    assert len(list((raw / "happy").iterdir())) == 2
    assert not (raw / "sad").exists()
