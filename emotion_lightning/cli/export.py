"""emotion-export: a classifier checkpoint -> TorchScript and ONNX files with a sidecar JSON.

    emotion-export ckpt_path=CKPT output_dir=OUT [formats=[onnx]] [name=emotion]

writes ``OUT/<name>.pt``, ``OUT/<name>.onnx`` and ``OUT/<name>.json`` (class names, input
size, normalisation), then checks each file against the PyTorch model.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import checkpoint_paths, log
from emotion_lightning.export import export_classifier, max_abs_difference
from emotion_lightning.models.loading import load_model


def export(cfg: DictConfig) -> dict[str, str]:
    """Export as configured; with ``verify``, fail when a file's outputs drift from PyTorch's."""
    ckpt = checkpoint_paths(cfg.ckpt_path)
    prior_tau = cfg.get("prior_tau")
    paths = export_classifier(ckpt, cfg.output_dir, list(cfg.formats), cfg.name,
                              cfg.opset, cfg.overwrite, prior_tau)
    for fmt, path in paths.items():
        log.info("%s: %s", fmt, path)
    if cfg.verify:
        classifier = load_model(ckpt, prior_tau=prior_tau)
        for fmt, diff in max_abs_difference(classifier, paths).items():
            log.info("%s max |probability difference| vs PyTorch: %.2e", fmt, diff)
            if diff > cfg.tolerance:
                raise RuntimeError(f"{paths[fmt]} differs from the PyTorch model by {diff:.2e} "
                                   f"(> tolerance {cfg.tolerance}); do not use it")
    return {fmt: str(path) for fmt, path in paths.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
