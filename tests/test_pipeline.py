"""The multi-stage recipe: chaining checkpoints, skipping finished stages, resuming, summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hydra import initialize_config_dir

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.pipeline import run_pipeline
from tests.helpers import pipeline_cfg


@pytest.mark.slow
def test_recipe_chains_stages_skips_and_summarises(tmp_path, data_dir):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = pipeline_cfg("full", tmp_path, data_dir)
        summary = run_pipeline(cfg)
        out = tmp_path / "recipe"
        assert list(summary["stages"]) == ["distill", "fer_stage1", "wild_stage2"]
        stage1 = json.loads((out / "fer_stage1" / "metrics.json").read_text())
        config1 = (out / "fer_stage1" / "config.yaml").read_text()
        assert summary["stages"]["distill"]["best_ckpt"] in config1  # weights from distill
        config2 = (out / "wild_stage2" / "config.yaml").read_text()
        assert stage1["best_ckpt"] in config2
        assert "task_name: wild_stage2" in config2
        cmp = summary["comparison"]
        assert cmp["before"] == "fer_stage1" and set(cmp["before_metrics"]) >= {"acc", "balanced_acc"}
        assert "| wild_stage2 |" in (out / "summary.md").read_text()

        def outputs(stage):  # what a re-run would rewrite: the metrics and the best checkpoint
            metrics = out / stage / "metrics.json"
            best = Path(json.loads(metrics.read_text())["best_ckpt"])
            return [(f, f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
                    for f in (metrics, best)]

        stages = ["distill", "fer_stage1", "wild_stage2"]
        # a re-run with the same config skips every stage
        before = {stage: outputs(stage) for stage in stages}
        run_pipeline(cfg)
        assert {stage: outputs(stage) for stage in stages} == before

        # a changed stage config re-runs that stage and keeps the earlier run aside
        changed = pipeline_cfg("full", tmp_path, data_dir,
                                ["pipeline.stages.wild_stage2.overrides=['experiment=wild_stage2',"
                                 "'callbacks.freeze.trainable_last=1']"])
        run_pipeline(changed)
        assert len(list(out.glob("wild_stage2.previous-*"))) == 1
        assert outputs("wild_stage2") != before["wild_stage2"]
        # the stages upstream of it are untouched: same files, same times, same bytes
        assert [outputs(stage) for stage in stages[:2]] == [before[s] for s in stages[:2]]
        assert not list(out.glob("fer_stage1.previous-*")) and not list(out.glob("distill.previous-*"))


@pytest.mark.slow
def test_interrupted_stage_resumes_from_last_checkpoint(tmp_path, data_dir, monkeypatch):
    from emotion_lightning.cli import pipeline
    from emotion_lightning.models import EmotionClassifier

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = pipeline_cfg("no_distill", tmp_path, data_dir,
                            ["pipeline.stages.fer_stage1.overrides=['experiment=fer_stage1']"],
                            epochs=2)
        calls = []
        real_train = pipeline.train
        monkeypatch.setattr(pipeline, "train", lambda c: calls.append(c.get("ckpt_path"))
                            or real_train(c))

        def crash_in_second_epoch(module):
            if module.current_epoch == 1 and len(calls) == 1:
                raise RuntimeError("power cut")

        monkeypatch.setattr(EmotionClassifier, "on_train_epoch_start", crash_in_second_epoch)
        with pytest.raises(RuntimeError, match="power cut"):
            run_pipeline(cfg)
        summary = run_pipeline(cfg)
        assert calls[0] is None and calls[1].endswith("fer_stage1/checkpoints/last.ckpt")
        assert summary["stages"]["fer_stage1"]["best_ckpt"]
        assert "distill" not in json.loads((tmp_path / "recipe" / "summary.json").read_text())["stages"]


@pytest.mark.slow
def test_rerun_upstream_stage_reruns_every_downstream_stage(tmp_path, data_dir, monkeypatch):
    """Stage 2's fingerprint covers stage 1's checkpoint content, not only its (unchanged) path."""
    from emotion_lightning.cli import pipeline

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        stage1 = "pipeline.stages.fer_stage1.overrides=['experiment=fer_stage1'{}]"
        cfg = pipeline_cfg("no_distill", tmp_path, data_dir,
                            [stage1.format(""), "pipeline.compare=null"])
        ran = []
        real_train = pipeline.train
        monkeypatch.setattr(pipeline, "train", lambda c: ran.append(c.task_name) or real_train(c))
        first = run_pipeline(cfg)
        assert ran == ["fer_stage1", "wild_stage2"]

        changed = pipeline_cfg("no_distill", tmp_path, data_dir,
                                [stage1.format(",'model.label_smoothing=0.3'"),
                                 "pipeline.compare=null"])
        second = run_pipeline(changed)
        assert second["stages"]["fer_stage1"]["best_ckpt"] == first["stages"]["fer_stage1"]["best_ckpt"]
        assert ran == ["fer_stage1", "wild_stage2"] * 2  # the same path, new weights: re-run
        out = tmp_path / "recipe"
        assert len(list(out.glob("wild_stage2.previous-*"))) == 1


def test_stage_killed_before_its_first_checkpoint_is_not_a_config_change(
        tmp_path, data_dir, monkeypatch, caplog):
    from emotion_lightning.cli import pipeline
    from emotion_lightning.models import EmotionClassifier

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = pipeline_cfg("no_distill", tmp_path, data_dir,
                            ["pipeline.stages.fer_stage1.overrides=['experiment=fer_stage1']",
                             "pipeline.stages.wild_stage2=null", "pipeline.compare=null"])
        calls = []
        real_train = pipeline.train
        monkeypatch.setattr(pipeline, "train", lambda c: calls.append(c.get("ckpt_path"))
                            or real_train(c))

        def crash_at_once(module):
            if len(calls) == 1:
                raise RuntimeError("killed")

        monkeypatch.setattr(EmotionClassifier, "on_train_epoch_start", crash_at_once)
        with pytest.raises(RuntimeError, match="killed"):
            run_pipeline(cfg)
        assert not (tmp_path / "recipe" / "fer_stage1" / "checkpoints" / "last.ckpt").exists()
        caplog.clear()
        with caplog.at_level("INFO", logger="emotion_lightning"):
            summary = run_pipeline(cfg)
        text = caplog.text
        assert "stage fer_stage1: interrupted before its first checkpoint: starting it again" in text
        assert "changed" not in text
        assert calls == [None, None]
        assert summary["stages"]["fer_stage1"]["best_ckpt"]
