"""Bad inputs of ``emotion-train``: a diverged run stops non-zero with no checkpoint of its
NaN weights, class lists are checked before anything is built, a checkpoint of another class
set names both lists, a data error leaves no ``interrupted.ckpt``, and a refused command
leaves the earlier run's ``.hydra/`` as it was."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from hydra.errors import InstantiationException

from emotion_lightning.callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from emotion_lightning.cli.train import train
from emotion_lightning.data import SyntheticDataModule
from tests.conftest import compose_cfg
from tests.test_bad_inputs_checkpoints import TINY_SYNTHETIC


def test_a_diverged_run_stops_with_the_step_and_value_and_keeps_no_nan_checkpoint(tmp_path):
    run = tmp_path / "run"
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "model.optimizer.lr=1e6", "trainer.max_epochs=3",
                                "data.num_train=32", "data.batch_size=8"], run)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf) at step \d+ .*"
                                                 r"lower model\.optimizer\.lr"):
        train(cfg)
    assert not list(run.rglob("*.ckpt")), list(run.rglob("*.ckpt"))
    assert not (run / "metrics.json").exists()


class _Strategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:  # noqa: A002
        return decision


class _Trainer:
    strategy, global_step, current_epoch = _Strategy(), 7, 1
    optimizers = [torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_the_finite_loss_check_raises_only_on_non_finite_values(value):
    check = StopOnNonFiniteLoss()
    check.on_before_backward(_Trainer(), None, torch.tensor(2.5))  # finite: nothing happens
    with pytest.raises(NonFiniteLossError, match=r"at step 7 \(epoch 1\) \(learning rate now 0\.5\)"):
        check.on_before_backward(_Trainer(), None, torch.tensor(value))


@pytest.mark.parametrize(("classes", "message"), [
    (["happy", "happy", "sad"], r"names \['happy'\] more than once"),
    (["anger", "angry", "sad"], r"names \['angry'\] more than once"),
    (["hapy"], r"'hapy' \(did you mean 'happy'\?\) is not an emotion name"),
    (["happy"], "at least two classes"),
])
def test_class_lists_are_checked_before_the_model_is_built(tmp_path, classes, message):
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, f"data.classes=[{','.join(classes)}]"],
                      tmp_path / "run")
    with pytest.raises(InstantiationException, match=message):  # not torchmetrics' num_classes
        train(cfg)
    with pytest.raises(ValueError, match=message):
        SyntheticDataModule(classes=classes)


def test_a_checkpoint_of_another_class_set_names_both_lists(tmp_path, checkpoint):
    run = tmp_path / "run"
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "data.classes=[happy,sad]",
                                f"ckpt_path={checkpoint}"], run)
    with pytest.raises(ValueError, match=r"trained on classes \['angry', 'disgust', 'happy', "
                                         r"'sad', 'surprise'\], but this run's classes are "
                                         r"\['happy', 'sad'\]"):
        train(cfg)
    assert not (run / "checkpoints").exists()


def test_a_data_error_in_setup_leaves_no_interrupted_checkpoint(tmp_path):
    run = tmp_path / "run"
    bad = tmp_path / "fer.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    fer = ["data=fer", f"data.root={bad}", "data.num_workers=0", "model.arch=resnet18",
           "trainer.max_epochs=1", "extras.print_config=false"]
    with pytest.raises(ValueError, match=rf"{bad}:2: 3 pixel values"):
        train(compose_cfg("train", fer, run))
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()
    train(compose_cfg("train", TINY_SYNTHETIC, run))  # the fixed command is not "an earlier run"
    assert (run / "metrics.json").is_file()


def test_a_refused_fit_keeps_the_earlier_runs_hydra_record(tmp_path, checkpoint):
    """Hydra writes ``.hydra/`` before the job runs: the run-dir check runs before that."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(checkpoint.read_bytes())
    (run / ".hydra").mkdir()
    record = {name: f"the earlier run's {name}\n" for name in
              ("config.yaml", "hydra.yaml", "overrides.yaml")}
    for name, text in record.items():
        (run / ".hydra" / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_RESTART_COUNT"}
    proc = subprocess.run(
        [sys.executable, "-m", "emotion_lightning.cli.train", *TINY_SYNTHETIC,
         f"hydra.run.dir={run}"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "last.ckpt is from an earlier run in this run dir" in proc.stderr, proc.stderr[-2000:]
    assert {name: (run / ".hydra" / name).read_text() for name in record} == record


def test_last_ckpt_is_the_latest_epoch_even_when_it_did_not_improve(tmp_path):
    """Lightning's save_last rewrites last.ckpt only with a new best: ckpt_path=last would go
    back to the best epoch. Here only the first epoch is "best" (the monitor is the step,
    minimised) and last.ckpt must still be the third."""
    run = tmp_path / "run"
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "trainer.max_epochs=3",
                                "callbacks.model_checkpoint.monitor=step",
                                "callbacks.model_checkpoint.mode=min"], run)
    metrics, _ = train(cfg)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 3)
    assert metrics["best_ckpt"].endswith("epoch_000.ckpt")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_000.ckpt",
                                                                       "last.ckpt"]
