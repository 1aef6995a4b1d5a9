"""emotion-train: fit a model on a datamodule, test the best checkpoint, write metrics.json.

    emotion-train experiment=quickstart
    emotion-train experiment=fer_stage1 data.root=/path/to/fer2013 trainer=gpu
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import (
    instantiate_group,
    log,
    resolve_precision,
    save_run_config,
    scalar_metrics,
    seed_everything,
    setup_parallelism,
    write_json,
)
from emotion_lightning.models.weights import load_checkpoint_file
from emotion_lightning.runtime import cpu_name


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Fit and test as configured; returns (metrics, objects) and writes ``metrics.json``."""
    output_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, output_dir)
    seed_everything(cfg.get("seed"))
    setup_parallelism(cfg)
    resolve_precision(cfg.trainer)

    stable_wandb_id(cfg, output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict = {}
    if cfg.get("train", True):
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg),
                    weights_only=True)
        metrics.update(fit_summary(trainer, time.perf_counter() - start))
    metrics.update(scalar_metrics(trainer.callback_metrics))

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test", True):
        if not best:
            log.warning("no best checkpoint (fast_dev_run or no validation): testing current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics["best_ckpt"] = str(Path(best).resolve()) if best else None
    write_json(metrics, output_dir / "metrics.json")
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def fit_summary(trainer: L.Trainer, seconds: float) -> dict:
    """Wall time of fit (``train/seconds``), the learning rate at its peak and after the last
    step (``lr/peak``, ``lr/final``), the precision and the CPU it ran on."""
    out = {"train/seconds": seconds, "precision": str(trainer.precision), "cpu": cpu_name()}
    if trainer.optimizers:
        group = trainer.optimizers[0].param_groups[0]
        out["lr/final"] = float(group["lr"])
        out["lr/peak"] = float(group.get("initial_lr", group["lr"]))
    return out


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path`` checked before fitting (the file is loaded weights-only).

    ``last`` means the run dir's ``checkpoints/last.ckpt`` and fails when there is none
    (Lightning would silently train from scratch); a file that is not a checkpoint fails
    with ``not a checkpoint: FILE``.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, "", "null", "None"):
        return None
    if str(ckpt) == "last":
        dirpath = ((cfg.get("callbacks") or {}).get("model_checkpoint") or {}).get("dirpath")
        folder = Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints")
        last = folder / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: there is no last.ckpt in {folder}; pass "
                "ckpt_path=/path/to/last.ckpt, or rerun with hydra.run.dir=<the earlier run dir> "
                "ckpt_path=last"
            )
        ckpt = last
    ckpt = Path(str(ckpt)).expanduser()
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint file")
    load_checkpoint_file(ckpt)
    return str(ckpt)


def stable_wandb_id(cfg: DictConfig, output_dir: Path) -> None:
    """Give a W&B run without an id one derived from its run dir, so a resumed run continues it."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None and wandb_cfg.get("id") is None:
        digest = hashlib.sha1(str(output_dir.resolve()).encode()).hexdigest()[:12]
        with open_dict(cfg):
            wandb_cfg.id = f"{cfg.task_name}-{digest}"


def optimized_value(metrics: dict, name: str | None) -> float | None:
    """The value a sweeper optimises; a clear error when the metric was never logged."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("pipeline"):
        from emotion_lightning.cli.pipeline import run_pipeline

        run_pipeline(cfg)
        return None
    metrics, _ = train(cfg)
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
