"""W&B: every sweep trial and recipe stage is its own run, with its own config and metrics.

Read back from W&B's offline run files (``run-<id>.wandb``: a LevelDB-style log of protobuf
records), so no account or network is needed.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.pipeline import run_pipeline
from tests.helpers import SYNTH, pipeline_cfg, run_cli

pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file (7-byte header, then 32 KiB blocks of
    records with a 7-byte header each: crc, length, type; types 2/3 continue a record)."""
    data, pos, block, pending = path.read_bytes(), 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0:  # zero padding to the end of the block
            pos += left - 7
            continue
        pending += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last part of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_run(run_dir: Path) -> dict:
    """The one offline W&B run under ``run_dir``: id, name, group, config and logged keys."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    out = {"id": None, "name": None, "group": None, "config": {}, "keys": set()}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name,
                       group=record.run.run_group)
        updates = (record.run.config.update if kind == "run"
                   else record.config.update if kind == "config" else [])
        for item in updates:
            out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        if kind == "history":
            out["keys"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return out


def test_importing_the_library_sets_no_environment_and_the_cli_never_wandb_mode():
    """Offline comes from the logger config only. A fresh interpreter importing the library's
    subpackages changes no environment variable; the command line sets its defaults
    (albumentations offline, W&B quiet) but leaves ``WANDB_MODE`` unset; the presets keep
    albumentations off the network when they import it."""
    keys = ("WANDB_MODE", "WANDB_SILENT", "NO_ALBUMENTATIONS_UPDATE")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    script = ("import os, json; before = dict(os.environ); "
              "import emotion_lightning, emotion_lightning.models, emotion_lightning.data, "
              "emotion_lightning.detect, emotion_lightning.faces; "
              # OpenCV's own import extends LD_LIBRARY_PATH: not ours
              "library = {k: v for k, v in os.environ.items() "
              "if before.get(k) != v and k != 'LD_LIBRARY_PATH'}; "
              "from emotion_lightning.data.presets import GrayPreset; GrayPreset(48, train=True); "
              "presets = os.environ.get('NO_ALBUMENTATIONS_UPDATE'); "
              "import emotion_lightning.cli.train; "
              f"print(json.dumps([library, presets, [os.environ.get(k) for k in {keys!r}]]))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    library, presets, cli = json.loads(proc.stdout.strip().splitlines()[-1])
    assert library == {} and presets == "1"
    assert cli == [None, "true", "1"]


@pytest.mark.slow
def test_each_sweep_trial_is_its_own_wandb_run(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(["emotion-train", "-m", "experiment=quickstart", "trainer.max_epochs=1", "logger=wandb",
             "model.optimizer.lr=0.01,0.02", *SYNTH, f"hydra.sweep.dir={sweep}",
             "extras.print_config=false"], cwd=tmp_path)
    runs = [read_run(sweep / str(trial)) for trial in (0, 1)]
    assert runs[0]["id"] != runs[1]["id"]
    assert [r["name"] for r in runs] == ["quickstart-0", "quickstart-1"]
    assert [r["config"]["model"]["optimizer"]["lr"] for r in runs] == [0.01, 0.02]
    assert all({"val/acc", "test/acc"} <= r["keys"] for r in runs), [r["keys"] for r in runs]


@pytest.mark.slow
def test_each_recipe_stage_is_its_own_wandb_run(tmp_path, data_dir):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = pipeline_cfg("full", tmp_path, data_dir, extra=[])
        cfg.pipeline.common = [*cfg.pipeline.common, "logger=wandb"]
        run_pipeline(cfg)
    runs = {stage: read_run(tmp_path / "recipe" / stage)
            for stage in ("distill", "fer_stage1", "wild_stage2")}
    assert len({r["id"] for r in runs.values()}) == 3
    assert {stage: r["config"]["task_name"] for stage, r in runs.items()} == {
        "distill": "distill", "fer_stage1": "fer_stage1", "wild_stage2": "wild_stage2"}
    assert "test/balanced_acc" in runs["wild_stage2"]["keys"]
    assert "test/balanced_acc" not in runs["distill"]["keys"]
