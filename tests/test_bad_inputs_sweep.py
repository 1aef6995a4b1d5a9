"""Bad inputs of ``emotion-sweep-report``: a damaged trial is reported as unreadable (naming
its file) and every other trial is reported as usual."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import yaml

from emotion_lightning.cli.sweep_report import write_report


def trial(sweep, name: str, lr: str, metrics: str | None) -> None:
    hydra = sweep / name / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"model.optimizer.lr={lr}"]))
    (hydra / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/acc"}))
    if metrics is not None:
        (sweep / name / "metrics.json").write_text(metrics)


@pytest.mark.parametrize(("damage", "why"), [
    ('{"val/acc": 0.5', "metrics.json unreadable (JSONDecodeError"),
    ("[0.5]", "metrics.json is not a JSON object"),
    (b"\xff\xfe{}", "metrics.json unreadable (UnicodeDecodeError"),
])
def test_a_damaged_trial_is_named_and_the_others_reported(tmp_path, caplog, damage, why):
    sweep = tmp_path / "sweep"
    trial(sweep, "0", "0.01", json.dumps({"val/acc": 0.61, "test/acc": 0.6}))
    trial(sweep, "1", "0.1", None)  # failed: it never wrote metrics
    trial(sweep, "2", "0.001", None)
    if isinstance(damage, bytes):
        (sweep / "2" / "metrics.json").write_bytes(damage)
    else:
        (sweep / "2" / "metrics.json").write_text(damage)
    trial(sweep, "3", "0.03", json.dumps({"val/acc": 0.72}))
    with caplog.at_level(logging.WARNING, logger="emotion_lightning.cli.sweep_report"):
        out = write_report(sweep)
    assert f"trial {sweep / '2'}: {why}" in caplog.text
    with out["csv"].open() as f:
        rows = {row["trial"]: row for row in csv.DictReader(f)}
    assert [name for name in rows] == ["3", "0", "1", "2"]  # best first, then the rest
    assert rows["3"]["status"] == rows["0"]["status"] == "done"
    assert rows["1"]["status"] == "failed"
    assert rows["2"]["status"].startswith(f"unreadable: {why}")
    assert rows["3"]["val/acc"] == "0.72" and rows["2"]["model.optimizer.lr"] == "0.001"


def test_a_damaged_overrides_file_is_named_too(tmp_path):
    sweep = tmp_path / "sweep"
    trial(sweep, "0", "0.01", json.dumps({"val/acc": 0.61}))
    trial(sweep, "1", "0.1", json.dumps({"val/acc": 0.7}))
    trial(sweep, "2", "0.3", json.dumps({"val/acc": 0.5}))
    (sweep / "1" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    lines = write_report(sweep)["md"].read_text().splitlines()
    assert lines[4].startswith("| 0 | 0.01 | 0.6100 |") and lines[4].endswith("| done |")
    assert lines[6].startswith("| 1 |  |  |")  # a trial of unknown settings: no metrics shown
    assert "| unreadable: overrides.yaml unreadable (ParserError: " in lines[6]
    assert len(lines) == 7  # one line per trial: the error is not spread over several
