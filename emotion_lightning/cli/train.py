"""emotion-train: fit a model on a datamodule, test the best checkpoint, write metrics.json.

    emotion-train experiment=quickstart
    emotion-train experiment=fer_stage1 data.root=/path/to/fer2013 trainer=gpu
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from emotion_lightning.callbacks.prior_correction import PriorCorrection
from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import (
    instantiate_group,
    log,
    resolve_precision,
    save_run_config,
    scalar_metrics,
    seed_everything,
    setup_allocator,
    setup_parallelism,
)
from emotion_lightning.cli.wandb_runs import announce_runs, finish_runs, identify_run
from emotion_lightning.constants import canonical_emotion
from emotion_lightning.data.cross_fit import records_cross_fit
from emotion_lightning.models.weights import load_checkpoint_file
from emotion_lightning.records import write_json
from emotion_lightning.runtime import cpu_name

# With OnExceptionCheckpoint configured, Lightning reads fit(ckpt_path=None) as "last" and warns
# twice; resume_checkpoint has made sure there is no earlier checkpoint to pick up.
FROM_SCRATCH_WARNINGS = (r"`\.fit\(ckpt_path=None\)` was called without a model",
                         r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint')
# Lightning on a datamodule whose val_dataloader() is an empty list (no validation split)
NO_VALIDATION_WARNING = r"Total length of `list` across ranks is zero"


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Fit and test as configured; returns (metrics, objects) and writes ``metrics.json``."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_checkpoint(cfg) if cfg.get("train", True) else None  # before any write
    save_run_config(cfg, output_dir)
    seed_everything(cfg.get("seed"))
    setup_allocator(cfg)
    setup_parallelism(cfg)
    resolve_precision(cfg.trainer)

    identify_run(cfg, output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    callbacks_cfg = cfg.get("callbacks")
    if cfg.get("train", True) and not validates(datamodule):
        callbacks_cfg = callbacks_without_validation(callbacks_cfg)
    callbacks = instantiate_group(callbacks_cfg)
    loggers = instantiate_group(cfg.get("logger"))
    try:
        metrics, trainer = _fit_and_test(cfg, datamodule, model, callbacks, loggers, ckpt_path)
    finally:
        finish_runs(loggers)
    write_json(metrics, output_dir / "metrics.json")
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def _fit_and_test(cfg: DictConfig, datamodule, model, callbacks: list, loggers: list,
                  ckpt_path: str | None):
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        announce_runs(loggers)
    metrics: dict = {}
    if cfg.get("train", True):
        start = time.perf_counter()
        finished_step = finished_run_step(cfg, ckpt_path)
        with warnings.catch_warnings():
            if ckpt_path is None:  # checked: there is nothing to resume, as Lightning then says
                for message in FROM_SCRATCH_WARNINGS:
                    warnings.filterwarnings("ignore", message=message)
            if not validates(datamodule):  # the empty validation list is meant: a refit
                warnings.filterwarnings("ignore", message=NO_VALIDATION_WARNING)
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if finished_step is not None and trainer.global_step == finished_step:
            # nothing trained, no validation: metrics.json would only lose the run's results
            raise RuntimeError(
                f"{ckpt_path} is from a finished run (step {finished_step}; its results are in "
                f"{cfg.paths.output_dir}/metrics.json): resuming trained nothing. Raise "
                "trainer.max_epochs (or max_steps / max_time) to train it further, or evaluate "
                "it with emotion-eval ckpt_path=..."
            )
        metrics.update(fit_summary(trainer, time.perf_counter() - start))
    metrics.update(scalar_metrics(trainer.callback_metrics))

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test", True):
        if not best:
            log.warning("no best checkpoint (fast_dev_run or no validation): testing current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics["best_ckpt"] = str(Path(best).resolve()) if best else None
    return metrics, trainer


def validates(datamodule) -> bool:
    """Whether fitting on ``datamodule`` validates (false for a refit on all training data)."""
    return getattr(datamodule, "has_validation", lambda: True)()


def callbacks_without_validation(callbacks_cfg: DictConfig | None) -> DictConfig | None:
    """The callbacks of a fit that has no validation split (a refit, e.g. FER with
    ``data.val_fraction=0``): checkpoints are saved after every training epoch with nothing
    monitored (the top-1 one is then the latest epoch, which is tested), and early stopping
    and prior correction, which read validation, are left out (``model.prior_tau`` stays)."""
    if not callbacks_cfg:
        return callbacks_cfg
    kept = {}
    for name, entry in callbacks_cfg.items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        target = get_class(entry._target_)
        if issubclass(target, (EarlyStopping, PriorCorrection)):
            log.warning("no validation split: callbacks.%s (%s) is left out", name,
                        target.__name__)
            continue
        entry = OmegaConf.to_container(entry, resolve=True)  # kept apart from the run's cfg
        if issubclass(target, ModelCheckpoint):
            entry.update(monitor=None, save_on_train_epoch_end=True)
            log.info("no validation split: callbacks.%s saves after every training epoch, "
                     "monitoring nothing", name)
        kept[name] = entry
    return OmegaConf.create(kept)


def finished_run_step(cfg: DictConfig, ckpt_path: str | None) -> int | None:
    """The step of ``ckpt_path`` when it resumes a finished run (``metrics.json`` is there),
    else None (a fresh fit, or one requeued before its results were written)."""
    if ckpt_path is None or not (Path(cfg.paths.output_dir) / "metrics.json").is_file():
        return None
    return load_checkpoint_file(ckpt_path).get("global_step")


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
    """:func:`requested_checkpoint`, loaded (weights-only) and checked against the model:
    a checkpoint of another class set fails naming both lists, before anything is built, and
    so does one without a cross-fit record resumed with ``data.cross_fit_fold`` (the
    datamodule checks those that have one); a file that is not a checkpoint fails with
    ``not a checkpoint: FILE``."""
    ckpt = requested_checkpoint(cfg)
    if ckpt is None:
        return None
    checkpoint = load_checkpoint_file(ckpt)
    saved = (checkpoint.get("hyper_parameters") or {}).get("class_names")
    wanted = (cfg.get("model") or {}).get("class_names")
    if saved is not None and wanted is not None and (
            [canonical_emotion(c) for c in saved] != [canonical_emotion(c) for c in wanted]):
        raise ValueError(
            f"ckpt_path={ckpt} was trained on classes {list(saved)}, but this run's classes "
            f"are {list(wanted)}: resume with data.classes={list(saved)}, or start a new run "
            "from its weights with model.weights=<that checkpoint> (the head is rebuilt)"
        )
    fold = (cfg.get("data") or {}).get("cross_fit_fold")
    if fold is not None and not records_cross_fit(checkpoint):
        raise ValueError(
            f"ckpt_path={ckpt} records no cross-fit (written before data.cross_fit_fold existed, "
            f"or without this package's datamodules): it saw every face, so it cannot resume "
            f"as a teacher without fold {fold}. Resume it without data.cross_fit_folds/"
            "data.cross_fit_fold, or train the cross-fitted teacher in a new hydra.run.dir"
        )
    return str(ckpt)


def requested_checkpoint(cfg: DictConfig) -> Path | None:
    """``cfg.ckpt_path`` checked before fitting, without loading it.

    ``last`` means the newer of the run dir's ``checkpoints/last.ckpt`` and
    ``checkpoints/interrupted.ckpt`` (saved when a fit is interrupted) and fails when there is
    none (Lightning would silently train from scratch). A SLURM job that was requeued (after
    a timeout or preemption; ``SLURM_RESTART_COUNT`` > 0) resumes that way without being
    asked. Unset in a run dir that already holds one of those fails (``FileExistsError``)
    rather than silently resuming it (Lightning's default) or overwriting that run's files.
    """
    ckpt = cfg.get("ckpt_path")
    folder = _checkpoint_dir(cfg)
    if ckpt in (None, "", "null", "None"):
        earlier = _newest_checkpoint(folder)
        if earlier is None:
            return None
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        if not restarts:
            raise FileExistsError(
                f"{earlier} is from an earlier run in this run dir: add ckpt_path=last to "
                "resume it, or train into a new hydra.run.dir (a fresh fit here would "
                "overwrite that run's checkpoints and metrics)"
            )
        log.info("requeued SLURM job (restart %d): resuming from its own checkpoint", restarts)
        ckpt = "last"
    if str(ckpt) == "last":
        last = _newest_checkpoint(folder)
        if last is None:
            raise FileNotFoundError(
                f"ckpt_path=last: there is no last.ckpt in {folder}; pass "
                "ckpt_path=/path/to/last.ckpt, or rerun with hydra.run.dir=<the earlier run dir> "
                "ckpt_path=last"
            )
        ckpt = last
    ckpt = Path(str(ckpt)).expanduser()
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint file")
    return ckpt


class RunDirGuard(Callback):
    """Hydra callback (``conf/train.yaml``): the run-dir checks of :func:`requested_checkpoint`
    before Hydra writes ``.hydra/`` into ``hydra.run.dir``, so a refused command leaves the
    earlier run's record (which ``emotion-sweep-report`` reads) as it was; it exits 1 with the
    error."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not config.get("train", True):
            return
        cfg = copy.deepcopy(config)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
        hydra_config = HydraConfig.instance()
        before = hydra_config.cfg
        hydra_config.set_config(cfg)  # ${hydra:runtime.output_dir} as the job will see it
        try:
            requested_checkpoint(cfg)
        except (FileExistsError, FileNotFoundError) as error:
            # Hydra turns a callback's exception into a warning and goes on: stop here instead
            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            hydra_config.cfg = before


def _checkpoint_dir(cfg: DictConfig) -> Path:
    dirpath = ((cfg.get("callbacks") or {}).get("model_checkpoint") or {}).get("dirpath")
    return Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints")


def _newest_checkpoint(folder: Path) -> Path | None:
    """The newer of ``last.ckpt`` and ``interrupted.ckpt`` in ``folder``, if any."""
    found = [p for p in (folder / "last.ckpt", folder / "interrupted.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def optimized_value(metrics: dict, name: str | None) -> float | None:
    """The value a sweeper optimises; a clear error when the metric was never logged."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, objects = train(cfg)
    except SIGTERMException:  # Lightning stops on SIGTERM after checkpoints/interrupted.ckpt
        log.warning("stopped by SIGTERM: resume with ckpt_path=last (a requeued SLURM job does)")
        sys.exit(128 + signal.SIGTERM)
    name = cfg.get("optimized_metric")
    if name and name not in metrics and not validates(objects["datamodule"]):
        log.warning("no validation split: there is no %s to return to a sweeper", name)
        return None
    return optimized_value(metrics, name)


if __name__ == "__main__":
    main()
