"""The package's import graph: one-way layers, no cycles, Hydra only in the command line.

Every module is parsed (not imported), imports inside functions included. A unit is a
subpackage (``data``) or a top module (``images``); the package's own ``__init__`` is
the unit ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

PACKAGE = "emotion_lightning"
ROOT = Path(__file__).resolve().parents[1]

#: Lowest first: a unit may import its own layer (without cycles) and the layers below.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__init__", "constants", "runtime", "images", "textfiles", "records", "inert"}),
    frozenset({"scrape"}),
    frozenset({"faces"}),
    frozenset({"data"}),
    frozenset({"models"}),
    frozenset({"callbacks"}),
    frozenset({"detect", "export", "evaluation", "distill_report"}),
    frozenset({"cli"}),
)
#: Configuration is the command line's business: library code takes plain arguments.
CLI_ONLY = (f"{PACKAGE}.cli", "hydra", "omegaconf")


class Import(NamedTuple):
    """``path:line`` of module ``module`` imports ``target`` (a module name)."""

    path: str
    line: int
    module: str
    target: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.module}) imports {self.target}"


def module_name(path: str) -> str:
    """``emotion_lightning/data/wild.py`` -> ``emotion_lightning.data.wild``."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit of a package module: ``emotion_lightning.data.wild`` -> ``data``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_sources(root: Path = ROOT) -> dict[str, str]:
    """``{relative path: source}`` of every module of the package in the working tree."""
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted((root / PACKAGE).rglob("*.py"))
    }


def imports(sources: dict[str, str]) -> list[Import]:
    """Every import statement of every module, relative ones resolved.

    ``from pkg import name`` counts as importing ``pkg.name`` where that is a module.
    """
    modules = {module_name(path) for path in sources}
    found = []
    for path, source in sources.items():
        module = module_name(path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.Import):
                found += [Import(path, node.lineno, module, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x, from ..data import y
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
                for alias in node.names:
                    name = f"{base}.{alias.name}"
                    found.append(
                        Import(path, node.lineno, module, name if name in modules else base)
                    )
    return list(dict.fromkeys(found))  # one entry per imported module, not per name


def internal_edges(found: list[Import]) -> list[Import]:
    """The imports from one unit of the package into another."""
    return [
        i
        for i in found
        if (i.target == PACKAGE or i.target.startswith(f"{PACKAGE}."))
        and unit(i.module) != unit(i.target)
    ]


def layer_violations(found: list[Import]) -> list[str]:
    """Imports of a unit from a higher layer (or of a unit without a layer)."""
    rank = {name: level for level, names in enumerate(LAYERS) for name in names}
    problems = []
    for edge in internal_edges(found):
        source, target = unit(edge.module), unit(edge.target)
        missing = [u for u in (source, target) if u not in rank]
        if missing:
            problems.append(f"{edge}: {missing} in no layer; add it to LAYERS in {__name__}")
        elif rank[source] < rank[target]:
            problems.append(
                f"{edge}: {source} (layer {rank[source]}) may not import "
                f"{target} (layer {rank[target]})"
            )
    return problems


def cycles(found: list[Import]) -> list[str]:
    """Imports that close a cycle between units, e.g. faces -> scrape -> faces."""
    edges = internal_edges(found)
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(unit(edge.module), set()).add(unit(edge.target))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo += graph.get(node, ())
        return False

    return [
        f"{edge}: {unit(edge.target)} leads back to {unit(edge.module)}"
        for edge in edges
        if reaches(unit(edge.target), unit(edge.module))
    ]


def cli_only_imports(found: list[Import]) -> list[str]:
    """Imports of the command line, Hydra or OmegaConf outside ``cli/``."""
    return [
        f"{i}: only {PACKAGE}.cli may import {i.target}"
        for i in found
        if unit(i.module) != "cli"
        and any(i.target == name or i.target.startswith(f"{name}.") for name in CLI_ONLY)
    ]


def test_no_import_cycles_between_units():
    problems = cycles(imports(package_sources()))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_units_import_only_their_own_and_lower_layers():
    problems = layer_violations(imports(package_sources()))
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_only_the_command_line_imports_hydra():
    problems = cli_only_imports(imports(package_sources()))
    assert not problems, "\n".join(problems)


def test_the_checks_see_function_level_and_relative_imports():
    sources = {
        f"{PACKAGE}/scrape/a.py": f"def f():\n    from {PACKAGE}.data import wild\n",
        f"{PACKAGE}/data/__init__.py": "",
        f"{PACKAGE}/data/wild.py": "from ..scrape import a\nimport omegaconf\n",
    }
    found = imports(sources)
    assert [str(p).split(":")[0] for p in layer_violations(found)] == [f"{PACKAGE}/scrape/a.py"]
    assert len(cycles(found)) == 2
    assert cli_only_imports(found) == [
        f"{PACKAGE}/data/wild.py:2 ({PACKAGE}.data.wild) imports omegaconf: "
        f"only {PACKAGE}.cli may import omegaconf"
    ]
