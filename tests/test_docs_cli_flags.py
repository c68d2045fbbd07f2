"""Every flag of every `fraudwatch` command is named in the page that documents the command.
Flags are added with features (`--rules`, `--currency`, `--key-file`, …) and a synopsis
copied into a doc is easily left behind; a reader then never learns the flag exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from server.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

# Which page documents which command. Flags every command shares (`--data-dir`, `--config`)
# and `--help` are documented once, in the README and docs/settings.md.
DOCS = {
    ("demo",): "README.md",
    ("serve",): "README.md",
    ("users", "add"): "README.md",
    ("keys", "create"): "README.md",
    ("keys", "list"): "README.md",
    ("keys", "revoke"): "README.md",
    ("backup",): "docs/operations.md",
    ("replay",): "docs/backtest.md",
    ("backtest",): "docs/backtest.md",
    ("rules", "check"): "docs/rules.md",
}
SHARED = {"--help", "--data-dir", "--config"}


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[name]
    return parser


def test_every_command_is_mapped_to_a_page() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    top = {path[0] for path in DOCS}
    assert set(commands.choices) == top


@pytest.mark.parametrize("path", sorted(DOCS))
def test_every_flag_is_documented(path: tuple[str, ...]) -> None:
    parser = _subparser(build_parser(), path)
    text = (ROOT / DOCS[path]).read_text(encoding="utf-8")
    flags = {opt for a in parser._actions for opt in a.option_strings if opt.startswith("--")}
    missing = sorted(f for f in flags - SHARED if not re.search(rf"(?<![\w-]){f}(?![\w-])", text))
    assert not missing, f"{DOCS[path]} never names {missing} of `fraudwatch {' '.join(path)}`"
