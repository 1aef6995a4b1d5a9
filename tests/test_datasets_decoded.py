"""The chunked decode cache the official-layout readers share: views, resume, pickling."""

from __future__ import annotations

import pickle

import numpy as np

from emotion_lightning.data import decoded
from emotion_lightning.data.decoded import ImageRows, decoded_images


def test_image_rows_index_like_an_array():
    chunks = [np.arange(i * 3 * 4, (i + 1) * 3 * 4, dtype=np.uint8).reshape(3, 2, 2) for i in range(3)]
    whole = np.concatenate(chunks)
    rows = ImageRows(chunks)
    pick = np.array([8, 0, 4, 3])
    np.testing.assert_array_equal(np.asarray(rows[pick]), whole[pick])
    np.testing.assert_array_equal(rows[pick][1], whole[0])
    np.testing.assert_array_equal(np.asarray(rows[pick][1:]), whole[pick][1:])
    assert rows[pick].shape == (4, 2, 2) and len(rows[whole[:, 0, 0] > 20]) == 3


class Stopped(Exception):
    """Stands in for an interrupted build (Ctrl-C, a killed job)."""


def test_interrupted_build_resumes_and_a_change_rebuilds_one_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(decoded, "CHUNK", 4)
    calls, first_build = [], [True]

    def decode(i):
        calls.append(i)
        if i == 9 and first_build[0]:  # the first build stops in the third chunk
            first_build[0] = False
            raise Stopped
        return "odd image" if i == 5 else np.full((3, 3), i, np.uint8)

    try:
        decoded_images(tmp_path, list(range(10)), decode, 3, "test")
    except Stopped:
        pass
    calls.clear()
    images, problem = decoded_images(tmp_path, list(range(10)), decode, 3, "test")
    assert calls == [8, 9]  # the two whole chunks came from the cache
    assert [images[i][0, 0] for i in (0, 4, 9)] == [0, 4, 9]
    assert problem[5] == "odd image" and (problem != "").sum() == 1
    calls.clear()
    decoded_images(tmp_path, [0, 1, 2, 3, 4, "changed", 6, 7, 8, 9], decode, 3, "test")
    assert calls == [4, 5, 6, 7]  # a changed item rebuilds its chunk only
    restored = pickle.loads(pickle.dumps(images))  # memory maps travel as file names
    assert len(pickle.dumps(images)) < 1000
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(images))
