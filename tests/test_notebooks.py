"""The notebooks run top to bottom on tiny settings and are committed without outputs.

The kernel is ``python3``; jupyter_client starts it with this interpreter (the venv).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emotion_lightning.cli.train import train
from tests.conftest import REPO, compose_cfg, one_torch_thread

nbformat = pytest.importorskip("nbformat", reason="needs the [dev] extra: pip install nbformat")
nbclient = pytest.importorskip("nbclient", reason="needs the [dev] extra: pip install nbclient")
pytest.importorskip("ipykernel", reason="needs the [dev] extra: pip install ipykernel")

NOTEBOOKS = REPO / "notebooks"
TINY_TRAIN = [
    "data.num_train=16", "data.num_val=16", "data.num_test=16", "data.batch_size=16",
    "data.num_workers=0", "model.arch=resnet18", "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0", "callbacks=report",
    "+trainer.enable_progress_bar=false", "extras.print_config=false",
]


def execute(name: str, workdir: Path, env: dict[str, str], monkeypatch) -> dict:
    """Run ``notebooks/<name>`` in ``workdir`` with ``env`` set; returns the executed notebook.

    The kernel gets one torch thread: on a busy 2-core machine that is several times faster.
    """
    for key, value in {"OMP_NUM_THREADS": "1", **env}.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def outputs_of(notebook, kind: str) -> list[str]:
    """Texts of the code cells' outputs: ``"text"`` (stdout) or ``"image"`` (PNG mime data)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "text" and output.get("name") == "stdout":
                found.append(output["text"])
            if kind == "image" and "image/png" in output.get("data", {}):
                found.append(output["data"]["image/png"])
    return found


@pytest.mark.parametrize("name", ["quickstart.ipynb", "results.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear outputs"


def test_quickstart_trains_evaluates_and_annotates(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    notebook = execute("quickstart.ipynb", tmp_path,
                       {"EMOTION_NOTEBOOK_TINY": "1", "EMOTION_NOTEBOOK_RUN_DIR": str(run_dir)},
                       monkeypatch)
    text = "".join(outputs_of(notebook, "text"))
    assert "best checkpoint:" in text and "recall" in text
    assert len(outputs_of(notebook, "image")) >= 2, "confusion matrix and the (annotated) picture"
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()


@pytest.fixture
def multirun(tmp_path) -> Path:
    """A sweep folder as ``emotion-train -m`` leaves it: a real tiny run and a second job.

    The second job is the first one's files with another override and score (training it
    again would only cost time), so the table has two rows to order.
    """
    folder = tmp_path / "multirun"
    first = folder / "0"
    with one_torch_thread():  # as the notebook kernels
        train(compose_cfg("train", [*TINY_TRAIN, "seed=1"], first))
    (first / ".hydra").mkdir()
    (first / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    second = folder / "1"
    shutil.copytree(first, second)
    (second / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    metrics = json.loads((second / "metrics.json").read_text())
    metrics["test/acc"] = 2.0  # sorts first
    (second / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_results_shows_curves_confusion_matrices_and_the_sweep(multirun, tmp_path, monkeypatch):
    # a resume logs to csv/version_1 (and later version_10 sorts after version_2, not before)
    csv_dir = multirun / "0" / "csv"
    first = (csv_dir / "version_0" / "metrics.csv").read_text().splitlines()
    for version, epoch in ((10, 7), (2, 5)):
        (csv_dir / f"version_{version}").mkdir()
        row = dict.fromkeys(first[0].split(","), "")
        row.update({"epoch": str(epoch), "step": "99", "val/acc": "0.5"})
        (csv_dir / f"version_{version}" / "metrics.csv").write_text(
            first[0] + "\n" + ",".join(row.values()) + "\n")
    notebook = execute("results.ipynb", tmp_path,
                       {"EMOTION_RUN_DIR": str(multirun / "0"), "EMOTION_MULTIRUN_DIR": str(multirun),
                        "EMOTION_LOG_DIR": str(tmp_path / "logs")}, monkeypatch)
    text = "".join(outputs_of(notebook, "text"))
    assert "no run" not in text and "no multirun" not in text and "no val" not in text
    assert ("curves from ['csv/version_0/metrics.csv', 'csv/version_2/metrics.csv', "
            "'csv/version_10/metrics.csv'] up to epoch 7.0") in text
    table = text[text.index("job  "):].splitlines()
    assert table[0].split()[:5] == ["job", "val/acc_best", "test/acc", "test/balanced_acc",
                                    "test/macro_f1"]
    assert [line.split()[0] for line in table[1:3]] == ["1", "0"]
    assert table[1].split()[2] == "2.000" and table[1].endswith("seed=2")
    # training curves, val and test confusion matrices, sweep bar chart
    assert len(outputs_of(notebook, "image")) == 4
