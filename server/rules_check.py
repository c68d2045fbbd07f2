"""`fraudwatch rules check`: load rule files as a server would, offline, and say what it found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from server.config import ConfigError, Settings, load_settings
from server.detection.rules import (
    RulesError,
    RuleSet,
    RulesPathError,
    compile_sources,
    load_rules,
    rule_files,
)
from server.wording import cannot_read


def register(commands: Any) -> None:
    """Add `rules` (with its one action, `check`) to the `fraudwatch` subcommands."""
    rules = commands.add_parser("rules", help="check rule files without a server")
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="load rule files with the server's loader; exit 1 on any problem",
        description="Load and compile rule files as `fraudwatch serve` and a reload do. Prints "
        "every problem (file, rule, problem) and exits 1; else the rules loaded and the "
        "rules_version a server would record, and exits 0. See docs/rules.md.",
    )
    check.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="rule files or directories, checked as one rule set (default: the rules_path "
        "setting, else the packaged default pack)",
    )
    check.add_argument("--config", type=Path, help="TOML settings file (its rules_path)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit codes: 0 the rules load; 1 they do not (every problem listed); 2 a bad setting,
    or a rules_path naming no rule file."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        if args.files:
            ruleset = check(args.files)
        else:
            sources: dict[str, str] = {}
            settings = load_settings(config_file=args.config, sources=sources)
            ruleset = configured_rules(settings, sources)
    except ConfigError as exc:  # rules_path from the settings names nothing: exit 2
        print(f"error: {exc}", file=err)
        return 2
    except RulesError as exc:
        for line in exc.errors:
            print(line, file=err)
        print(
            f"error: {len(exc.errors)} problem(s); a server would refuse these rules",
            file=err,
        )
        return 1
    for line in summary(ruleset):
        print(line, file=out)
    return 0


def configured_rules(settings: Settings, sources: dict[str, str]) -> RuleSet:
    """The rules `settings` make a server load (`load_settings` filled `sources`). A
    `rules_path` that names no rule file is a ConfigError naming the setting and where it
    was set; a problem in the files a RulesError."""
    try:
        return load_rules(settings.rules_path)
    except RulesPathError as exc:
        where = sources.get("rules_path", "the settings")
        raise ConfigError(f"Setting 'rules_path' from {where}: {exc}") from None


def check(paths: list[Path]) -> RuleSet:
    """The rule set `paths` make together (a directory: its *.toml, sorted by name), or
    RulesError naming every problem, a missing path's included, in the order the paths
    were given (then each file's own order)."""
    sources: list[tuple[str, bytes]] = []
    given: dict[str, int] = {}  # each file's name: the index of the path that named it
    problems: list[tuple[int, str]] = []
    for index, path in enumerate(paths):
        try:
            files = rule_files(path)
        except RulesError as exc:
            problems += [(index, line) for line in exc.errors]
            continue
        for f in files:
            try:
                sources.append((str(f), f.read_bytes()))
            except OSError as exc:  # as load_files says it, but the others are checked too
                problems.append((index, cannot_read(f, exc)))
                continue
            given.setdefault(str(f), index)
    try:
        ruleset = compile_sources(sources)
    except RulesError as exc:
        problems += [(_given_as(line, given, len(paths)), line) for line in exc.errors]
    if problems:
        # The files that exist are checked too: every problem is listed in one run. A
        # missing path's problem was found first; it is listed where the path was named.
        problems.sort(key=lambda problem: problem[0])  # stable: each file's order kept
        raise RulesError([line for _, line in problems])
    return ruleset


def _given_as(problem: str, given: dict[str, int], last: int) -> int:
    """The index of the path whose file `problem` names (it starts `FILE: `); the longest
    name that matches, as one file's name may begin another's."""
    names = [name for name in given if problem.startswith(name + ": ")]
    return given[max(names, key=len)] if names else last


def summary(ruleset: RuleSet) -> list[str]:
    n_rules, n_lists, n_files = len(ruleset.rules), len(ruleset.lists), len(ruleset.files)
    lines = [
        f"ok: {n_rules} rule(s), {n_lists} list(s) from {n_files} file(s): "
        + ", ".join(ruleset.files),
        "rules: " + (", ".join(rule.name for rule in ruleset.rules) or "(none)"),
    ]
    if ruleset.lists:
        lines.append("lists: " + ", ".join(lst.name for lst in ruleset.lists))
    lines.append(f"rules_version: {ruleset.version}")
    return lines
