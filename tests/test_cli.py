"""The `fraudwatch` command as users run it: real processes, real ports, real files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.auth import authenticate
from server.store.sqlite import SqliteStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fraudwatch(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60, **kw
    )


def get(url: str, key: str | None = None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def test_users_and_keys_say_when_they_made_a_new_database(tmp_path: Path) -> None:
    # A mistyped --data-dir made a database of its own, silently: the user then could not
    # log in and the key was refused by the server that runs on the real one.
    data = str(tmp_path / "data")
    add = ("users", "add", "carol", "--password-stdin", "--data-dir", data)
    first = fraudwatch(*add, input="s3cret-enough\n")
    assert first.returncode == 0, first.stderr
    note = f"note: {tmp_path / 'data' / 'fraudwatch.db'} did not exist and was created"
    assert note in first.stderr
    again = fraudwatch(*add, input="s3cret-enough\n")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    other = str(tmp_path / "other")
    key = fraudwatch("keys", "create", "ci", "--scopes", "read", "--data-dir", other)
    assert key.returncode == 0, key.stderr
    assert "did not exist and was created" in key.stderr
    key = fraudwatch("keys", "create", "ci2", "--scopes", "read", "--data-dir", other)
    assert "did not exist" not in key.stderr


async def test_users_add_stores_a_hash_that_logs_in(tmp_path: Path) -> None:
    done = fraudwatch(
        "users",
        "add",
        "carol",
        "--role",
        "admin",
        "--password-stdin",
        "--data-dir",
        str(tmp_path),
        input="s3cret-enough\n",
    )
    assert done.returncode == 0, done.stderr
    store = SqliteStore(tmp_path / "fraudwatch.db")
    await store.start(lambda _: None)
    try:
        user = await store.get_user("carol")
        assert user is not None
        assert user.role == "admin"
        assert "s3cret" not in user.password_hash
        assert user.password_hash.startswith("$argon2id$")
        assert await authenticate(store, "carol", "s3cret-enough") == "admin"
        assert await authenticate(store, "carol", "wrong-password") is None
    finally:
        await store.close()


async def test_a_password_reset_keeps_the_role_unless_one_is_given(tmp_path: Path) -> None:
    def add(*role: str, password: str) -> str:
        done = fraudwatch("users", "add", "ada", *role, "--password-stdin",
                          "--data-dir", str(tmp_path), input=f"{password}\n")  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "ada (admin)" in add("--role", "admin", password="first-password")
    assert "ada (admin)" in add(password="second-password")  # a reset: still an admin
    assert "ada (viewer)" in add("--role", "viewer", password="third-password")
    assert "ada (viewer)" in add(password="fourth-password")
    store = SqliteStore(tmp_path / "fraudwatch.db")
    await store.start(lambda _: None)
    try:
        assert await authenticate(store, "ada", "fourth-password") == "viewer"
    finally:
        await store.close()
    new = fraudwatch("users", "add", "bo", "--password-stdin", "--data-dir", str(tmp_path),
                     input="brand-new-password\n")  # fmt: skip
    assert "user bo (analyst)" in new.stdout  # a new user without --role is an analyst


@pytest.mark.parametrize(
    ("argv", "stdin", "error"),
    [
        (["users", "add", "dave", "--password-stdin"], "short\n", "at least 8"),
        (["users", "add", "bad name", "--password-stdin"], "s3cret-enough\n", "user name"),
        (["keys", "create", "ci", "--scopes", "bogus"], "", "unknown scope 'bogus'"),
        (["keys", "create", "bad name", "--scopes", "read"], "", "key name"),
    ],
)
def test_a_refused_name_password_or_scope_creates_no_database(
    tmp_path: Path, argv: list[str], stdin: str, error: str
) -> None:
    # With a mistyped --data-dir, the refusal still left a new, empty database behind
    # (and the directory), without the "did not exist and was created" note.
    data = tmp_path / "data"
    done = fraudwatch(*argv, "--data-dir", str(data), input=stdin)
    assert done.returncode == 2
    assert error in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not data.exists()


def test_users_add_refuses_a_short_password(tmp_path: Path) -> None:
    done = fraudwatch(
        "users", "add", "dave", "--password-stdin", "--data-dir", str(tmp_path), input="short\n"
    )
    assert done.returncode == 2
    assert "at least 8" in done.stderr


def test_users_add_without_a_terminal_is_one_error_saying_how_to_give_the_password(
    tmp_path: Path,
) -> None:
    # Run from a script, cron or a container without a terminal, and without
    # --password-stdin: getpass warned that it could not control echo, prompted twice,
    # then the error came. Now the missing terminal is found first: one line, and nothing
    # is read or written (no database made).
    for stdin in (subprocess.DEVNULL, None):
        done = subprocess.run(
            [sys.executable, "-m", "server", "users", "add", "erin", "--data-dir", str(tmp_path)],
            stdin=stdin,
            input="s3cret-enough\ns3cret-enough\n" if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,  # no controlling terminal, whoever runs the tests
        )
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr == (
            "error: no terminal to ask for the password on: give it on stdin with "
            "--password-stdin (one line: printf '%s\\n' \"$PASSWORD\" | fraudwatch users add "
            "erin --password-stdin)\n"
        ), done.stderr
        assert not (tmp_path / "fraudwatch.db").exists()


def on_a_terminal(argv: list[str], exchange: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """`fraudwatch ARGV` with a pseudo-terminal as its controlling terminal (as an
    operator's shell gives): each (prompt, answer) of `exchange` waits for the prompt, then
    types the answer. Its exit status, and everything the terminal showed."""
    import pty
    import select

    master, slave = pty.openpty()
    take_terminal = (
        "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'server', *sys.argv[1:]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", take_terminal, *argv], stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    shown = b""

    def until(text: bytes) -> None:
        nonlocal shown
        while text not in shown:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, shown
            shown += os.read(master, 1024)

    try:
        for prompt, answer in exchange:
            until(prompt)
            os.write(master, answer)
        code = proc.wait(timeout=30)
        with contextlib.suppress(OSError):  # EIO once the child has closed its side
            while select.select([master], [], [], 0)[0] and (more := os.read(master, 1024)):
                shown += more
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return code, shown


async def test_users_add_on_a_terminal_asks_for_the_password_twice(tmp_path: Path) -> None:
    # The check for a terminal must not refuse one: both prompts, and no echo.
    argv = ["users", "add", "erin", "--data-dir", str(tmp_path)]
    answers = [(b"Password for erin: ", b"s3cret-enough\n"), (b"Again: ", b"s3cret-enough\n")]
    code, shown = await asyncio.to_thread(on_a_terminal, argv, answers)
    assert code == 0, shown
    assert b"user erin (analyst) saved in" in shown
    assert b"s3cret-enough" not in shown and b"Warning" not in shown, shown
    store = SqliteStore(tmp_path / "fraudwatch.db")
    await store.start(lambda _: None)
    try:
        assert await authenticate(store, "erin", "s3cret-enough") == "analyst"
    finally:
        await store.close()


def test_a_second_server_on_a_data_directory_is_refused(tmp_path: Path) -> None:
    # Another --port let a second server share the database; its snapshot and model then
    # overwrote the first's, and its stop removed server.json, hiding the first from backup.
    from tests.live_server import live_server  # it imports this module

    data = tmp_path / "data"
    with live_server(data) as first:
        recorded = (data / "server.json").read_text(encoding="utf-8")
        argv = ["serve", "--data-dir", str(data), "--port", str(free_port())]
        try:
            second = subprocess.run(
                [sys.executable, "-m", "server", *argv],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError("a second server started on the same data directory") from None
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr.strip() == (
            f"error: a server already runs on data directory {data} (pid {first.proc.pid}, "
            f"{first.url}/): two would overwrite each other's detector state and model. Stop "
            "it first, or give this one another --data-dir"
        )
        assert (data / "server.json").read_text(encoding="utf-8") == recorded
        assert first.stop() == 0
    # Once it has stopped, the data directory is free again.
    with live_server(data):
        pass


def test_the_data_directory_is_held_by_a_lock_not_by_a_pid(tmp_path: Path) -> None:
    # A server still starting has no server.json yet; a crashed one leaves a server.json whose
    # pid another process may have taken since. The lock decides, not the file.
    from server import server_file
    from tests.live_server import live_server  # it imports this module

    data = tmp_path / "data"
    held = server_file.hold(data)
    assert held is not None
    port = str(free_port())
    try:
        second = subprocess.run(
            [sys.executable, "-m", "server", "serve", "--data-dir", str(data), "--port", port],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"error: a server already runs on data directory {data}: two would overwrite "
            "each other's detector state and model. Stop it first, or give this one another "
            "--data-dir"
        )
    finally:
        os.close(held)
    # A stale server.json naming a live process (this one) does not keep a server out.
    (data / "server.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": 9, "pid": os.getpid()}), encoding="utf-8"
    )
    with live_server(data) as server:
        recorded = json.loads((data / "server.json").read_text(encoding="utf-8"))
        assert recorded["pid"] == server.proc.pid
        assert server.stop() == 0


def test_bad_setting_is_reported_not_a_traceback(tmp_path: Path) -> None:
    done = fraudwatch(
        "serve", "--data-dir", str(tmp_path), env={**os.environ, "FRAUDWATCH_PORT": "eighty"}
    )
    assert done.returncode == 2
    assert "Setting 'port'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["serve"], ["keys", "list"]])
def test_a_database_file_that_is_no_database_is_an_error_not_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    if command == ["serve"]:
        command = ["serve", "--port", str(free_port())]
    # Another file under the database's name (or a damaged header): every command that
    # opens the store ended in a traceback, "sqlite3.DatabaseError: file is not a database".
    (tmp_path / "fraudwatch.db").write_bytes(b"not SQLite at all\n" * 300)
    done = fraudwatch(*command, "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        f"error: Database {tmp_path / 'fraudwatch.db'} cannot be opened: file is not a "
        "database (another file under that name, or a damaged one;"
    ) in done.stderr


@pytest.mark.parametrize("command", [["serve"], ["keys", "list"]])
def test_a_data_dir_that_is_a_file_is_named_in_the_error(
    tmp_path: Path, command: list[str]
) -> None:
    # "error: File exists" (or "Not a directory") alone: which file, the operator had to guess.
    data = tmp_path / "data"
    data.write_text("not a directory")
    if command == ["serve"]:
        command = ["serve", "--port", str(free_port())]
    done = fraudwatch(*command, "--data-dir", str(data))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {data}"), done.stderr


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_fails_before_any_banner(tmp_path: Path, command: str) -> None:
    # The banner says "serving at this URL, with this key"; with the port taken by another
    # server, that was printed, the store opened and state saved, and only then the error.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Without FRAUDWATCH_* variables that name no setting (the screenshot tests'), which
        # would add a warning to stderr.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
        data = str(tmp_path / "data")
        done = fraudwatch(command, "--port", str(port), "--data-dir", data, env=env)
    assert done.returncode == 1
    assert done.stdout == "", done.stdout
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(is another server on that port?)"
    )
    assert not (tmp_path / "data" / "fraudwatch.db").exists()  # nothing was started


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_bad_rules_stop_the_start_before_the_data_dir_is_touched(
    tmp_path: Path, command: str
) -> None:
    # The rules were checked after the bootstrap key was written: a first start with a bad
    # rule file left a data directory holding a key no server had ever used.
    rules = tmp_path / "fraud.toml"
    rules.write_text(
        '[[rules]]\nname = "big"\nscore = 0.6\nseverity = "hgh"\n'
        'all = [{ feature = "amount", op = ">=", value = 100 }]\nreason = "x"\n'
    )
    data = tmp_path / "data"
    env = {**os.environ, "FRAUDWATCH_RULES_PATH": str(rules)}
    done = fraudwatch(command, "--port", str(free_port()), "--data-dir", str(data), env=env)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "", done.stdout
    assert done.stderr.strip() == (
        f"error: {rules}: rule 'big': severity must be one of low, medium, high, critical, "
        "got 'hgh'"
    )
    assert not data.exists()


def test_an_environment_variable_that_names_no_setting_is_warned_about(tmp_path: Path) -> None:
    # FRAUDWATCH_RETENTION_DAY=30 in a unit file kept every transaction, without a word.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
    env |= {"FRAUDWATCH_RETENTION_DAY": "30", "FRAUDWATCH_RETENTION_DAYS": "30"}
    with socket.socket() as taken:  # the start then stops right after its checks
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = fraudwatch("serve", "--port", str(port), "--data-dir", str(tmp_path), env=env)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "warning: environment FRAUDWATCH_RETENTION_DAY is not a setting, and is ignored "
        "(docs/settings.md lists them)"
    )
    assert "FRAUDWATCH_RETENTION_DAYS" not in done.stderr
    assert "cannot listen on" in done.stderr.splitlines()[1]


@contextlib.contextmanager
def running_demo(
    data_dir: Path,
    port: int,
    *,
    rate: float = 300,
    env: dict[str, str] | None = None,
    output: list[str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[dict[str, str]]:
    """`fraudwatch demo` in its own process; yields its banner, stops it with `stop`. Its
    output lines go to `output` as they come (`env`: FRAUDWATCH_* settings to add)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "demo",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**environ, **(env or {})},
    )
    assert proc.stdout is not None
    output = [] if output is None else output
    # Keeps reading so the server never blocks on a full pipe; started after the banner.
    drain = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    try:
        banner: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "data dir" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            key, _, value = line.strip().partition(":")
            banner[key.strip()] = value.strip()
        drain.start()
        yield banner
    finally:
        proc.send_signal(stop)
        code = proc.wait(timeout=30)
        if drain.is_alive():
            drain.join(timeout=10)  # its last lines (what the stop logged)
        proc.stdout.close()
    assert code == 0, "".join(output)
    assert "Traceback" not in "".join(output), "".join(output)


def _wait_for(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_demo_runs_alerts_arrive_and_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_demo(tmp_path, port) as banner:
        assert banner.get("fraudwatch demo") == f"{url}/", banner
        user, _, password = banner["login"].partition(" / ")
        assert user == "analyst" and password
        key = banner["API key"]
        first = _wait_for(lambda: get(f"{url}/api/v1/alerts?limit=1000", key)["alerts"])
        assert first[0]["status"] == "open"
    with running_demo(tmp_path, port) as again:
        assert (again["API key"], again["login"]) == (key, banner["login"])
        after = _wait_for(lambda: get(f"{url}/api/v1/alerts?limit=1000", key)["alerts"])
        assert {a["id"] for a in after} >= {a["id"] for a in first}


def _stored(data_dir: Path, before: float) -> tuple[int, int]:
    """Transactions in the demo's SQLite file: in all, and with an event time before
    `before` (Unix seconds)."""
    db = sqlite3.connect(f"file:{data_dir / 'fraudwatch.db'}?mode=ro", uri=True)
    try:
        (total,) = db.execute("SELECT count(*) FROM transactions").fetchone()
        (earlier,) = db.execute(
            "SELECT count(*) FROM transactions WHERE event_time_us < ?", (int(before * 1e6),)
        ).fetchone()
    finally:
        db.close()
    return total, earlier


# A minute of the stream's past, five times the demo's share of fraud: enough frauds of every
# kind to be sure of several, and a few seconds of warm-up.
WARM_UP = {"FRAUDWATCH_SIMULATOR_HISTORY": "300", "FRAUDWATCH_FRAUD_RATE": "0.1"}


def test_a_fresh_demo_opens_on_the_alerts_of_its_recent_past_with_the_model_in_use(
    tmp_path: Path,
) -> None:
    # A fresh demo showed nothing for its first ~16 s and about ten alerts in its first
    # minute, of one or two scenarios, all medium: every account was new to the detector,
    # and the model waited for labels that came 30 s after the transactions. It now scores
    # the stream's last minutes first (the real simulator through the real detector), so
    # that the first alerts are there as the dashboard opens, and learns their labels.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.time()
    output: list[str] = []
    with running_demo(tmp_path, port, rate=50, env=WARM_UP, output=output) as banner:
        key = banner["API key"]
        first = _wait_for(lambda: get(f"{url}/api/v1/alerts?limit=1000", key)["alerts"], 90)
        # Alerts on transactions from before the demo was started: its past, scored.
        assert any(
            dt.datetime.fromisoformat(a["transaction"]["timestamp"]).timestamp() < started
            for a in first
        ), [a["transaction"]["timestamp"] for a in first]
        _wait_for(lambda: any("simulator: live" in line for line in output), 90)
        card = get(f"{url}/api/v1/scorecard", key)
        alerts = get(f"{url}/api/v1/alerts?limit=1000", key)["alerts"]
    assert card["model"]["active"], card["model"]
    caught = {
        s["scenario"]
        for s in card["scorecard"]["scenarios"]
        if s["kind"] == "fraud" and s["alerts"]
    }
    assert len(caught) >= 3, card["scorecard"]["scenarios"]
    assert len({a["severity"] for a in alerts}) >= 2, [a["severity"] for a in alerts]
    total, before_start = _stored(tmp_path, started)
    assert before_start > 0 and total > before_start


def test_a_warm_up_stopped_by_ctrl_c_stops_cleanly_and_is_not_scored_again(
    tmp_path: Path,
) -> None:
    # The warm-up is five minutes of the stream: a Ctrl-C in the middle stops the demo as
    # any Ctrl-C does (state saved, exit 0), and a restart on the same data directory goes
    # live at once, without scoring a second past over the first.
    port = free_port()
    env = {"FRAUDWATCH_SIMULATOR_HISTORY": "300"}
    output: list[str] = []
    with running_demo(tmp_path, port, rate=50, env=env, output=output, stop=signal.SIGINT):
        _wait_for(lambda: any("scoring the stream's last 300 s" in line for line in output))
        _wait_for(lambda: (tmp_path / "fraudwatch.db").exists() and _stored(tmp_path, 0)[0])
    assert any("detector state saved" in line for line in output), output
    restarted = time.time()
    stored, _ = _stored(tmp_path, restarted)
    assert stored > 0
    again: list[str] = []
    with running_demo(tmp_path, port, rate=50, env=env, output=again):
        # Live: transactions from after the restart come in.
        _wait_for(lambda: _stored(tmp_path, time.time())[0] > stored)
        assert _stored(tmp_path, restarted)[1] == stored  # nothing new in the past
    assert not any("scoring the stream's last" in line for line in again), again


def test_package_imports_cleanly() -> None:
    # The console script and `python -m server` share one entry point.
    done = fraudwatch("--help")
    assert done.returncode == 0
    assert "demo" in done.stdout and "serve" in done.stdout and "users" in done.stdout
    assert asyncio.iscoroutinefunction(authenticate)


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("given_by", ["environment", "config file"])
def test_a_rules_path_that_names_no_file_names_the_setting(
    tmp_path: Path, command: str, given_by: str
) -> None:
    # It said "error: /nope: no such file or directory", and left the operator to find out
    # which of their settings, files or flags held /nope.
    missing = tmp_path / "nope"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
    args = [command, "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    if given_by == "environment":
        env["FRAUDWATCH_RULES_PATH"] = str(missing)
        where = "environment FRAUDWATCH_RULES_PATH"
    else:
        config = tmp_path / "fraudwatch.toml"
        config.write_text(f"rules_path = {str(missing)!r}\n")
        args += ["--config", str(config)]
        where = f"config file {config}"
    done = fraudwatch(*args, env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: Setting 'rules_path' from {where}: cannot read {missing}: no such file"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", [["replay"], ["backtest", "--label", "is_fraud"]])
def test_a_rules_flag_that_names_no_file_names_the_flag(tmp_path: Path, command: list[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = fraudwatch(command[0], str(rows), *command[1:], "--rules", str(empty))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --rules: {empty}: no *.toml rule files in this directory"
