"""DATA_DIR/server.json: where the server running on a data directory listens, for the
tools that talk to it (`fraudwatch backup` asks it for a fresh detector snapshot).

Written by `serve` and `demo` once their port is bound, removed when they stop. A server
killed without its cleanup leaves the file behind: its pid then names no process, and
`running_server` ignores it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from server import atomic_file

NAME = "server.json"


class RunningServer(NamedTuple):
    host: str
    port: int
    pid: int


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
