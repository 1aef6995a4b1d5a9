"""Multi-process DDP under Hydra, sweeps (Optuna, grid, through submitit), SLURM launcher config,
precision and channels-last."""

from __future__ import annotations

import itertools
import json
import sys

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lightning.cli.eval import evaluate
from emotion_lightning.cli.sweep_report import write_report
from emotion_lightning.cli.train import train
from emotion_lightning.data.presets import inert_strengths
from tests.conftest import compose_cfg, run_ddp
from tests.helpers import BIN, SYNTH, run_cli


@pytest.mark.slow
def test_ddp_two_cpu_processes_one_run_dir_synced_metrics(tmp_path):
    run = tmp_path / "run"
    run_ddp([str(BIN / "emotion-train"), "experiment=quickstart", "trainer=ddp_sim",
             "trainer.max_epochs=1", *SYNTH, f"hydra.run.dir={run}", "extras.print_config=false"],
            cwd=tmp_path, outputs=[run])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written elsewhere
    metrics = json.loads((run / "metrics.json").read_text())
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(ckpts) == 2 and "last.ckpt" in ckpts
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    # the test metric synced over both processes equals a single-process evaluation
    cfg = compose_cfg("eval", [f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", *SYNTH],
                      tmp_path / "eval")
    single = evaluate(cfg)
    assert single["num_samples"] == 40
    assert metrics["test/acc"] == pytest.approx(single["acc"], abs=1e-6)
    assert metrics["test/macro_f1"] == pytest.approx(single["macro_f1"], abs=1e-6)


FLAKY_THEN_FINE = """
import pathlib, sys
marker, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir()
if not marker.exists():
    marker.touch()
    sys.exit("Traceback (most recent call last):\\nRuntimeError: [pair.cc:561] Connection closed by peer")
"""


def test_run_ddp_repeats_a_lost_gloo_connection_once_and_nothing_else(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "tried"
    command = [sys.executable, "-c", FLAKY_THEN_FINE, str(marker), str(out)]
    with pytest.warns(UserWarning, match="(?s)gloo lost a connection.*Connection closed by peer"):
        assert run_ddp(command, cwd=tmp_path, outputs=[out]).returncode == 0  # out was cleared
    out.rmdir()
    other = [sys.executable, "-c", "import sys; sys.exit('Traceback (most recent call last):\\n"
             "ValueError: rank 1 broke')"]
    with pytest.raises(AssertionError, match=r"(?s)exit code 1.*traceback 1.*rank 1 broke"):
        run_ddp(other, cwd=tmp_path, outputs=[])


@pytest.fixture
def wild_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "wild"
    for name in ("angry", "disgust", "happy", "sad", "surprise"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (48, 48), np.uint8))
    return root


@pytest.mark.slow
def test_optuna_sweep_two_trials_and_report(tmp_path, wild_root):
    sweep = tmp_path / "sweep"
    run_cli(["emotion-train", "-m", "experiment=wild_stage2", "hparams_search=freeze_lr",
             "hydra.sweeper.n_trials=2", "debug=fdr", "trainer.detect_anomaly=false",
             f"data.root={wild_root}", "data.batch_size=8", f"hydra.sweep.dir={sweep}",
             "logger=csv"], cwd=tmp_path)
    trials = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(trials) == 2
    assert (sweep / "optimization_results.yaml").is_file()
    out = write_report(sweep)
    table = out["md"].read_text()
    assert "callbacks.freeze.trainable_last" in table and "model.optimizer.lr" in table
    assert table.count("| done |") == 2 and out["png"].stat().st_size > 1000
    header, _, *rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    column = [h.strip() for h in header].index("model.optimizer.lr")
    lrs = [row[column].strip() for row in rows]  # sampled floats, shown to 3 significant digits
    assert all(lr == f"{float(lr):.3g}" for lr in lrs), lrs
    proc = run_cli(["emotion-sweep-report", str(sweep)], cwd=tmp_path)
    assert "sorted by val/balanced_acc" in proc.stdout


def test_grid_sweep_and_slurm_launcher_compose(tmp_path):
    grid = compose_cfg("train", ["experiment=wild_stage2", "hparams_search=freeze_lr_grid"],
                       tmp_path)
    assert grid.callbacks.freeze.unit == "children" and grid.optimized_metric == "val/balanced_acc"
    from hydra import compose, initialize_config_dir

    from emotion_lightning.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=freeze_lr_grid", "hydra/launcher=slurm",
                                          "trainer=ddp"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["callbacks.freeze.trainable_last"] == "2,3,5"
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == cfg.trainer.devices and launcher.nodes == cfg.trainer.num_nodes


def test_augmentation_grid_sweeps_ranges_and_the_report_plots_them_as_categories(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from emotion_lightning.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fer7_vgg_cpu", "hparams_search=fer_augment"],
                      return_hydra_config=True)
    assert cfg.trainer.max_time == "00:00:10:00" and cfg.test is False
    swept = OverridesParser.create().parse_overrides(
        [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()])
    grid = {o.key_or_group: list(o.sweep_iterator()) for o in swept}
    assert grid == {"data.augmentation.scale": [[0.5, 1.0], [0.8, 1.2]],
                    "data.augmentation.translate": [0.25, 0.1],
                    "data.augmentation.rotate": [10, 20]}
    # the recipe has the affine off; the search turns it on, or every trial would be the recipe
    assert cfg.data.augmentation.affine_p == 0.5
    for point in itertools.product(*grid.values()):
        trial = {**cfg.data.augmentation, **{k.rsplit(".", 1)[1]: v for k, v in zip(grid, point)}}
        assert inert_strengths(trial) == [], point
    sweep = tmp_path / "sweep"
    for name, scale, rotate, acc in (("0", "[0.5,1.0]", 10, 0.61), ("1", "[0.8,1.2]", 10, 0.64),
                                     ("2", "[0.8,1.2]", 20, 0.62)):
        (sweep / name / ".hydra").mkdir(parents=True)
        (sweep / name / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(
            [f"data.augmentation.scale={scale}", f"data.augmentation.rotate={rotate}"]))
        (sweep / name / "metrics.json").write_text(json.dumps({"val/acc": acc}))
    out = write_report(sweep)
    lines = out["md"].read_text().splitlines()
    assert lines[2] == "| trial | data.augmentation.scale | data.augmentation.rotate | val/acc |" \
        " val/balanced_acc | test/acc | test/balanced_acc | status |"
    assert lines[4].startswith("| 1 | [0.8,1.2] | 10 | 0.6400 |")
    assert out["png"].stat().st_size > 1000


def memory_formats(model) -> dict[str, set[bool]]:
    """Whether each 3x3+ conv weight with several input channels, and the activations in and
    out of layer1's first conv, are channels-last (1-channel and 1x1 tensors are both formats)."""
    weights = [m.weight for m in model.net.modules()
               if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1)]
    seen = []
    hook = model.net.layer1[0].conv1.register_forward_hook(
        lambda module, args, out: seen.extend([args[0], out]))
    with torch.no_grad():
        model.eval()(torch.randn(2, 1, 48, 48))
    hook.remove()
    cl = torch.channels_last
    return {"weights": {w.is_contiguous(memory_format=cl) for w in weights},
            "activations": {t.is_contiguous(memory_format=cl) for t in seen}}


def test_mixed_precision_and_channels_last_train(tmp_path):
    cfg = compose_cfg("train", ["experiment=quickstart", "debug=fdr", *SYNTH,
                                "trainer.precision=bf16-mixed", "model.channels_last=true",
                                "trainer.detect_anomaly=false"], tmp_path)
    metrics, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed" and metrics["precision"] == "bf16-mixed"
    assert "test/acc" in metrics
    # still channels-last after the optimizer steps, and so are the activations
    assert memory_formats(objects["model"]) == {"weights": {True}, "activations": {True}}
    plain = compose_cfg("train", ["experiment=quickstart", "model.channels_last=false"], tmp_path)
    assert memory_formats(instantiate(plain.model)) == {"weights": {False}, "activations": {False}}


@pytest.mark.slow
def test_sweep_through_the_submitit_launcher(tmp_path):
    """hydra/launcher=slurm's plugin with its local executor: the same pickling of the task,
    job submission and collection as on a cluster, minus sbatch."""
    sweep = tmp_path / "sweep"
    run_cli(["emotion-train", "-m", "experiment=quickstart", "debug=fdr",
             "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
             "model.optimizer.lr=0.01,0.02", "trainer.detect_anomaly=false", *SYNTH,
             f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # nothing written elsewhere
    launcher = OmegaConf.load(sweep / "multirun.yaml").hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.LocalLauncher")
    job_ids = set()
    for num, lr in enumerate([0.01, 0.02]):
        job = sweep / str(num)
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["lr/peak"] == pytest.approx(lr) and "test/acc" in metrics
        job_ids.add(str(OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.job.id))
    # each job ran in its own submitit process, which returned its result
    assert job_ids == {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()
                       and list(p.glob("*_result.pkl"))}
