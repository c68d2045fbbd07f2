"""`fraudwatch backup`: a consistent copy of a data directory, while the server runs or not.

The database is copied with SQLite's online backup API from a read transaction held for the
whole copy. Under WAL a reader never blocks the writer, and the held transaction pins the
snapshot: without it, every commit the server makes between two backup steps would restart
the copy from page one (SQLite restarts a backup whose source another connection changed),
so under a steady feed a large file would never finish. The copy is then checked with
`PRAGMA integrity_check` before it takes its name.

The other files the server reads at start (`DATA_FILES`) are copied first, each to a
temporary name and renamed, so the database is at least as new as they are: the copy is a
state a crash could have left (a detector snapshot or model a little behind the database),
which the server restarts from as after a crash.

The server restores its detector state from its snapshot and replays the stored
transactions scored after it (server/state_replay.py) and the label changes merchant risk
took in after it (server/label_changes.py), but a running server writes one only every
`state_snapshot_interval`, and its replay takes start-up time. So before copying, the
backup asks the server running on the data directory for a snapshot
(`POST /api/v1/admin/snapshot`, with an API key with the `backup` scope) and waits for it:
the copy's state then lacks only what was scored and labelled during the copy, which a
server started on it replays from the copied database.
No server answering means the snapshot on disk is what a stopped server wrote at shutdown,
which is current; a server that answers but writes none is warned about.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from server import atomic_file, server_file
from server.config import ConfigError, Settings, is_base_url, load_settings

DB_NAME = "fraudwatch.db"
DATA_FILES: tuple[tuple[str, str], ...] = (
    ("session.key", "the key of analysts' session cookies"),
    ("api-key", "the bootstrap API key, when the 'api_key' setting is unset"),
    ("demo-password", "the demo login's password (`fraudwatch demo`)"),
    ("model.json", "the online model's learnt weights"),
    ("detector-state.msgpack", "the detector's per-account state, as last snapshotted"),
)
"""Every file besides the database that a server reads from DATA_DIR at start, and why."""
_TRANSIENT_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp", ".bad")
"""The database's WAL and lock files (their content is in the copy), files being written
(renamed into place when whole) and a detector snapshot that failed to load."""
STEP_PAGES = 256
"""Pages one backup step copies: 1 MiB at SQLite's default 4 KiB pages."""
BUSY_TIMEOUT_MS = 5_000
_TMP_SUFFIX = ".backup-tmp"
STATE_FILE = "detector-state.msgpack"
SNAPSHOT_PATH = "/api/v1/admin/snapshot"
SNAPSHOT_TIMEOUT_S = 120.0
"""How long the server may take to write its snapshot (a few seconds for a million keys)."""


class BackupError(Exception):
    """The backup could not be made or did not check out; the message says why."""


class Refused(BackupError):
    """Nothing was copied: DEST is not a new or empty directory, or there is no database."""


@dataclass(frozen=True, slots=True)
class CopiedFile:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class DatabaseCopy:
    size: int
    pages: int
    steps: int
    longest_step_s: float
    seconds: float
    check: str


@dataclass(frozen=True, slots=True)
class StateSource:
    """Where the copied detector state comes from: `fresh`, written by the running server
    for this backup; otherwise the file on disk as it was, and `note` says why. `warn`: a
    server seems to be running, so that file may be up to `state_snapshot_interval` old."""

    fresh: bool
    note: str
    warn: bool = False


@dataclass(slots=True)
class BackupResult:
    files: list[CopiedFile] = field(default_factory=list)
    database: DatabaseCopy | None = None
    state: StateSource | None = None
    skipped: list[str] = field(default_factory=list)  # transient files
    left_out: list[str] = field(default_factory=list)  # not fraudwatch's
    seconds: float = 0.0


def prepare_destination(dest: Path) -> None:
    """Create `dest` (0700: it will hold secrets), or accept it if it is an empty directory.
    Raises Refused otherwise: a backup never mixes with other files."""
    if dest.is_dir():
        if any(dest.iterdir()):
            raise Refused(f"{dest} is not empty: back up to a new or empty directory")
        return
    if dest.exists() or dest.is_symlink():
        raise Refused(f"{dest} exists and is not a directory")
    try:
        dest.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise Refused(f"cannot create {dest}: {exc.strerror or exc}") from None


def classify(data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The names in `data_dir`: (to copy besides the database, transient, not fraudwatch's)."""
    known = {name for name, _ in DATA_FILES}
    copy: list[str] = []
    transient: list[str] = []
    other: list[str] = []
    for entry in sorted(data_dir.iterdir()):
        name = entry.name
        if name == DB_NAME:
            continue
        if name in known and entry.is_file():
            copy.append(name)
        elif (
            name.startswith(DB_NAME)
            or name.endswith(_TRANSIENT_SUFFIXES)
            or name == server_file.NAME  # the running server's address, not its state
            or name == server_file.LOCK_NAME  # held by the running server, empty
        ):
            transient.append(name)
        else:
            other.append(name + ("/" if entry.is_dir() else ""))
    order = [name for name, _ in DATA_FILES]
    return sorted(copy, key=order.index), transient, other


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(source: Path, target: Path) -> int:
    """Copy `source` to `target` atomically (a temporary name, fsync, rename), keeping its
    permission bits; returns its size. Reads one open file: a server replacing `source`
    meanwhile (it writes to a temporary name and renames) cannot tear the copy."""
    with source.open("rb") as src:
        mode = os.fstat(src.fileno()).st_mode & 0o777
        chunks = iter(lambda: src.read(1 << 20), b"")
        return atomic_file.write(target, chunks, mode=mode, tmp_suffix=_TMP_SUFFIX)


def backup_database(
    source: Path,
    target: Path,
    *,
    step_pages: int = STEP_PAGES,
    on_step: Callable[[int, int], None] | None = None,
) -> DatabaseCopy:
    """Copy the SQLite database `source` to `target` with the online backup API,
    `step_pages` pages a step, from one read snapshot; check it, then give it its name.
    `on_step(pages_left, pages)` after each step. Raises BackupError."""
    tmp = target.with_name(target.name + _TMP_SUFFIX)
    started = time.monotonic()
    try:
        # mode=rw: a missing database is an error here, not a new empty file.
        src = sqlite3.connect(
            f"file:{source}?mode=rw", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    steps: list[float] = []
    try:
        with contextlib.closing(src):
            src.execute("PRAGMA query_only = ON")
            # The read transaction: from its first read on, every step sees this snapshot.
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            (pages,) = src.execute("PRAGMA page_count").fetchone()
            last = time.monotonic()

            def progress(_status: int, remaining: int, _total: int) -> None:
                nonlocal last
                now = time.monotonic()
                steps.append(now - last)
                last = now
                if on_step is not None:
                    on_step(remaining, pages)

            with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as dst:
                src.backup(dst, pages=step_pages, progress=progress)
                src.execute("COMMIT")
                try:
                    check = "\n".join(row[0] for row in dst.execute("PRAGMA integrity_check"))
                except sqlite3.DatabaseError as exc:  # damage bad enough to stop the check
                    check = str(exc)
                if check != "ok":
                    raise BackupError(f"the copy of {source} failed integrity_check: {check}")
        # Closed, so its WAL is folded in and removed: one self-contained file.
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, source.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from None
    finally:
        for leftover in (tmp, *(Path(f"{tmp}{s}") for s in ("-wal", "-shm", "-journal"))):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return DatabaseCopy(
        size=target.stat().st_size,
        pages=int(pages),
        steps=len(steps),
        longest_step_s=max(steps, default=0.0),
        seconds=time.monotonic() - started,
        check=check,
    )


def server_url(host: str, port: int) -> str:
    """Where a server listening on `host`:`port` answers on this machine."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def backup_key(settings: Settings, key_file: Path | None) -> str | None:
    """The API key to ask for a snapshot with: `key_file`'s, else the `api_key` setting,
    else the bootstrap key in DATA_DIR/api-key; None without any. Raises OSError for a
    `key_file` that cannot be read."""
    if key_file is not None:
        return key_file.read_text(encoding="utf-8").strip() or None
    if settings.api_key:
        return settings.api_key
    try:
        return (settings.data_dir / "api-key").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def request_snapshot(
    url: str, key: str | None, data_dir: Path, *, timeout: float = SNAPSHOT_TIMEOUT_S
) -> StateSource:
    """Ask the server at `url` to write its detector state to `data_dir` now, and wait.
    Never raises: what went wrong is in the StateSource's note."""
    state = data_dir / STATE_FILE
    on_disk = "copied as on disk" if state.exists() else "none on disk to copy"
    if key is None:
        return StateSource(
            False,
            f"{on_disk}: no API key to ask a running server for a fresh snapshot with "
            "(give one with the 'backup' scope: --key-file)",
            warn=True,
        )
    request = urllib.request.Request(
        url + SNAPSHOT_PATH, data=b"", method="POST", headers={"Authorization": f"Bearer {key}"}
    )
    # Straight to the server: a proxy from the environment has no business here.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError, OSError):
            message = exc.reason
        return StateSource(
            False, f"{on_disk}: the server at {url} answered {exc.code}: {message}", warn=True
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ConnectionRefusedError):
            if (data_dir / f"{DB_NAME}-wal").exists():
                # SQLite removes the WAL when the last connection closes: a server may be
                # running elsewhere, or one was killed.
                return StateSource(
                    False,
                    f"{on_disk}: no server answered at {url}, but {DB_NAME}-wal is there: if "
                    "a server runs on this data directory, give its URL with --server",
                    warn=True,
                )
            return StateSource(
                False,
                f"{on_disk}, as the server wrote it when it stopped: no server answered at {url}",
            )
        return StateSource(False, f"{on_disk}: could not ask {url}: {reason}", warn=True)
    written = Path(str(body.get("path", "")))
    if written.resolve() != state.resolve():
        return StateSource(
            False,
            f"{on_disk}: the server at {url} keeps its data in {written.parent}, not "
            f"{data_dir}: give this data directory's server with --server",
            warn=True,
        )
    return StateSource(
        True,
        f"written for this backup by the server at {url} "
        f"({int(body.get('keys', 0)):,} keys in {float(body.get('seconds', 0)):.2f} s)",
    )


def backup(
    data_dir: Path,
    dest: Path,
    *,
    step_pages: int = STEP_PAGES,
    fresh_state: Callable[[], StateSource] | None = None,
) -> BackupResult:
    """Back up `data_dir` into `dest` (new or empty). `fresh_state`, called once `dest` is
    ready and before anything is copied, has the running server write its detector state
    (request_snapshot). Raises Refused, BackupError or OSError; on any of them `dest` may
    hold part of a backup, never a finished one."""
    started = time.monotonic()
    db = data_dir / DB_NAME
    if not db.is_file():
        raise Refused(f"no database at {db}: is the data directory right?")
    if dest.resolve() == data_dir.resolve() or data_dir.resolve() in dest.resolve().parents:
        raise Refused(f"{dest} is inside the data directory {data_dir}")
    prepare_destination(dest)
    result = BackupResult()
    if fresh_state is not None:
        result.state = fresh_state()
    names, result.skipped, result.left_out = classify(data_dir)
    # The files first, the database last: the copy's database is never older than them.
    for name in names:
        try:
            size = copy_file(data_dir / name, dest / name)
        except FileNotFoundError:
            continue  # removed since it was listed: the server does not need it
        result.files.append(CopiedFile(name, size))
    result.database = backup_database(db, dest / DB_NAME, step_pages=step_pages)
    _fsync_dir(dest)
    result.seconds = time.monotonic() - started
    return result


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}"
    raise AssertionError("unreachable")


def report_lines(
    result: BackupResult, data_dir: Path, dest: Path, config: Path | None = None
) -> list[str]:
    """What `fraudwatch backup` prints. `config`, the settings file the backup read, is in
    the restore command: without it the restored server would run with the default
    thresholds and rule pack, not the ones the backed-up server scored with."""
    db = result.database
    assert db is not None
    width = max(len(name) for name in [DB_NAME, *(f.name for f in result.files)])
    lines = [f"backup of {data_dir} to {dest}"]
    lines.append(
        f"  {DB_NAME:<{width}}  {_size(db.size):>10}  {db.pages:,} pages in {db.steps} "
        f"step{'s' * (db.steps != 1)} "
        f"(longest {db.longest_step_s * 1000:.1f} ms), integrity_check {db.check}"
    )
    lines += [f"  {f.name:<{width}}  {_size(f.size):>10}" for f in result.files]
    if result.state is not None:
        lines.append(f"detector state: {result.state.note}")
    if result.skipped:
        lines.append(f"skipped (temporary, or in the database copy): {', '.join(result.skipped)}")
    if result.left_out:
        lines.append(f"left out (not fraudwatch's files): {', '.join(result.left_out)}")
    total = db.size + sum(f.size for f in result.files)
    lines.append(
        f"backup complete: {1 + len(result.files)} files, {_size(total)} in "
        f"{result.seconds:.2f} s; restore with: fraudwatch serve "
        f"{'' if config is None else f'--config {shlex.quote(str(config))} '}"
        f"--data-dir {shlex.quote(str(dest))}"
    )
    return lines


def register(commands: Any) -> None:
    """Add `backup` to the `fraudwatch` subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "backup",
        help="copy the data directory consistently, while the server runs or not",
        description="Copy DATA_DIR into DEST, a new or empty directory: the database through "
        "SQLite's online backup API (checked before success is reported), and the other files "
        "the server reads at start. Restore: fraudwatch serve --data-dir DEST. "
        "See docs/operations.md.",
    )
    parser.add_argument("dest", type=Path, metavar="DEST", help="a new or empty directory")
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./fraudwatch-data)")
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (its data_dir, host, port, api_key)"
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="the URL of the server running on DATA_DIR, asked for a fresh detector snapshot "
        "before the copy (default http://HOST:PORT from the settings)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="a file holding an API key with the 'backup' scope to ask with (default: the "
        "api_key setting, else DATA_DIR/api-key)",
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Exit codes: 0 backed up and checked; 2 refused, nothing copied (DEST not new or empty,
    no database, a bad setting); 1 the backup failed (DEST then holds no database)."""
    out = sys.stdout if out is None else out
    try:
        flags = {"data_dir": args.data_dir} if args.data_dir is not None else {}
        settings = load_settings(flags, config_file=args.config)
        data_dir = settings.data_dir
        if args.server:
            url = args.server.rstrip("/")
            if not is_base_url(url):
                # Else urllib's ValueError, a traceback, once DEST had been made.
                raise ConfigError(
                    f"--server {args.server!r} is not a URL like http://127.0.0.1:8000"
                )
        else:
            # The server running on this data dir says where it listens (server.json), even
            # when started with another --port than the settings'.
            running = server_file.running_server(data_dir)
            where = (settings.host, settings.port) if running is None else running[:2]
            url = server_url(*where)
        try:
            key = backup_key(settings, args.key_file)
        except OSError as exc:
            raise ConfigError(f"cannot read --key-file {args.key_file}: {exc.strerror}") from None

        def fresh_state() -> StateSource:
            return request_snapshot(url, key, data_dir)

        result = backup(data_dir, args.dest, fresh_state=fresh_state)
    except (ConfigError, Refused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        print(f"error: {exc}; {args.dest} does not hold a usable backup", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"error: {exc.strerror or exc} ({exc.filename}); {args.dest} does not hold a "
            "usable backup",
            file=sys.stderr,
        )
        return 1
    config = args.config or (
        Path(os.environ["FRAUDWATCH_CONFIG"]) if os.environ.get("FRAUDWATCH_CONFIG") else None
    )
    for line in report_lines(result, data_dir, args.dest, config):
        print(line, file=out)
    if result.state is not None and result.state.warn:
        print(
            f"warning: detector state {result.state.note}; it may be up to "
            "state_snapshot_interval older than the database (see docs/operations.md)",
            file=sys.stderr,
        )
    return 0
