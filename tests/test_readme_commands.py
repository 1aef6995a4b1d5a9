"""Every ``emotion-*`` command line in the README's code blocks composes its config (what
``--cfg job`` checks): a stale override or a renamed group fails the suite, not a user."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.faces import ACTIONS
from tests.conftest import REPO

#: Entry points configured without Hydra (argparse): their arguments are paths.
NOT_HYDRA = {"emotion-sweep-report"}
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1", "&"}


def code_block_commands(text: str) -> list[str]:
    """The ``emotion-*`` invocations in the fenced code blocks of ``text``, continuation
    lines joined, comments dropped, one per invocation (``a && b`` gives two)."""
    blocks, inside, lines = [], False, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if inside:
                blocks.append("\n".join(lines))
            inside, lines = not inside, []
        elif inside:
            lines.append(line)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for start, word in enumerate(words):
                if re.fullmatch(r"emotion-[a-z-]+", word):
                    rest = words[start:]
                    end = next((i for i, w in enumerate(rest) if w in SHELL_OPERATORS), len(rest))
                    commands.append(shlex.join(rest[:end]))
    return commands


COMMANDS = code_block_commands((REPO / "README.md").read_text(encoding="utf-8"))


def composable(app: str, args: list[str]) -> tuple[str, list[str]]:
    """The config name and overrides ``app args`` composes (a sweep: its first values)."""
    if app == "emotion-faces" and args and args[0] in ACTIONS:
        args = [*args[1:], f"action={args[0]}"]
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
             if o.is_sweep_override() else o.input_line for o in parsed]
    return app.removeprefix("emotion-").replace("-", "_"), first


def test_the_readme_shows_the_commands_it_should():
    apps = {shlex.split(c)[0] for c in COMMANDS}
    assert {"emotion-train", "emotion-eval", "emotion-detect", "emotion-cross-eval"} <= apps, apps
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_composes(command):
    app, *args = shlex.split(command)
    if app in NOT_HYDRA:
        assert args and not args[0].startswith("-"), f"{command}: give the sweep folder"
        return
    config_name, overrides = composable(app, args)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose(config_name=config_name, overrides=overrides)
