"""Replace a file atomically: readers and a crash see the old file or the new one, never
half of one.

The one way fraudwatch writes its own files (the detector snapshot, the model, the
server's address, a backup's copies): the bytes go to `NAME.tmp` beside the target,
are flushed to disk (fsync), take the permission bits asked for, and only then take
the target's name (`os.replace`, atomic on POSIX). A failure removes the temporary file
and leaves the target as it was. A stale `NAME.tmp` from a crash is overwritten by the
next write (and skipped by `fraudwatch backup`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

TMP_SUFFIX = ".tmp"


class Writer:
    """A file being replaced, written a piece at a time: `write` goes to `NAME.tmp`, and
    only `commit` (flushed, fsynced, `mode` set, renamed) puts it at `path`; `close` after
    a failure removes the temporary file and leaves `path` as it was. For what is too big
    to hold whole first (a detector snapshot of a million accounts is hundreds of MB).
    Blocking: an asyncio caller runs it in a thread."""

    def __init__(self, path: Path, *, mode: int = 0o600, tmp_suffix: str = TMP_SUFFIX) -> None:
        self.path = path
        self.mode = mode
        self.tmp = path.with_name(path.name + tmp_suffix)
        self.size = 0
        self._committed = False
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self._file.write(chunk)
            self.size += len(chunk)

    def commit(self) -> int:
        """Make the file durable and put it at `path`; returns its size in bytes."""
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        # O_CREAT's mode is filtered by the umask and ignored for a stale file: set it.
        os.chmod(self.tmp, self.mode)
        os.replace(self.tmp, self.path)
        self._committed = True
        return self.size

    def close(self) -> None:
        """Release the file; without a `commit`, remove it (`path` stays as it was)."""
        self._file.close()
        if not self._committed:
            with contextlib.suppress(OSError):
                self.tmp.unlink()


def write(
    path: Path,
    data: bytes | Iterable[bytes],
    *,
    mode: int = 0o600,
    tmp_suffix: str = TMP_SUFFIX,
) -> int:
    """Write `data` (bytes, or chunks of them, written as they come) to `path` atomically
    with permission bits `mode`; returns the bytes written."""
    writer = Writer(path, mode=mode, tmp_suffix=tmp_suffix)
    try:
        writer.write((data,) if isinstance(data, bytes) else data)
        return writer.commit()
    finally:
        writer.close()


def write_text(path: Path, text: str, *, mode: int = 0o600) -> int:
    """`write` for text, UTF-8."""
    return write(path, text.encode("utf-8"), mode=mode)
