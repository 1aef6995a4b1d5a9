"""Decoding a large image list once into a chunked, memory-mapped cache that resumes, and
read-only views of its rows (nothing is loaded into RAM)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from emotion_lightning.data.cache import cached_arrays, fingerprint
from emotion_lightning.data.label_files import SkipReport

log = logging.getLogger(__name__)
#: Images per cache entry: an interrupted build resumes after the last whole chunk.
CHUNK = 4096


class ImageRows:
    """uint8 ``[H, W]`` images at ``index`` of a list of ``[n, H, W]`` chunks (memory maps).

    Indexing with an int gives an image; with an index array, a slice or a mask, another view.
    Pickled (DataLoader workers under spawn) as the chunks' file names, never as the pixels.
    """

    def __init__(self, chunks: Sequence[np.ndarray], index: np.ndarray | None = None) -> None:
        self.chunks = list(chunks)
        self.starts = np.cumsum([0, *(len(c) for c in self.chunks)])
        self.index = np.arange(self.starts[-1]) if index is None else np.asarray(index, np.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.chunks[0].shape[1:])

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            position = int(self.index[item])
            chunk = int(np.searchsorted(self.starts, position, side="right")) - 1
            return self.chunks[chunk][position - self.starts[chunk]]
        return ImageRows(self.chunks, self.index[item])

    @property
    def dtype(self) -> np.dtype:
        return self.chunks[0].dtype

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The selected images as one in-memory ``[N, H, W]`` array, gathered chunk by chunk."""
        out = np.empty(self.shape, dtype or self.dtype)
        chunk_of = np.searchsorted(self.starts, self.index, side="right") - 1
        for chunk in np.unique(chunk_of):
            rows = chunk_of == chunk
            out[rows] = self.chunks[chunk][self.index[rows] - self.starts[chunk]]
        return out

    def __getstate__(self) -> dict:
        files = [getattr(c, "filename", None) for c in self.chunks]
        chunks = [f if f is not None else c for f, c in zip(files, self.chunks)]
        return {"chunks": chunks, "index": self.index}

    def __setstate__(self, state: dict) -> None:
        chunks = [np.load(c, mmap_mode="r") if isinstance(c, (str, Path)) else c
                  for c in state["chunks"]]
        self.__init__(chunks, state["index"])


def decoded_images(
    cache_dir: str | Path | None,
    keys: Sequence[object],
    decode: Callable[[int], np.ndarray | str],
    size: int,
    desc: str,
) -> tuple[ImageRows, np.ndarray]:
    """The images ``decode(i)`` gives (``size x size`` uint8) for every ``keys[i]``, and each
    one's problem.

    ``keys[i]`` identifies what image ``i`` is made from (its file's path, size and mtime,
    its box). ``decode(i)`` returns the image or a short reason why there is none (an
    unreadable file, a face box outside the image); such rows hold zeros and their
    ``problem`` is the reason (``""`` for the rows that decoded). Chunks of :data:`CHUNK`
    images are cached under ``cache_dir`` (memory-mapped; ``None``: in RAM), each keyed by its
    own items: the build shows one progress bar, an interrupted one resumes after its last
    whole chunk, and a changed image rebuilds only its chunk. Returns ``(images, problem)``.
    """
    count = len(keys)
    starts = range(0, count, CHUNK)
    progress = tqdm(total=count, desc=desc, unit=" img")
    chunks, problems = [], []

    def build(start: int) -> dict[str, np.ndarray]:
        stop = min(start + CHUNK, count)
        images = np.zeros((stop - start, size, size), np.uint8)
        reasons = np.full(stop - start, "", dtype=object)
        for i in range(start, stop):
            out = decode(i)
            if isinstance(out, str):
                reasons[i - start] = out
            else:
                images[i - start] = out
            progress.update(1)
        return {"images": images, "problem": reasons.astype(str)}

    with progress:
        for start in starts:
            part_key = fingerprint(["chunk", size, *keys[start:start + CHUNK]])
            arrays = cached_arrays(cache_dir, part_key, lambda start=start: build(start))
            if progress.n <= start:  # already cached
                progress.update(min(CHUNK, count - start))
            chunks.append(arrays["images"])
            problems.append(np.asarray(arrays["problem"]))
    if not chunks:
        return ImageRows([np.zeros((0, size, size), np.uint8)]), np.zeros(0, str)
    problem = np.concatenate(problems)
    return ImageRows(chunks), problem


def report_problems(problem: np.ndarray, places: Sequence[str], report: SkipReport) -> np.ndarray:
    """Add every row with a decoding problem to ``report``; True where the image is usable."""
    for i in np.flatnonzero(problem != ""):
        report.add(str(problem[i]), places[i])
    return problem == ""
