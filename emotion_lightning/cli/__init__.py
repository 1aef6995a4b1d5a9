"""Command-line entry points. Hydra lives here and in ``conf/``, nowhere else."""

from pathlib import Path

#: The project's Hydra config tree (``conf/`` at the repository root).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
