"""benchmarks/train_throughput.py: the input-pipeline timer and its --images checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from emotion_lightning.data.base import ArrayDataset
from emotion_lightning.data.presets import GrayPreset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def faces(n: int) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n),
                        GrayPreset(48, train=True))


def test_pipeline_rate_repeats_epochs_when_asked_for_more_batches_than_one_holds(bench):
    # 40 faces hold 2 whole batches of 16; 7 batches need 4 passes
    assert bench.pipeline_rate(faces(40), 16, 0, batches=7) > 0


def test_fewer_images_than_one_batch_stop_with_what_to_pass(bench):
    with pytest.raises(SystemExit, match=r"--images 10 is less than one batch of 64: pass --images 64"):
        bench.loader(faces(10), 64, 0)
