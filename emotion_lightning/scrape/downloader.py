"""icrawler downloader that keeps only new, valid images and records each in the manifest."""

from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace

import requests
from icrawler import ImageDownloader

from emotion_lightning.images import IMAGE_EXTENSIONS, UnreadableImage, decode_image
from emotion_lightning.scrape.dedup import DuplicateIndex, phash, sha256_hex
from emotion_lightning.scrape.manifest import ScrapeManifest
from emotion_lightning.scrape.queries import Query

#: Larger downloads are rejected before decoding; reading stops once a body passes this.
MAX_BYTES = 30 * 1024 * 1024
_CHUNK = 64 * 1024


class _FetchFailed(Exception):
    """A download that brought no body to check; ``reason`` is the counted failure kind."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class ManifestDownloader(ImageDownloader):
    """Saves ``<label>/<sha256 prefix>.<ext>`` files under the storage root.

    A download is rejected (and counted in ``rejected`` by reason) when it is not a
    decodable image, is smaller than ``min_side`` pixels on a side, or duplicates an image
    already kept, exactly or nearly. A duplicate of an image kept under another label is
    recorded in the manifest as ``also_labelled``. Files are named by content, so nothing
    is ever overwritten.
    """

    def __init__(
        self,
        thread_num: int,
        signal,
        session,
        storage,
        *,
        query: Query,
        engine: str,
        manifest: ScrapeManifest,
        index: DuplicateIndex,
        min_side: int = 48,
    ) -> None:
        super().__init__(thread_num, signal, session, storage)
        self.query = query
        self.engine = engine
        self.manifest = manifest
        self.index = index
        self.min_side = min_side
        self.kept = 0
        self.rejected: Counter[str] = Counter()
        #: downloads that brought no image: "HTTP 404", "connection refused", "timeout", ...
        self.failed: Counter[str] = Counter()
        self.attempted = 0  # URLs tried
        self.decoded = 0  # downloads that were valid images (kept, duplicates, too small, ...)
        self._accepted = 0
        self._count_lock = threading.Lock()

    def download(self, task, default_ext, timeout=5, max_retry=3, overwrite=False, **kwargs):
        """Fetch ``task["file_url"]`` streaming (at most MAX_BYTES read), check and store it.

        Replaces icrawler's download, which reads whole bodies and only logs failures:
        here every failure is counted by kind in ``failed`` (or ``rejected``).
        """
        url = task["file_url"]
        task["success"] = False
        task["filename"] = None
        with self._count_lock:
            self.attempted += 1
        failure = ""
        data = None
        for _ in range(max(max_retry, 1)):
            if self.signal.get("reach_max_num"):
                return False
            try:
                data = self._fetch(url, timeout)
            except _FetchFailed as error:
                failure = error.reason
                if not error.retry:
                    break
            else:
                failure = ""
                break
        if failure == "too large":
            self.logger.info("rejected %s: too large (over %d bytes)", url, MAX_BYTES)
            with self._count_lock:
                self.rejected[failure] += 1
            return False
        if failure or data is None:
            self.logger.info("failed %s: %s", url, failure)
            with self._count_lock:
                self.failed[failure or "no response"] += 1
            return False
        with self.lock:
            if self.reach_max_num():
                self.signal.set(reach_max_num=True)
                return False
        if not self.keep_file(task, SimpleNamespace(content=data, url=url), **kwargs):
            return False
        with self.lock:
            self.fetched_num += 1
            filename = self.get_filename(task, default_ext)
        self.storage.write(filename, data)
        task["success"] = True
        task["filename"] = filename
        return True

    def _fetch(self, url: str, timeout: float) -> bytes:
        """The body of ``url``; stops reading (and fails "too large") past MAX_BYTES."""
        try:
            with self.session.get(url, timeout=timeout, stream=True) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_BYTES:
                    raise _FetchFailed("too large")
                chunks, size = [], 0
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise _FetchFailed("too large")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.Timeout:
            raise _FetchFailed("timeout", retry=True) from None
        except requests.ConnectionError as error:
            refused = "refused" in str(error).lower() or isinstance(
                _root_cause(error), ConnectionRefusedError)
            raise _FetchFailed("connection refused" if refused else "connection error",
                               retry=True) from None
        except requests.RequestException as error:
            raise _FetchFailed(f"request failed ({type(error).__name__})") from None

    def keep_file(self, task: dict, response, **kwargs) -> bool:
        """Validate and de-duplicate the downloaded bytes; remember where to store them."""
        url = task["file_url"]
        try:
            reason = self._problem(task, response.content)
        except Exception as error:  # a hostile file must not kill the downloader thread
            reason = f"undecodable ({type(error).__name__})"
        if reason:
            self.logger.info("rejected %s: %s", url, reason)
            with self._count_lock:
                self.rejected[reason] += 1
            return False
        return True

    def _problem(self, task: dict, data: bytes) -> str:
        """Why the download cannot be kept ("" when it can); claims the image when it can."""
        if len(data) > MAX_BYTES:
            return "too large"
        try:
            image = decode_image(data, task["file_url"], max_side=256)
        except UnreadableImage as error:
            return error.reason.split(" (")[0]
        with self._count_lock:
            self.decoded += 1
        if min(image.width, image.height) < self.min_side:
            return "too small"
        sha, image_hash = sha256_hex(data), phash(image.rgb)
        relpath = f"{self.query.label}/{sha[:20]}.{IMAGE_EXTENSIONS[image.format]}"
        with self._count_lock:
            if self.query.cap and self._accepted >= self.query.cap:
                self.signal.set(reach_max_num=True)
                return "cap reached"
            earlier = self.index.claim(relpath, self.query.label, sha, image_hash)
            if earlier is None:
                self._accepted += 1
        if earlier is not None:
            if earlier.label != self.query.label:
                self.manifest.append(
                    self._row(earlier.key, task["file_url"], sha, image_hash, "also_labelled")
                )
                return "found under another label"
            return "duplicate" if earlier.exact else "near duplicate"
        task.update(relpath=relpath, sha256=sha, phash=image_hash)
        return ""

    def get_filename(self, task: dict, default_ext: str) -> str:
        return task["relpath"]

    def process_meta(self, task: dict) -> None:
        if task.get("success"):
            self.manifest.append(
                self._row(task["relpath"], task["file_url"], task["sha256"], task["phash"], "kept")
            )
            with self._count_lock:
                self.kept += 1

    def _row(self, file: str, url: str, sha: str, image_hash: int, status: str) -> dict[str, str]:
        return {
            "file": file,
            "label": self.query.label,
            "engine": self.engine,
            "query": self.query.text,
            "url": url,
            "sha256": sha,
            "phash": f"{image_hash:016x}",
            "status": status,
        }


def _root_cause(error: BaseException) -> BaseException:
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error
