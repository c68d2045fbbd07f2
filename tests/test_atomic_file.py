"""server/atomic_file.py: the one way fraudwatch replaces its own files."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import atomic_file


def test_write_replaces_the_file_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    target.chmod(0o644)
    assert atomic_file.write(target, [b"new ", b"bytes"]) == 9
    assert target.read_bytes() == b"new bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old", encoding="utf-8")

    def chunks() -> Iterator[bytes]:
        yield b"half of "
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_file.write(target, chunks())
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_stale_temporary_file_is_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "server.json"
    stale = tmp_path / "server.json.tmp"
    stale.write_text("left by a crash, and longer than what comes next", encoding="utf-8")
    stale.chmod(0o644)
    atomic_file.write_text(target, "{}", mode=0o640)
    assert target.read_text(encoding="utf-8") == "{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not stale.exists()
