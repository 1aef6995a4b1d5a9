"""Bad inputs and interruptions (issue 10): each is a clear error naming the file, or is
skipped and reported; a stopped run keeps a playable video and its summary."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
import subprocess
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
from emotion_lightning.data import WildDataModule
from emotion_lightning.data.fer_files import FERFormatError, load_fer
from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.detect.video_writer import Mp4vWriter
from emotion_lightning.faces.report import ReportWriter, read_report
from emotion_lightning.faces.review import write_review_pages
from emotion_lightning.images import UnreadableImage, load_gray
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.scrape import downloader as downloader_module
from emotion_lightning.scrape.manifest import ScrapeManifest
from emotion_lightning.scrape.queries import Query
from emotion_lightning.scrape.runner import Scraper, summarize
from tests.conftest import fer_images, write_fer_folder
from tests.test_detect import StubFinder, video_info, write_video
from tests.test_face_build import builder, photo, save


def jpeg_bytes(seed: int = 0, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# -- scraping: failures are counted, an all-failed query is not finished ---------------------
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
    assert "download failures 3 (3 HTTP 404)" in summarize([outcome])
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


# -- emotion-detect stopped by a signal: the video stays playable, the summary is written ----
def detect_command() -> list[str]:
    script = Path(sys.executable).with_name("emotion-detect")
    return [str(script)] if script.is_file() else [sys.executable, "-m",
                                                   "emotion_lightning.cli.detect"]


def frames_done(stderr_file: Path) -> int:
    """Frames the progress bar has counted so far (it is written to stderr)."""
    counts = re.findall(r"(\d+)/\d+ \[", stderr_file.read_text(errors="replace"))
    return int(counts[-1]) if counts else 0


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_emotion_detect_with_a_playable_video_and_a_summary(
        checkpoint, tmp_path, sig, code):
    video = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for i in range(6000):
        writer.write(np.full((48, 64, 3), (7 * i) % 256, np.uint8))
    writer.release()
    out = tmp_path / "out"
    env = {**os.environ, "EMOTION_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [*detect_command(), f"ckpt_path={checkpoint}", f"input={video}",
             f"output_dir={out}", "batch_size=1", "threads=1", "progress=true",
             f"paths.log_dir={tmp_path / 'logs'}"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=tmp_path,
            # a suite started in the background (`cmd &`) ignores SIGINT, and so would the
            # child: give it the default, as a terminal's Ctrl-C finds it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 180
            while frames_done(err) < 3:
                assert process.poll() is None, err.read_text()[-2000:]
                assert time.monotonic() < deadline, "no frames were annotated in time"
                time.sleep(0.1)
            process.send_signal(sig)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert returncode == code, err.read_text()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == sig.name
    assert 3 <= summary["frames"] < 6000
    frames, fps, size = video_info(out / "long.mp4")
    assert 0 < frames <= summary["frames"] and size == (64, 48), "the MP4 was closed properly"


@pytest.fixture(scope="module")
def classifier(checkpoint) -> EmotionClassifier:
    return EmotionClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()


def test_sigterm_in_process_keeps_outputs_and_restores_the_handler(classifier, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=10)

    class KilledFinder(StubFinder):
        def detect(self, images):
            if self.calls == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().detect(images)

    def previous(signum, frame):  # a handler of the program using MediaAnnotator
        raise AssertionError("the annotator's own handler must be active during the run")

    before = signal.signal(signal.SIGTERM, previous)
    try:
        annotator = MediaAnnotator(EmotionDetector(classifier, KilledFinder([[10, 10, 50, 60]])),
                                   tmp_path / "out", batch_size=1, progress=False)
        report = annotator.run(str(video))
        assert signal.getsignal(signal.SIGTERM) is previous, "the previous handler is restored"
    finally:
        signal.signal(signal.SIGTERM, before)
    assert report.stopped == "SIGTERM"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and 0 < summary["frames"] < 10
    assert 0 < video_info(tmp_path / "out" / "clip.mp4")[0] <= summary["frames"]


def test_video_writer_takes_non_contiguous_frames(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    picture = cv2.resize(small, (96, 80), interpolation=cv2.INTER_CUBIC)
    flipped = picture[:, ::-1]  # a view: negative strides, not C-contiguous
    assert not flipped.flags["C_CONTIGUOUS"]
    writer = Mp4vWriter(tmp_path / "flip.mp4", 7.0, flipped.shape)
    for _ in range(4):
        writer.write(flipped)
        writer.write(picture[::2, ::2].repeat(2, 0).repeat(2, 1)[:80, :96])
    writer.release()
    capture = cv2.VideoCapture(str(tmp_path / "flip.mp4"))
    ok, first = capture.read()
    capture.release()
    assert ok
    assert video_info(tmp_path / "flip.mp4")[0] == 8
    error = np.abs(cv2.cvtColor(first, cv2.COLOR_BGR2RGB).astype(int) - flipped.astype(int))
    assert error.mean() < 12, "the frame was written as the flipped picture, not scrambled"


# -- truncated images never enter training ---------------------------------------------------
def truncated_jpeg(path: Path, seed: int = 0, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.integers(0, 256, (6, 6), np.uint8), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", picture)[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is not None, "cv2 reads it partly grey"
    return path


def test_the_shared_decoder_refuses_truncated_jpegs(tmp_path):
    path = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(UnreadableImage, match="truncated") as error:
        load_gray(path)
    assert error.value.source == str(path)


def test_fer_folder_with_a_truncated_jpeg_names_the_file(tmp_path):
    images, labels = fer_images(2)
    root = write_fer_folder(tmp_path / "fer", images, labels, ["Training"] * len(labels))
    bad = truncated_jpeg(root / "train" / "happy" / "Training_cut.jpg")
    with pytest.raises(FERFormatError) as error:
        load_fer(root, cache_dir=None)
    message = str(error.value)
    assert message.startswith(f"{bad}: not a readable image (truncated or corrupt")
    assert "delete the file or replace it" in message


def test_fer_folder_logs_skipped_unsupported_files(tmp_path, caplog):
    images, labels = fer_images(2)
    root = write_fer_folder(tmp_path / "fer", images, labels, ["Training"] * len(labels))
    Image.new("L", (48, 48), 90).save(root / "train" / "sad" / "odd.gif")
    with caplog.at_level(logging.WARNING, "emotion_lightning.data.fer_files"):
        table = load_fer(root, cache_dir=None)
    assert len(table) == len(labels)
    assert "skipped 1 file(s) of unsupported types" in caplog.text and "odd.gif" in caplog.text


def wild_crops(root: Path, count: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("happy", "sad"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 256, (60, 60), np.uint8))
    return root


def test_wild_set_skips_and_reports_truncated_blank_and_unsupported_files(tmp_path, caplog):
    root = wild_crops(tmp_path / "crops")
    cut = truncated_jpeg(root / "happy" / "cut.jpg", size=60)
    # RGBA whose colour channels are empty and fully opaque: black for cv2, blank after decoding
    Image.fromarray(np.dstack([np.zeros((60, 60, 3), np.uint8),
                               np.full((60, 60), 255, np.uint8)])).save(root / "sad" / "rgba.png")
    Image.new("L", (60, 60), 90).save(root / "sad" / "anim.gif")
    with caplog.at_level(logging.WARNING, "emotion_lightning.data.wild"):
        dm = WildDataModule(root, classes=["happy", "sad"], cache_dir=None, test_fraction=0.0)
        dm.setup()
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 24
    assert f"skipped {cut}: truncated or corrupt" in caplog.text
    assert f"skipped {root / 'sad' / 'rgba.png'}: blank image" in caplog.text
    assert "unsupported types" in caplog.text and "anim.gif" in caplog.text
    for split in ("train", "val"):
        assert (dm.datasets[split].images.reshape(len(dm.datasets[split]), -1).std(1) > 0).all()


# -- a damaged face-build report -------------------------------------------------------------
def test_build_repairs_a_report_cut_off_mid_row(tmp_path, caplog):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(3):
        save(raw / "happy" / f"p{i}.png", photo(50 + i))
    builder().build(raw, out, progress=False)
    report = out / "report.csv"
    whole = report.read_bytes()
    last_row = whole[whole.rstrip(b"\r\n").rfind(b"\n") + 1:]
    report.write_bytes(whole[: len(whole) - len(last_row) // 2])  # power loss mid-row
    cut_source = last_row.split(b",")[0].decode()

    with caplog.at_level(logging.WARNING, "emotion_lightning.faces.report"):
        rows = builder().build(raw, out, progress=False)

    assert "the last row was cut off mid-write" in caplog.text
    assert sorted(r["source"] for r in rows) == [f"happy/p{i}.png" for i in range(3)]
    assert all(r["status"] == "kept" for r in rows)
    assert [r["source"] for r in read_report(report)].count(cut_source) == 1
    assert report.read_bytes().endswith(b"\n") and len(report.read_bytes().splitlines()) == 4


def test_report_rows_are_flushed_one_by_one(tmp_path):
    path = tmp_path / "report.csv"
    with ReportWriter(path) as writer:
        writer.write({"source": "happy/a.png", "label": "happy", "status": "dropped"})
        assert [r["source"] for r in read_report(path)] == ["happy/a.png"]  # before close


# -- the review page only embeds crops inside out_dir ---------------------------------------
def test_review_skips_crop_paths_outside_out_dir(tmp_path, caplog):
    out = tmp_path / "out"
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG SECRET BYTES")
    (out / "happy").mkdir(parents=True)
    Image.new("L", (48, 48), 120).save(out / "happy" / "ok.png")
    (out / "happy" / "link.png").symlink_to(secret)
    with ReportWriter(out / "report.csv") as report:
        for i, crop in enumerate(["happy/ok.png", "../secret.png", str(secret),
                                  "happy/link.png", "/etc/hostname"]):
            report.write({"source": f"happy/{i}.jpg", "label": "happy", "status": "kept",
                          "crop": crop})
    with caplog.at_level(logging.WARNING, "emotion_lightning.faces.review"):
        [page] = write_review_pages(out)
    text = page.read_text()
    assert text.count('class="tile"') == 1 and 'data-path="happy/ok.png"' in text
    assert base64.b64encode(secret.read_bytes()).decode() not in text
    assert "SECRET" not in text and "/etc/hostname" not in text and "../secret.png" not in text
    assert "skipped 4 crop path(s) outside" in caplog.text
