"""emotion-sweep-report: one table and plot of a Hydra multirun (sweep) directory.

    emotion-sweep-report logs/wild_stage2/multiruns/2026-11-27_10-00-00

Writes ``sweep_table.csv``, ``sweep_table.md`` and ``sweep_plot.png`` into that directory:
one row per trial with its overrides and metrics, and the optimised metric against each
swept parameter (log scale for learning rates).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import yaml


def _value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def collect_trials(sweep_dir: Path) -> tuple[list[dict], list[str], str]:
    """Rows of (trial, swept parameters, metrics), the swept parameter names and the metric."""
    rows, params, metric = [], [], None
    for trial in sorted((p for p in sweep_dir.iterdir() if p.is_dir()),
                        key=lambda p: (len(p.name), p.name)):
        overrides_file = trial / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = dict(o.split("=", 1) for o in yaml.safe_load(overrides_file.read_text()) or []
                         if "=" in o)
        config_file = trial / ".hydra" / "config.yaml"
        if metric is None and config_file.is_file():
            metric = (yaml.safe_load(config_file.read_text()) or {}).get("optimized_metric")
        metrics_file = trial / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"trial": trial.name, "overrides": overrides,
                     "status": "done" if metrics else "failed", "metrics": metrics})
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
        pairs = [(_value(r["overrides"].get(param, r["trial"])), r["metrics"].get(metric))
                 for r in rows if r["metrics"].get(metric) is not None]
        xs = [x for x, _ in pairs]
        ax.scatter(xs, [y for _, y in pairs])
        if "lr" in param and all(isinstance(x, (int, float)) and x > 0 for x in xs):
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
