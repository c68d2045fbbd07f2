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


def write(
    path: Path,
    data: bytes | Iterable[bytes],
    *,
    mode: int = 0o600,
    tmp_suffix: str = TMP_SUFFIX,
) -> int:
    """Write `data` (bytes, or chunks of them, read one at a time) to `path` atomically
    with permission bits `mode`; returns the bytes written."""
    tmp = path.with_name(path.name + tmp_suffix)
    chunks = (data,) if isinstance(data, bytes) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            size = 0
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        # O_CREAT's mode is filtered by the umask and ignored for a stale file: set it.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return size


def write_text(path: Path, text: str, *, mode: int = 0o600) -> int:
    """`write` for text, UTF-8."""
    return write(path, text.encode("utf-8"), mode=mode)
