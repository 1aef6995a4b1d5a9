"""Command-line entry points. Hydra lives here and in ``conf/``, nowhere else."""

from pathlib import Path

from emotion_lightning.runtime import configure_environment

configure_environment()

#: The project's Hydra config tree, shipped inside the package (``emotion_lightning/conf``;
#: ``conf/`` at the repository root links to it). Add your own config folders with
#: ``hydra.searchpath=[file:///path/to/my_conf]``.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
