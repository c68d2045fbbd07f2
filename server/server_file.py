"""DATA_DIR/server.json: where the server running on a data directory listens, for the
tools that talk to it (`fraudwatch backup` asks it for a fresh detector snapshot).

Written by `serve` and `demo` once their port is bound, removed when they stop. A server
killed without its cleanup leaves the file behind: its pid then names no process, and
`running_server` ignores it.

DATA_DIR/server.lock is what keeps a second server off the directory: `hold` takes an
exclusive lock on it for the life of the process. The kernel drops the lock when the
process ends, killed or crashed included, so unlike a pid in server.json it can neither
go stale nor name a process that later reused the pid, and two servers started in the
same instant cannot both have it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import NamedTuple

from server import atomic_file

NAME = "server.json"
LOCK_NAME = "server.lock"


class RunningServer(NamedTuple):
    host: str
    port: int
    pid: int


def hold(data_dir: Path) -> int | None:
    """Take `data_dir` for this process: an exclusive lock on its server.lock, held until
    the process exits (keep the returned descriptor open). None: another process has it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def write(data_dir: Path, host: str, port: int) -> Path:
    """Record this process as the server of `data_dir` (atomically, 0600)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / NAME
    atomic_file.write_text(path, json.dumps({"host": host, "port": port, "pid": os.getpid()}))
    return path


def remove(data_dir: Path) -> None:
    """Forget this process as the server of `data_dir`, unless another has taken over."""
    found = running_server(data_dir, check_alive=False)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (data_dir / NAME).unlink()


def running_server(data_dir: Path, *, check_alive: bool = True) -> RunningServer | None:
    """The server recorded for `data_dir`, if the file is readable and (with `check_alive`)
    its process still runs; None otherwise."""
    try:
        data = json.loads((data_dir / NAME).read_text(encoding="utf-8"))
        found = RunningServer(str(data["host"]), int(data["port"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive:
        try:
            os.kill(found.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # another user's process: it exists
    return found
