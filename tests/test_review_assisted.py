"""Model-assisted review: suspicion scores, ranking.csv, sorted pages, the CLI and the benchmark."""

from __future__ import annotations

import base64
import csv
import re
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from benchmarks.review import found_at, plant_flips
from emotion_lightning.cli import faces as faces_cli
from emotion_lightning.faces.review import write_review_pages
from emotion_lightning.faces.suspicion import RANKING_COLUMNS, label_suspicion

LEVELS = {"angry": 40, "happy": 128, "sad": 215}  # each class's brightness in the fake set


class BrightnessModel:
    """A stand-in classifier that reads the class from a crop's brightness, biased to happy
    (like a model trained where happy dominates)."""

    class_names = ["angry", "happy", "sad"]

    def __init__(self) -> None:
        self.seen = 0

    def predict_faces(self, crops):
        self.seen += len(crops)
        means = np.array([c.mean() for c in crops])[:, None]
        logits = -np.abs(means - np.array(list(LEVELS.values()))[None]) / 25.0
        logits[:, 1] += 1.5
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


def make_crops(root, per_class=20, seed=0):
    rng = np.random.default_rng(seed)
    for label, level in LEVELS.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.normal(0, 12, (48, 48))
            gray = np.clip(level + noise, 0, 255).astype(np.uint8)
            Image.fromarray(gray).save(root / label / f"{label}_{i:02d}.png")


def read_ranking(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_suspicion_is_the_margin_of_the_best_other_class_over_the_label():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    np.testing.assert_allclose(label_suspicion(probs, np.array([0, 0, 2])), [-0.5, 0.5, 0.2])
    assert label_suspicion(np.zeros((0, 3)), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="N labels"):
        label_suspicion(probs, np.array([0, 1]))


def test_planted_flips_come_first_in_the_ranking_and_pages(tmp_path):
    source, copy = tmp_path / "set", tmp_path / "copy"
    make_crops(source)
    planted = plant_flips(source, copy, 0.1, seed=3)
    assert len(planted) == 6 and all((copy / p).is_file() for p in planted)
    model = BrightnessModel()

    write_review_pages(copy, BrightnessModel(), progress=False)
    pages = write_review_pages(copy, model, progress=False)  # again: review/ is not a class

    ranking = read_ranking(copy / "review" / "ranking.csv")
    assert list(ranking[0]) == list(RANKING_COLUMNS)
    assert model.seen == len(ranking) == 60
    assert {r["file"] for r in ranking[:6]} == planted
    assert found_at([r["file"] for r in ranking], planted, 0.1) == 1.0
    suspicion = [float(r["suspicion"]) for r in ranking]
    assert suspicion == sorted(suspicion, reverse=True)
    for row in ranking[:6]:  # the model names the true class of every flipped crop
        level = cv2.imread(str(copy / row["file"]), cv2.IMREAD_GRAYSCALE).mean()
        truth = min(LEVELS, key=lambda label: abs(LEVELS[label] - level))
        assert row["predicted"] == truth != row["label"]
        assert 0 < float(row["confidence"]) <= 1
    # each label's page starts with its flipped crops, each showing the model's guess
    for page in pages:
        text = page.read_text()
        paths = re.findall(r'data-path="([^"]+)"', text)
        flipped_here = [p for p in paths if p in planted]
        assert paths[: len(flipped_here)] == flipped_here
        assert text.count('class="guess') == len(paths)
        assert "doubts most first" in text


def test_unranked_labels_and_unreadable_crops_are_reported_not_fatal(tmp_path, caplog):
    make_crops(tmp_path, per_class=3)
    (tmp_path / "neutral").mkdir()
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / "neutral" / "n.png")
    (tmp_path / "sad" / "broken.png").write_bytes(b"not a png")

    pages = write_review_pages(tmp_path, BrightnessModel(), progress=False)

    files = [r["file"] for r in read_ranking(tmp_path / "review" / "ranking.csv")]
    assert len(files) == 9 and "neutral/n.png" not in files and "sad/broken.png" not in files
    assert (tmp_path / "review" / "neutral.html") in pages
    assert "['neutral'] are not among the model's classes" in caplog.text
    assert "sad/broken.png" in caplog.text


def test_class_folders_of_large_jpegs_get_small_png_tiles(tmp_path):
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "big.jpg"), np.full((350, 350, 3), 128, np.uint8))

    [page] = write_review_pages(tmp_path, progress=False)

    [uri] = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    tile = cv2.imdecode(np.frombuffer(base64.b64decode(uri), np.uint8), cv2.IMREAD_UNCHANGED)
    assert tile.shape == (96, 96)
    assert not (tmp_path / "review" / "ranking.csv").exists()


def test_cli_review_with_a_checkpoint_ranks_every_crop(tmp_path, checkpoint, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (tmp_path / label).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(
                tmp_path / label / f"{i}.png")
    monkeypatch.setattr(sys, "argv", [
        "emotion-faces", "review", f"out_dir={tmp_path}", f"ckpt_path={checkpoint}", "device=cpu",
        "progress=false", f"paths.log_dir={tmp_path / 'logs'}", "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ])  # fmt: skip

    faces_cli.main()

    ranking = read_ranking(tmp_path / "review" / "ranking.csv")
    assert sorted(r["file"] for r in ranking) == sorted(
        f"{label}/{i}.png" for label in ("happy", "sad") for i in range(4))
    names = ["angry", "disgust", "happy", "sad", "surprise"]
    assert all(r["predicted"] in names and 0 < float(r["confidence"]) <= 1 for r in ranking)
    assert "ranking (most suspicious first)" in capsys.readouterr().out


def test_cli_review_with_a_missing_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    make_crops(tmp_path, per_class=1)
    monkeypatch.setattr(sys, "argv", [
        "emotion-faces", "review", f"out_dir={tmp_path}", f"ckpt_path={tmp_path / 'nope.ckpt'}",
        f"paths.log_dir={tmp_path / 'logs'}", "hydra/job_logging=none", "hydra/hydra_logging=none",
    ])  # fmt: skip
    with pytest.raises(SystemExit):
        faces_cli.main()
    assert f"checkpoint {tmp_path / 'nope.ckpt'} does not exist" in capsys.readouterr().err
