"""icrawler downloader that keeps only new, valid images and records each in the manifest."""

from __future__ import annotations

import threading
from collections import Counter

from icrawler import ImageDownloader

from emotion_lightning.faces.images import IMAGE_EXTENSIONS, UnreadableImage, decode_image
from emotion_lightning.scrape.dedup import DuplicateIndex, phash, sha256_hex
from emotion_lightning.scrape.manifest import ScrapeManifest
from emotion_lightning.scrape.queries import Query

#: Larger downloads are rejected before decoding.
MAX_BYTES = 30 * 1024 * 1024


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
        self._accepted = 0
        self._count_lock = threading.Lock()

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
