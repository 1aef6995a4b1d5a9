"""emotion-sweep-report: one table and plot of a Hydra multirun (sweep) directory.

    emotion-sweep-report logs/wild_stage2/multiruns/2026-11-27_10-00-00

Writes ``sweep_table.csv``, ``sweep_table.md`` and ``sweep_plot.png`` into that directory:
one row per trial with its overrides and metrics, and the optimised metric against each
swept parameter (log scale for learning rates; a parameter swept over ranges or names, one
category per value).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


def _value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _read(path: Path, parse):
    """``parse(text)`` of the file at ``path``; (None, why) when it is damaged."""
    try:
        return parse(path.read_text(encoding="utf-8")), ""
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        why = " ".join(str(error).split())[:80]  # one line: it goes in a table cell
        return None, f"{path.name} unreadable ({type(error).__name__}: {why})"


def collect_trials(sweep_dir: Path) -> tuple[list[dict], list[str], str]:
    """Rows of (trial, swept parameters, metrics), the swept parameter names and the metric.

    A trial whose ``metrics.json`` or ``.hydra`` files are damaged is kept as an
    ``unreadable`` row naming the file (logged), and the others are reported as usual.
    """
    rows, params, metric = [], [], None
    for trial in sorted((p for p in sweep_dir.iterdir() if p.is_dir()),
                        key=lambda p: (len(p.name), p.name)):
        overrides_file = trial / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        listed, problem = _read(overrides_file, yaml.safe_load)
        overrides = dict(o.split("=", 1) for o in (listed if isinstance(listed, list) else [])
                         if isinstance(o, str) and "=" in o)
        config_file = trial / ".hydra" / "config.yaml"
        if metric is None and config_file.is_file():
            config, _ = _read(config_file, yaml.safe_load)
            metric = config.get("optimized_metric") if isinstance(config, dict) else None
        metrics_file = trial / "metrics.json"
        metrics: dict = {}
        if metrics_file.is_file() and not problem:
            metrics, problem = _read(metrics_file, json.loads)
            if not isinstance(metrics, dict):
                problem = problem or f"{metrics_file.name} is not a JSON object"
                metrics = {}
        if problem:
            log.warning("trial %s: %s; reported as unreadable", trial, problem)
        status = f"unreadable: {problem}" if problem else "done" if metrics else "failed"
        rows.append({"trial": trial.name, "overrides": overrides, "status": status,
                     "metrics": metrics})
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no trials (<n>/.hydra/overrides.yaml)")
    counts: dict[str, set] = {}
    for row in rows:
        for key, value in row["overrides"].items():
            counts.setdefault(key, set()).add(value)
    params = [k for k, values in counts.items() if len(values) > 1]
    return rows, params, metric or "val/acc"


def write_report(sweep_dir: str | Path, metric: str | None = None) -> dict[str, Path]:
    """Write the CSV, markdown table and plot; returns their paths."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    rows, params, default_metric = collect_trials(sweep_dir)
    metric = metric or default_metric
    shown = [metric] + [m for m in ("val/acc", "val/balanced_acc", "test/acc", "test/balanced_acc")
                        if m != metric]
    header = ["trial", *params, *shown, "status"]
    table = [[row["trial"], *[row["overrides"].get(p, "") for p in params],
              *[row["metrics"].get(m, "") for m in shown], row["status"]] for row in rows]
    table.sort(key=lambda r: -r[1 + len(params)] if isinstance(r[1 + len(params)], float)
               else math.inf)
    out = {"csv": sweep_dir / "sweep_table.csv", "md": sweep_dir / "sweep_table.md",
           "png": sweep_dir / "sweep_plot.png"}
    with out["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([header, *table])

    def cell(v):
        """Metrics to 4 decimals; swept numbers (override strings) to 3 significant digits."""
        if isinstance(v, float):
            return f"{v:.4f}"
        value = _value(v) if isinstance(v, str) else v
        return f"{value:.3g}" if isinstance(value, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in table]
    out["md"].write_text(f"Sweep {sweep_dir.name}: sorted by {metric}\n\n" + "\n".join(lines) + "\n")
    _plot(rows, params, metric, out["png"])
    return out


def _plot(rows: list[dict], params: list[str], metric: str, path: Path) -> None:
    from matplotlib.figure import Figure

    params = params or ["trial"]
    fig = Figure(figsize=(4.5 * len(params), 3.6))
    axes = fig.subplots(1, len(params), squeeze=False)
    for ax, param in zip(axes[0], params):
        pairs = [(r["overrides"].get(param, r["trial"]), r["metrics"].get(metric))
                 for r in rows if r["metrics"].get(metric) is not None]
        values = [_value(x) for x, _ in pairs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs = values if numeric else [x for x, _ in pairs]  # ranges, names: one category each
        ax.scatter(xs, [y for _, y in pairs])
        if "lr" in param and numeric and all(x > 0 for x in xs):
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun directory")
    parser.add_argument("--metric", help="metric to sort and plot (default: optimized_metric)")
    args = parser.parse_args(argv)
    out = write_report(args.sweep_dir, args.metric)
    print(out["md"].read_text())
    print("wrote", ", ".join(str(p) for p in out.values()))


if __name__ == "__main__":
    main()
