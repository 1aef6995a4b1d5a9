"""Configs outside the package: a user's own experiment through ``hydra.searchpath``."""

from __future__ import annotations

import json

from tests.helpers import SYNTH, run_cli

MY_EXPERIMENT = """# @package _global_
defaults:
  - quickstart
task_name: my_quick
model:
  label_smoothing: 0.2
"""


def test_an_experiment_in_a_user_folder_trains(tmp_path):
    conf = tmp_path / "my_conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "my_quick.yaml").write_text(MY_EXPERIMENT)
    run = tmp_path / "run"
    run_cli(["emotion-train", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
             "experiment=my_quick", "trainer.max_epochs=1", *SYNTH, f"hydra.run.dir={run}",
             "extras.print_config=false"], cwd=tmp_path)
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "task_name: my_quick" in config and "label_smoothing: 0.2" in config
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
