"""emotion-eval: evaluate a classifier checkpoint (or an ensemble) on a dataset and split.

    emotion-eval ckpt_path=CKPT data=fer data.root=ROOT hydra.run.dir=DIR
    emotion-eval 'ckpt_path=[A,B,C]' ...   # the ensemble: the three models' probabilities averaged

writes ``DIR/metrics.json`` (acc, balanced_acc, macro_f1, per_class, confusion_matrix) and
``DIR/confusion_matrix.png``. Class names and input size come from the checkpoint;
``score_classes=[...]`` scores only some of them (a seven-class model on the five-class task).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from emotion_lightning.callbacks import PriorCorrection
from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import (
    checkpoint_paths,
    instantiate_group,
    native_size,
    resolve_precision,
    save_run_config,
    seed_everything,
    setup_allocator,
    setup_parallelism,
)
from emotion_lightning.constants import class_positions
from emotion_lightning.evaluation import EVAL_SPLITS, data_image_size, restrict_classes, score
from emotion_lightning.models.loading import load_model
from emotion_lightning.models.reporting import save_confusion
from emotion_lightning.models.scoring import ClassScoring
from emotion_lightning.records import write_json


def evaluate_checkpoint(
    ckpt_path: str | Path | Sequence[str | Path],
    data_cfg: DictConfig,
    trainer_cfg: DictConfig,
    output_dir: str | Path,
    split: str = "test",
    loggers: list | None = None,
    test_time_flip: bool | None = None,
    test_time_shift: int | None = None,
    test_time_crop: int | None = None,
    prior_tau: float | str | None = None,
    prior_metric: str = "macro_f1",
    score_classes: Sequence[str] | None = None,
) -> dict:
    """Evaluate a classifier checkpoint, or the ensemble of a list of them (probabilities
    averaged), on a configured datamodule's ``split``.

    The datamodule gets the model's class names and input size; the ``test_time_*``
    arguments override the checkpoints' test-time views when not ``None``, and ``prior_tau``
    their prior correction (``"auto"``: chosen on the validation split to maximise
    ``prior_metric``, :class:`~emotion_lightning.callbacks.PriorCorrection`).
    ``score_classes`` (some of the model's classes) scores only those: the faces of the others
    are left out of the splits made for all of its classes (so validation and test hold no
    face it trained on) and its probabilities of the rest renormalised
    (:class:`~emotion_lightning.evaluation.ClassSubset`). Writes ``metrics.json`` and
    ``confusion_matrix.{png,csv}`` to ``output_dir``; returns the metrics.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    many = not isinstance(ckpt_path, (str, Path))
    ckpts = [Path(p).expanduser() for p in (ckpt_path if many else [ckpt_path])]
    output_dir = Path(output_dir)
    auto = str(prior_tau) == "auto"
    model = load_model(ckpts if many else ckpts[0], test_time_flip=test_time_flip,
                       test_time_shift=test_time_shift, test_time_crop=test_time_crop,
                       prior_tau=None if auto else prior_tau)
    classes = model.class_names
    if score_classes is not None:
        model = model_subset(model, score_classes)
    tuner = [PriorCorrection(metric=prior_metric)] if auto else []
    datamodule: L.LightningDataModule = instantiate(
        data_cfg, classes=classes,
        image_size=data_image_size(model, native_size(data_cfg)), augment=False
    )
    if score_classes is not None:
        if not hasattr(datamodule, "keep_classes"):
            raise ValueError(f"score_classes: {type(datamodule).__name__} cannot keep some "
                             "classes of its splits (GrayImageDataModule.keep_classes)")
        stages = {"test" if split == "test" else "validate"} | ({"validate"} if auto else set())
        datamodule.keep_classes(model.class_names, sorted(stages))
    resolve_precision(trainer_cfg)
    trainer: L.Trainer = instantiate(trainer_cfg, logger=loggers or False, callbacks=tuner,
                                     default_root_dir=str(output_dir))
    result = score(model, datamodule, trainer, split)
    result["prior_tau"] = model.prior_tau
    if score_classes is not None:
        result["scored_classes"] = model.class_names
    if tuner:
        result["prior_search"] = {"metric": prior_metric, "split": "val", "rows": tuner[0].table}
    result["ckpt_path"] = [str(p.resolve()) for p in ckpts] if many else str(ckpts[0].resolve())
    write_json(result, output_dir / "metrics.json")
    if trainer.is_global_zero:
        save_confusion(result["confusion_matrix"]["matrix"], model.class_names,
                       output_dir / "confusion_matrix",
                       title=f"{' + '.join(p.name for p in ckpts)} on {split}")
    return result


def model_subset(model: ClassScoring, classes: Sequence[str]) -> ClassScoring:
    """``model`` scored on ``classes`` only (in the model's order); a name it does not know,
    or fewer than two names, is refused with the classes it has."""
    positions = class_positions(classes, model.class_names, "score_classes", "the checkpoint", 2)
    return restrict_classes(model, [model.class_names[i] for i in positions])


def evaluate(cfg: DictConfig) -> dict:
    """``emotion-eval``: evaluate ``cfg.ckpt_path`` (one checkpoint or a list: an ensemble)
    on ``cfg.data``'s ``cfg.split``."""
    output_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, output_dir)
    seed_everything(cfg.get("seed"))
    setup_allocator(cfg)
    setup_parallelism(cfg)
    return evaluate_checkpoint(checkpoint_paths(cfg.ckpt_path), cfg.data, cfg.trainer, output_dir, cfg.split,
                               instantiate_group(cfg.get("logger")), cfg.get("test_time_flip"),
                               cfg.get("test_time_shift"), cfg.get("test_time_crop"),
                               cfg.get("prior_tau"), cfg.get("prior_metric", "macro_f1"),
                               cfg.get("score_classes"))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["acc"]


if __name__ == "__main__":
    main()
