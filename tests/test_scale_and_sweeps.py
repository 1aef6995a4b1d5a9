"""Multi-process DDP under Hydra, sweeps (Optuna and grid), SLURM launcher config, precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_lightning.cli.eval import evaluate
from emotion_lightning.cli.sweep_report import write_report
from emotion_lightning.cli.train import train
from tests.conftest import compose_cfg

BIN = Path(sys.executable).parent


def run_cli(args: list[str], cwd: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


SYNTH = ["data.num_train=64", "data.num_val=32", "data.num_test=40", "data.batch_size=8"]


def test_ddp_two_cpu_processes_one_run_dir_synced_metrics(tmp_path):
    run = tmp_path / "run"
    run_cli(["emotion-train", "experiment=quickstart", "trainer=ddp_sim", "trainer.max_epochs=1",
             *SYNTH, f"hydra.run.dir={run}", "extras.print_config=false"], cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written elsewhere
    metrics = json.loads((run / "metrics.json").read_text())
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    # the test metric synced over both processes equals a single-process evaluation
    cfg = compose_cfg("eval", [f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", *SYNTH],
                      tmp_path / "eval")
    single = evaluate(cfg)
    assert single["num_samples"] == 40
    assert metrics["test/acc"] == pytest.approx(single["acc"], abs=1e-6)
    assert metrics["test/macro_f1"] == pytest.approx(single["macro_f1"], abs=1e-6)


@pytest.fixture
def wild_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "wild"
    for name in ("angry", "disgust", "happy", "sad", "surprise"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (48, 48), np.uint8))
    return root


def test_optuna_sweep_two_trials_and_report(tmp_path, wild_root):
    sweep = tmp_path / "sweep"
    run_cli(["emotion-train", "-m", "experiment=wild_stage2", "hparams_search=freeze_lr",
             "hydra.sweeper.n_trials=2", "debug=fdr", "trainer.detect_anomaly=false",
             f"data.root={wild_root}", "data.batch_size=8", f"hydra.sweep.dir={sweep}",
             "logger=csv"], cwd=tmp_path)
    trials = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(trials) == 2
    assert (sweep / "optimization_results.yaml").is_file()
    out = write_report(sweep)
    table = out["md"].read_text()
    assert "callbacks.freeze.trainable_last" in table and "model.optimizer.lr" in table
    assert table.count("| done |") == 2 and out["png"].stat().st_size > 1000
    proc = run_cli(["emotion-sweep-report", str(sweep)], cwd=tmp_path)
    assert "sorted by val/balanced_acc" in proc.stdout


def test_grid_sweep_and_slurm_launcher_compose(tmp_path):
    grid = compose_cfg("train", ["experiment=wild_stage2", "hparams_search=freeze_lr_grid"],
                       tmp_path)
    assert grid.callbacks.freeze.unit == "children" and grid.optimized_metric == "val/balanced_acc"
    from hydra import compose, initialize_config_dir

    from emotion_lightning.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=freeze_lr_grid", "hydra/launcher=slurm",
                                          "trainer=ddp"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["callbacks.freeze.trainable_last"] == "2,3,5"
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == cfg.trainer.devices and launcher.nodes == cfg.trainer.num_nodes


def test_mixed_precision_and_channels_last_train(tmp_path):
    cfg = compose_cfg("train", ["experiment=quickstart", "debug=fdr", *SYNTH,
                                "trainer.precision=bf16-mixed", "model.channels_last=true",
                                "trainer.detect_anomaly=false"], tmp_path)
    metrics, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed"
    assert "test/acc" in metrics
