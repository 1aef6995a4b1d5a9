"""emotion-train: fit a model on a datamodule, test the best checkpoint, write metrics.json.

    emotion-train experiment=quickstart
    emotion-train experiment=fer_stage1 data.root=/path/to/fer2013 trainer=gpu
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import (
    instantiate_group,
    log,
    save_run_config,
    scalar_metrics,
    seed_everything,
    setup_parallelism,
    write_json,
)


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Fit and test as configured; returns (metrics, objects) and writes ``metrics.json``."""
    output_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, output_dir)
    seed_everything(cfg.get("seed"))
    setup_parallelism(cfg)

    stable_wandb_id(cfg, output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test", True):
        if not best:
            log.warning("no best checkpoint (fast_dev_run or no validation): testing current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics["best_ckpt"] = str(Path(best).resolve()) if best else None
    write_json(metrics, output_dir / "metrics.json")
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


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
