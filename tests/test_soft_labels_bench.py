"""benchmarks/soft_labels.py: teachers' agreement with the labels on the faces they learnt,
the fold they never saw, validation, and the student's out-of-fold targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from emotion_lightning.data.fer import FERDataModule
from emotion_lightning.models import EmotionClassifier
from tests.conftest import CLASSES, one_torch_thread

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "soft_labels.py"


def test_each_teacher_is_scored_on_seen_and_unseen_faces_and_the_student_out_of_fold(
        fer_folder, tmp_path):
    teachers = []
    for fold in (0, 1):
        data = FERDataModule(fer_folder, classes=CLASSES, batch_size=8, num_workers=0,
                             cache_dir=None, cross_fit_folds=2, cross_fit_fold=fold)
        trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu")
        with one_torch_thread():
            trainer.fit(EmotionClassifier(CLASSES, arch="resnet18"), datamodule=data)
        trainer.save_checkpoint(tmp_path / f"fold{fold}.ckpt")
        teachers.append(str(tmp_path / f"fold{fold}.ckpt"))
    out = tmp_path / "soft.json"
    subprocess.run([sys.executable, str(SCRIPT), "--teacher", *teachers, "--data", str(fer_folder),
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["cross_fits"] == [{"folds": 2, "fold": 0, "seed": 0},
                                    {"folds": 2, "fold": 1, "seed": 0}]
    rows = {(r["source"], r["faces_set"]): r for r in result["records"]}
    unseen = [rows[teachers[k], "training faces it never saw (its fold)"] for k in (0, 1)]
    learnt = [rows[teachers[k], "training faces it learnt"] for k in (0, 1)]
    student = rows["the student's targets (out of fold)", "training faces"]
    n = result["training_faces"]
    assert unseen[0]["faces"] + unseen[1]["faces"] == n == student["faces"]
    assert [u["faces"] for u in unseen] == [learnt[1]["faces"], learnt[0]["faces"]]
    # the student's targets are the unseen folds' soft labels, face for face
    for key in ("agreement", "p_label_T2", "p_label_T1"):
        pooled = sum(u[key] * u["faces"] for u in unseen) / n
        assert student[key] == pytest.approx(pooled, abs=2e-4)
    assert 0 < rows["the teachers' mean", "validation"]["faces"] < n
    assert result["cpu_cores"] >= 1 and result["temperature"] == 2.0
    # one fold's teacher alone: scored, but no student targets (a fold has no teacher)
    assert result["flip"] is False
    # one fold's teacher alone, mirrors averaged in: scored, but no student targets
    run = subprocess.run([sys.executable, str(SCRIPT), "--teacher", teachers[0], "--data",
                          str(fer_folder), "--flip", "--out", str(out)],
                         check=True, capture_output=True, text=True, timeout=300)
    assert "no teacher was trained without fold(s) [1] of 2" in run.stdout
    flipped = json.loads(out.read_text())
    assert {r["source"] for r in flipped["records"]} == {teachers[0], "the teachers' mean"}
    assert flipped["flip"] is True
