"""emotion-cross-eval: checkpoints x datasets, each restricted to the classes both know.

    emotion-cross-eval ckpt_path=CKPT datasets=[fer,wild] paths.data_dir=DATA hydra.run.dir=DIR
    emotion-cross-eval ckpt_path=[A,B] ensemble=true datasets=[fer,rafdb] ...

writes ``DIR/cross_dataset.{md,csv,png}`` and ``DIR/<model>/<dataset>/metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import (
    checkpoint_paths,
    log,
    native_size,
    resolve_precision,
    save_run_config,
    seed_everything,
    setup_allocator,
    setup_parallelism,
)
from emotion_lightning.constants import canonical_emotion
from emotion_lightning.data.base import KNOWN_CLASSES
from emotion_lightning.evaluation import (
    data_image_size,
    restrict_classes,
    score,
    write_cross_table,
)
from emotion_lightning.models.ensemble import ClassifierEnsemble
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.records import write_json


def data_config(name: str, cfg: DictConfig) -> DictConfig:
    """``conf/data/<name>.yaml`` with this run's paths and ``cfg.data_overrides[name]``."""
    overrides = [f"data={name}", f"paths.data_dir={_quoted(cfg.paths.data_dir)}",
                 f"paths.cache_dir={_quoted(cfg.paths.cache_dir)}",
                 *list((cfg.get("data_overrides") or {}).get(name) or [])]
    if GlobalHydra.instance().is_initialized():
        composed = compose(config_name="eval", overrides=overrides)
    else:  # called from Python, outside an emotion-* command
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            composed = compose(config_name="eval", overrides=overrides)
    data = composed.data
    OmegaConf.resolve(data)
    return data


def _quoted(value) -> str:
    """``value`` as a quoted Hydra override value (paths may hold ``~``, ``=``, spaces...)."""
    return "'" + str(value).replace("'", "\\'") + "'"


def dataset_classes(data_cfg: DictConfig) -> list[str]:
    """The emotions a configured dataset has: its datamodule's ``DATASET_CLASSES``, or for
    class-folder datasets the emotion-named folders under ``root``."""
    known = getattr(get_class(data_cfg._target_), "DATASET_CLASSES", None)
    if known is not None:
        return [canonical_emotion(c) for c in known]
    root = Path(str(data_cfg.root)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root={root} (a folder of <emotion>/ class folders) does "
                                "not exist: set it in data_overrides or paths.data_dir")
    names = [canonical_emotion(p.name) for p in sorted(root.iterdir()) if p.is_dir()]
    return [n for n in names if n in KNOWN_CLASSES]


def _row_names(paths: list[Path]) -> list[str]:
    """Short, distinct names for checkpoints: the file stem, with its folder when stems repeat."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def cross_evaluate(cfg: DictConfig) -> dict[str, dict[str, dict]]:
    """``emotion-cross-eval``: score every checkpoint (and their ensemble) on every dataset."""
    output_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, output_dir)
    seed_everything(cfg.get("seed"))
    setup_allocator(cfg)
    listed = checkpoint_paths(cfg.ckpt_path)
    paths = [Path(p).expanduser() for p in (listed if isinstance(listed, list) else [listed])]
    models = dict(zip(_row_names(paths), [load_classifier(p) for p in paths]))
    if cfg.get("ensemble"):
        if len(models) < 2:
            raise ValueError("ensemble=true needs at least two checkpoints in ckpt_path=[...]")
        models["ensemble"] = ClassifierEnsemble(list(models.values()), [str(p) for p in paths])
    resolve_precision(cfg.trainer)
    results: dict[str, dict[str, dict]] = {name: {} for name in models}
    for dataset in cfg.datasets:
        data_cfg = data_config(str(dataset), cfg)
        available = dataset_classes(data_cfg)
        setup_parallelism(cfg, data_cfg)
        for name, model in models.items():
            shared = [c for c in model.class_names if c in available]
            if len(shared) < 2:
                log.warning("%s: skipped for %s, which shares %s with its classes %s", dataset,
                            name, shared, model.class_names)
                continue
            scored = restrict_classes(model, shared)
            datamodule: L.LightningDataModule = instantiate(
                data_cfg, classes=shared,
                image_size=data_image_size(scored, native_size(data_cfg)), augment=False)
            run_dir = output_dir / name.replace("/", "_") / str(dataset)
            trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[],
                                             default_root_dir=str(run_dir))
            result = score(scored, datamodule, trainer, cfg.split)
            write_json(result, run_dir / "metrics.json")
            results[name][str(dataset)] = result
            log.info("%s on %s (%d faces, %s): acc %.4f, balanced acc %.4f, macro F1 %.4f", name,
                     dataset, result["num_samples"], " ".join(shared), result["acc"],
                     result["balanced_acc"], result["macro_f1"])
    out = write_cross_table(results, output_dir,
                            title=f"Cross-dataset evaluation ({cfg.split} splits)")
    print(out["md"].read_text())
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="cross_eval")
def main(cfg: DictConfig) -> None:
    cross_evaluate(cfg)


if __name__ == "__main__":
    main()
