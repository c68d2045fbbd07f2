"""`fraudwatch rules check` as rule authors run it: a real process, real files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from server.detection.rules import default_pack, load_rules
from tests.test_cli import fraudwatch

GOOD = (
    '[[rules]]\nname = "big"\nscore = 0.6\nseverity = "high"\n'
    'all = [{ feature = "amount", op = ">=", value = 100 }]\nreason = "big"\n'
)
BLOCK = (
    '[[lists]]\nname = "stolen"\naction = "block"\nfield = "device_id"\n'
    'entries = [{ value = "dev-1" }]\n'
)
BAD = (
    '[[rules]]\nname = "huge"\nscore = 0.6\nseverity = "hgh"\n'
    'all = [{ feature = "amout", op = ">=", value = 100 }]\nreason = "x"\n'
)


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
    return env | {f"FRAUDWATCH_{name.upper()}": value for name, value in settings.items()}


def test_without_files_it_checks_the_pack_a_server_would_load(tmp_path: Path) -> None:
    done = fraudwatch("rules", "check", env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pack = load_rules()
    assert done.stdout.splitlines() == [
        f"ok: {len(pack.rules)} rule(s), 0 list(s) from 1 file(s): {default_pack()}",
        "rules: " + ", ".join(rule.name for rule in pack.rules),
        f"rules_version: {pack.version}",
    ]
    assert done.stderr == ""


def test_without_files_it_checks_the_rules_path_setting(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(GOOD)
    (rules / "b.toml").write_text(BLOCK)
    config = tmp_path / "fraudwatch.toml"
    config.write_text(f"rules_path = {str(rules)!r}\n")
    expected = load_rules(rules).version
    for done in (
        fraudwatch("rules", "check", env=_env(rules_path=str(rules))),
        fraudwatch("rules", "check", "--config", str(config), env=_env()),
    ):
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"ok: 1 rule(s), 1 list(s) from 2 file(s): {rules / 'a.toml'}, {rules / 'b.toml'}",
            "rules: big",
            "lists: stolen",
            f"rules_version: {expected}",
        ]


def test_files_given_are_checked_as_one_set_with_a_directorys_version(tmp_path: Path) -> None:
    # The files of a directory, named in the order the server reads them: the version is
    # the one a server with rules_path = that directory records on each verdict.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(GOOD)
    (rules / "b.toml").write_text(BLOCK)
    done = fraudwatch("rules", "check", str(rules / "a.toml"), str(rules / "b.toml"), env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"rules_version: {load_rules(rules).version}"


def test_every_problem_is_listed_and_the_exit_status_is_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    dup = tmp_path / "dup.toml"
    dup.write_text(GOOD)
    again = tmp_path / "again.toml"
    again.write_text(GOOD)
    missing = tmp_path / "nope.toml"
    done = fraudwatch("rules", "check", str(bad), str(missing), str(dup), str(again), env=_env())
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}: rule 'huge': severity must be one of low, medium, high, critical, got 'hgh'",
        f"{bad}: rule 'huge': unknown feature 'amout' (see docs/rules.md for the list)",
        f"cannot read {missing}: no such file",
        f"{again}: rule 'big': duplicate name (also in {dup})",
        "error: 4 problem(s); a server would refuse these rules",
    ]


def test_a_bad_setting_is_exit_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "fraudwatch.toml"
    config.write_text("rules_path = 5\n")
    done = fraudwatch("rules", "check", "--config", str(config), env=_env())
    assert done.returncode == 2
    assert done.stderr.startswith("error: Setting 'rules_path' from config file")
    assert "Traceback" not in done.stderr


def test_a_missing_file_is_said_as_replay_and_backtest_say_it(tmp_path: Path) -> None:
    # It said `MISSING: no such file or directory`, its own words for what replay and
    # backtest say `cannot read MISSING: no such file`; a directory given as a file is
    # read as a directory of rule files, so only a missing one is said so here.
    missing = tmp_path / "MISSING.toml"
    done = fraudwatch("rules", "check", str(missing), env=_env())
    assert done.returncode == 1
    assert done.stderr == (
        f"cannot read {missing}: no such file\nerror: 1 problem(s); a server would refuse "
        "these rules\n"
    )


def test_a_rules_path_setting_that_names_no_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    done = fraudwatch("rules", "check", env=_env(rules_path=str(missing)))
    assert done.returncode == 2
    assert done.stderr == (
        "error: Setting 'rules_path' from environment FRAUDWATCH_RULES_PATH: "
        f"cannot read {missing}: no such file\n"
    )


def test_problems_are_listed_in_the_file_s_order(tmp_path: Path) -> None:
    # Read top to bottom, as the author wrote it: a list first, then a rule, then the
    # settings and a stray table. They came grouped (stray keys, settings, rules, lists),
    # and a table's unknown keys in alphabetical order.
    path = tmp_path / "order.toml"
    path.write_text(
        '[[lists]]\nname = "vip"\naction = "allo"\nfield = "device_id"\nentries = []\n\n'
        '[[rules]]\nname = "r"\nscore = 2\nseverity = "high"\nzulu = 1\nalpha = 2\n'
        'all = [{ feature = "amount", op = ">=", value = 100 }]\nreason = "x"\n\n'
        "[settings]\nsmall_amount = -1\n\n[extra]\nx = 1\n"
    )
    done = fraudwatch("rules", "check", str(path), env=_env())
    assert done.returncode == 1
    keys = "all, any, description, name, observed, reason, score, severity, threshold, unit"
    assert done.stderr.splitlines() == [
        f"{path}: list 'vip': action must be 'allow' or 'block', got 'allo'",
        f"{path}: rule 'r': unknown key 'zulu' ({keys})",
        f"{path}: rule 'r': unknown key 'alpha' ({keys})",
        f"{path}: rule 'r': score must be a number in [0, 1], got 2",
        f"{path}: [settings]: small_amount must be a number > 0, got -1",
        f"{path}: unknown top-level key 'extra' (rules, lists, settings)",
        "error: 6 problem(s); a server would refuse these rules",
    ]


def test_problems_are_reported_in_the_order_the_files_were_given(tmp_path: Path) -> None:
    # `rules check A missing B`: the missing file's line came first, before A's, as if it
    # had been named first; the author reads the list against the command line.
    first = tmp_path / "first.toml"
    first.write_text(BAD.replace("huge", "one"))
    missing = tmp_path / "missing.toml"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(GOOD)
    (rules / "b.toml").write_text("x\n")  # not TOML
    empty = tmp_path / "empty"
    empty.mkdir()
    last = tmp_path / "last.toml"
    last.write_text(GOOD)  # `big` again: a duplicate of the directory's
    args = [str(p) for p in (first, missing, rules, empty, last)]
    done = fraudwatch("rules", "check", *args, env=_env())
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{first}: rule 'one': severity must be one of low, medium, high, critical, got 'hgh'",
        f"{first}: rule 'one': unknown feature 'amout' (see docs/rules.md for the list)",
        f"cannot read {missing}: no such file",
        f"{rules / 'b.toml'}: not valid TOML: Expected '=' after a key in a key/value pair "
        "(at line 1, column 2)",
        f"{empty}: no *.toml rule files in this directory",
        f"{last}: rule 'big': duplicate name (also in {rules / 'a.toml'})",
        "error: 6 problem(s); a server would refuse these rules",
    ]


def test_a_file_that_cannot_be_read_does_not_hide_the_others_problems(tmp_path: Path) -> None:
    # A path that exists but cannot be read (here a socket; unreadable permissions do the
    # same to a user other than root) stopped the check there: the other files' problems
    # were not listed.
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    unreadable = tmp_path / "sock.toml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(unreadable))
        done = fraudwatch("rules", "check", str(unreadable), str(bad), env=_env())
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    # In replay's and backtest's words, from one helper: `cannot read PATH: why`.
    assert lines[0] == f"cannot read {unreadable}: no such device or address", lines
    assert lines[1:] == [
        f"{bad}: rule 'huge': severity must be one of low, medium, high, critical, got 'hgh'",
        f"{bad}: rule 'huge': unknown feature 'amout' (see docs/rules.md for the list)",
        "error: 3 problem(s); a server would refuse these rules",
    ]
