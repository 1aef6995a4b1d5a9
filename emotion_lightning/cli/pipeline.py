"""``emotion-pipeline``: multi-stage runs (a recipe, ``conf/recipe/``), each stage a train run.

    emotion-pipeline paths.data_dir=/data
    emotion-pipeline recipe=no_distill paths.data_dir=/data 'pipeline.common=["trainer=gpu"]'

A recipe lists stages (``pipeline.stages``); each stage is composed from ``conf/train.yaml``
with its own overrides, runs in ``<pipeline dir>/<stage>/`` under its own task name, and may
start from the best checkpoint of an earlier stage (``weights_from``). Re-running skips stages that
finished with the same config and resumes an interrupted stage from its ``last.ckpt``.
A stage's fingerprint covers its resolved config and the *content* of the checkpoint it
starts from, so a re-run upstream stage re-runs every stage after it. A stage whose config
(or input) changed is re-run; its old folder is moved aside, never deleted.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import hydra
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import log
from emotion_lightning.cli.eval import evaluate_checkpoint
from emotion_lightning.cli.train import train
from emotion_lightning.records import write_json

STATE_FILE = "stage_state.json"
SUMMARY_KEYS = ("acc", "balanced_acc", "macro_f1", "loss")


def _quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def config_hash(cfg: DictConfig) -> str:
    """Fingerprint of a fully resolved stage config."""
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stage_fingerprint(stage_cfg: DictConfig, weights: str | None) -> str:
    """The stage config's hash, combined with the content hash of the checkpoint it starts from.

    The input checkpoint's path alone is not enough: re-running the upstream stage rewrites
    the same path with new weights.
    """
    digest = config_hash(stage_cfg)
    if weights:
        digest = hashlib.sha256(f"{digest}:{file_sha256(weights)}".encode()).hexdigest()[:16]
    return digest


def compose_stage(cfg: DictConfig, name: str, stage: DictConfig, run_dir: Path,
                  weights: str | None) -> DictConfig:
    """The train config of one stage: the pipeline's paths and seed, its own overrides, then the
    pipeline's ``common`` overrides (so ``common`` wins, e.g. ``trainer=gpu`` for every stage)."""
    overrides = [f"paths.{key}={_quote(cfg.paths[key])}"
                 for key in ("root_dir", "data_dir", "log_dir", "cache_dir")]
    overrides += [f"seed={cfg.seed}", *stage.get("overrides", []),
                  *cfg.pipeline.get("common", []), f"task_name={name}",
                  f"paths.output_dir={_quote(run_dir)}"]
    if weights:
        overrides.append(f"model.weights={_quote(weights)}")
    return compose(config_name="train", overrides=overrides)


def _read_state(run_dir: Path) -> dict:
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(run_dir: Path, **state) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def run_stage(cfg: DictConfig, name: str, stage: DictConfig, pipeline_dir: Path,
              weights: str | None) -> dict:
    """Run, resume or skip one stage; returns its metrics.json content."""
    run_dir = pipeline_dir / name
    stage_cfg = compose_stage(cfg, name, stage, run_dir, weights)
    digest = stage_fingerprint(stage_cfg, weights)
    state = _read_state(run_dir)
    metrics_file = run_dir / "metrics.json"
    if state.get("config_hash") == digest and state.get("status") == "done" and metrics_file.is_file():
        log.info("stage %s: finished earlier with the same config, skipping", name)
        return json.loads(metrics_file.read_text())
    last = run_dir / "checkpoints" / "last.ckpt"
    if state.get("config_hash") == digest and last.is_file():
        log.info("stage %s: resuming from %s", name, last)
        stage_cfg.ckpt_path = str(last)
    elif run_dir.exists() and any(run_dir.iterdir()):
        aside = run_dir.with_name(f"{name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        if state.get("config_hash") == digest:
            log.warning("stage %s: interrupted before its first checkpoint: starting it again "
                        "(the partial run is moved to %s)", name, aside)
        elif state.get("config_hash"):
            log.warning("stage %s: config or input checkpoint changed; moving the earlier run "
                        "to %s", name, aside)
        else:
            log.warning("stage %s: %s holds no finished stage of this pipeline; moving it to %s",
                        name, run_dir, aside)
        run_dir.rename(aside)
    _write_state(run_dir, config_hash=digest, status="running")
    metrics, _ = train(stage_cfg)
    _write_state(run_dir, config_hash=digest, status="done")
    return metrics


def summarize_stages(stages: dict[str, dict], comparison: dict | None) -> str:
    """A markdown table of every stage's val/test metrics, and the before/after comparison."""
    lines = ["| stage | " + " | ".join(f"val/{k}" for k in SUMMARY_KEYS[:3]) + " | "
             + " | ".join(f"test/{k}" for k in SUMMARY_KEYS[:3]) + " |",
             "|---" * 7 + "|"]
    for name, metrics in stages.items():
        cells = [metrics.get(f"{split}/{k}") for split in ("val", "test") for k in SUMMARY_KEYS[:3]]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in cells)
                     + " |")
    if comparison:
        lines += ["", f"On {comparison['after']}'s test split:", "",
                  "| model | acc | balanced_acc | macro_f1 |", "|---|---|---|---|"]
        for key in ("before", "after"):
            row = comparison[f"{key}_metrics"]
            lines.append(f"| {comparison[key]} | {row['acc']:.4f} | {row['balanced_acc']:.4f} | "
                         f"{row['macro_f1']:.4f} |")
    return "\n".join(lines) + "\n"


def run_pipeline(cfg: DictConfig) -> dict:
    """Run every stage in order; write ``summary.json`` and ``summary.md`` in the run dir."""
    pipeline_dir = Path(cfg.paths.output_dir)
    results: dict[str, dict] = {}
    for name, stage in cfg.pipeline.stages.items():
        if stage is None:  # a variant removed this stage
            continue
        source = stage.get("weights_from")
        if source and source not in results:
            raise ValueError(f"stage {name}: weights_from={source!r} is not an earlier stage")
        weights = results[source].get("best_ckpt") if source else None
        if source and not weights:
            raise ValueError(f"stage {name}: stage {source} left no best checkpoint to start from")
        results[name] = run_stage(cfg, name, stage, pipeline_dir, weights)

    comparison = None
    compare = cfg.pipeline.get("compare")
    if compare and results[compare.before].get("best_ckpt"):
        after_cfg = compose_stage(cfg, compare.after, cfg.pipeline.stages[compare.after],
                                  pipeline_dir / compare.after, None)
        before = evaluate_checkpoint(results[compare.before]["best_ckpt"], after_cfg.data,
                                     after_cfg.trainer,
                                     pipeline_dir / f"{compare.before}_on_{compare.after}")
        after = {k: results[compare.after][f"test/{k}"] for k in SUMMARY_KEYS}
        comparison = {"before": compare.before, "after": compare.after,
                      "before_metrics": {k: before[k] for k in SUMMARY_KEYS},
                      "after_metrics": after}
    summary = {"stages": results, "comparison": comparison}
    write_json(summary, pipeline_dir / "summary.json")
    (pipeline_dir / "summary.md").write_text(summarize_stages(results, comparison))
    log.info("pipeline summary:\n%s", summarize_stages(results, comparison))
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pipeline")
def main(cfg: DictConfig) -> None:
    run_pipeline(cfg)


if __name__ == "__main__":
    main()
