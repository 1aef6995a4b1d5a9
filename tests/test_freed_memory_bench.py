"""benchmarks/freed_memory.py: both allocator settings timed in child processes, one JSON."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "freed_memory.py"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator knobs are glibc's")
def test_both_settings_are_timed_alternately_and_saved(tmp_path):
    out = tmp_path / "freed.json"
    subprocess.run([sys.executable, str(SCRIPT), "--archs", "resnet18_cifar@16", "--batch-size",
                    "4", "--steps", "1", "--warmup", "0", "--rounds", "2", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["machine"]["cpu_cores"] >= 1 and result["rounds"] == 2
    row = result["archs"]["resnet18_cifar@16"]
    for setting in ("default", "kept"):
        assert len(row[setting]["img_per_s"]) == 2 and min(row[setting]["img_per_s"]) > 0
        assert row[setting]["system_s_per_step"] >= 0 and row[setting]["max_rss_mb"] > 0
    ratio = row["kept"]["img_per_s_median"] / row["default"]["img_per_s_median"]
    assert row["speedup"] == pytest.approx(ratio, abs=0.01)


def test_a_failing_child_stops_with_its_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--archs", "no_such_arch@48", "--rounds",
                           "1", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no_such_arch@48 (default) failed" in done.stderr and "no_such_arch" in done.stderr
    assert not (tmp_path / "x.json").exists()
