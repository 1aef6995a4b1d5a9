"""Interrupted training resumes: a SIGTERM'd fit saves interrupted.ckpt, and a requeued SLURM
job (same command, ``SLURM_RESTART_COUNT`` > 0) resumes from it instead of starting over."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time

import pytest
import torch

from tests.helpers import BIN, SYNTH


@pytest.mark.slow
def test_a_requeued_job_resumes_from_its_interrupted_checkpoint(tmp_path):
    run = tmp_path / "run"
    command = [str(BIN / "emotion-train"), "experiment=quickstart", "trainer.max_epochs=12",
               "callbacks.early_stopping=null", *SYNTH, f"hydra.run.dir={run}",
               "extras.print_config=false"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SLURM_RESTART_COUNT", None)
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "last.ckpt").is_file():
        assert job.poll() is None and time.time() < deadline, job.communicate()[0][-3000:]
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)  # what SLURM sends before a timeout or preemption
    first, _ = job.communicate(timeout=120)
    assert job.returncode == 143 and "stopped by SIGTERM" in first, first[-2000:]
    assert not (run / "metrics.json").exists()
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    assert interrupted.is_file(), first[-2000:]
    stopped_at = torch.load(interrupted, map_location="cpu", weights_only=True)["global_step"]
    assert stopped_at > 0

    requeued = subprocess.run(command, cwd=tmp_path, env={**env, "SLURM_RESTART_COUNT": "1"},
                              capture_output=True, text=True, timeout=400)
    log = requeued.stdout + requeued.stderr
    assert requeued.returncode == 0, log[-3000:]
    assert "requeued SLURM job (restart 1)" in log and "Restoring states" in log
    # the requeued run logged its own epochs, from where the first stopped to the last one
    with (run / "csv" / "version_1" / "metrics.csv").open() as f:
        epochs = {int(row["epoch"]) for row in csv.DictReader(f) if row["epoch"]}
    assert min(epochs) >= 1 and set(range(min(epochs), 12)) <= epochs
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
