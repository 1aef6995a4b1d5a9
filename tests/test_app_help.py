"""Each entry point has its own --help: what it does, its useful overrides, where to read on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from emotion_lightning.cli import CONFIG_DIR

APPS = {"train": "emotion-train", "pipeline": "emotion-pipeline", "eval": "emotion-eval",
        "detect": "emotion-detect", "faces": "emotion-faces", "scrape": "emotion-scrape",
        "export": "emotion-export", "distill_report": "emotion-distill-report"}
GROUPS = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("config", sorted(APPS))
def test_help_names_the_app_real_overrides_and_a_readme_section(config):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True)
    help_cfg = cfg.hydra.help
    assert help_cfg.app_name == APPS[config]
    text = help_cfg.template
    assert text.startswith(f"{APPS[config]}: ") and "Most useful overrides:" in text
    overrides = text.split("Most useful overrides:")[1].split("\n\n")[0]
    keys = set(re.findall(r"(?:^|[\s'\[\"])([a-z_]+(?:\.[a-z_0-9]+)*)=", overrides, re.M))
    assert len(keys) >= 5, keys
    tree = OmegaConf.to_container(cfg, resolve=False)
    for key in keys:  # every override the help shows exists: a config key, or a group's
        node, parts = tree, key.split(".")
        for part in parts:
            node = node.get(part, "<absent>") if isinstance(node, dict) else "<absent>"
        assert parts[0] in GROUPS or node != "<absent>", f"{APPS[config]} --help shows {key}="
    headings = {line.lstrip("#").strip().replace("`", "") for line in README.splitlines()
                if line.startswith("#")}
    sections = [s for pair in re.findall(r'sections? "([^"]+)"(?: and "([^"]+)")?', text)
                for s in pair if s]
    assert sections and all(s in headings for s in sections), sections


def test_detect_help_is_its_own_not_trains():
    exe = Path(sys.executable).parent / "emotion-detect"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("emotion-detect: box every face")
    assert "ckpt_path=CKPT" in out.stdout and "experiment:" not in out.stdout
    assert "== Config ==" not in out.stdout  # no config dump (--cfg job prints it)
