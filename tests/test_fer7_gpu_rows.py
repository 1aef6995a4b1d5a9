"""benchmarks/fer7_gpu_rows.py: fits side by side, their ensemble, the JSON (a CPU dry run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_variants_fit_side_by_side_and_their_ensemble_is_scored(fer_folder, tmp_path):
    out, results = tmp_path / "rows", tmp_path / "rows.json"
    command = [sys.executable, str(REPO / "benchmarks" / "fer7_gpu_rows.py"),
               "--data-root", str(fer_folder), "--out", str(out), "--accelerator", "cpu",
               "--fit", "00:00:00:02", "--results", str(results),
               "--extra", "data.batch_size=8 data.num_workers=0 trainer.max_epochs=1",
               "--variants", "erase", "plain=data.augmentation.erasing_p=0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(results.read_text())
    assert set(result["fits"]) == {"erase", "plain"}
    for name, fit in result["fits"].items():
        assert fit["exit_code"] == 0 and Path(fit["best_ckpt"]).is_file()
        assert 0.0 <= fit["test/acc"] <= 1.0
        config = (out / name / ".hydra" / "overrides.yaml").read_text()
        assert "experiment=fer7_gpu_fast" in config
    assert "data.augmentation.erasing_p=0" in (out / "plain" / ".hydra" / "overrides.yaml").read_text()
    assert result["ensemble"]["members"] == ["erase", "plain"]
    assert 0.0 <= result["ensemble"]["acc"] <= 1.0 and result["ensemble"]["val_acc"] is not None
    assert (out / "ensemble" / "metrics.json").is_file()
    # a second call into the same directory is refused: nothing is overwritten
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr
