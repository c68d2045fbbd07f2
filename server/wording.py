"""Counts and sizes in the commands' and the API's words, with the noun that agrees with them,
and why a file cannot be read, said alike by every command."""

from __future__ import annotations

import errno
import os

# Why a file cannot be opened, in words: Python's own (`[Errno 2] No such file or
# directory: '/nope.csv'`) reads as a crash. Other errors say their strerror.
_CANNOT_READ = {
    errno.ENOENT: "no such file",
    errno.EISDIR: "it is a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def cannot_read(path: str | os.PathLike[str], exc: OSError) -> str:
    """What the command line says of `path` failing to open or read with `exc`: `cannot
    read PATH: WHY` (`no such file`, `it is a directory`, `permission denied`, else the
    system's reason in lower case). One helper, so that replay, backtest and `rules check`
    say it in the same words."""
    why = _CANNOT_READ.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return f"cannot read {os.fspath(path)}: {why}"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with thousands separators and `noun`, made plural unless `n` is 1: "1 day",
    "2 days", "1,000 rows". `plural` for a noun that does not just take an s."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def size_in_words(n: int) -> str:
    """A size in bytes in the largest binary unit it is a whole number of: "8 MiB",
    "1,500 bytes", so a limit reads as it was set."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size:,} {unit}"
    return counted(n, "byte")
