"""Detector state to a file and back, so that a restart keeps every key's history.

The file is msgpack (no pickle: loading it runs no code): a header, then each key's state as
its slots in order, arrays as (typecode, bytes). Hashes inside are stable across processes
(`features.stable_hash`). Written to a temporary file and renamed, so a crash mid-write
leaves the previous snapshot whole.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import Any

import msgspec

from server.detection.features import AccountState, Featurizer, KeyState, state_fields

FORMAT = "fraudwatch-detector-state/1"
_KINDS: dict[str, type[KeyState]] = {
    "accounts": AccountState,
    "merchants": KeyState,
    "devices": KeyState,
    "ips": KeyState,
}


class SnapshotError(Exception):
    """A snapshot that cannot be read back; the message says why."""


def _pack(state: KeyState, fields: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for name in fields:
        value = getattr(state, name)
        out.append((value.typecode, value.tobytes()) if isinstance(value, array) else value)
    return out


def _unpack(cls: type[KeyState], fields: tuple[str, ...], values: list[Any]) -> KeyState:
    state = cls()
    for name, value in zip(fields, values, strict=True):
        if isinstance(value, list):  # msgpack gives tuples back as lists
            typecode, raw = value
            value = array(typecode)
            value.frombytes(raw)
        setattr(state, name, value)
    return state


def encode(featurizer: Featurizer) -> bytes:
    """The featurizer's whole state as bytes (runs on the detection loop: it must not
    change while being read)."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "newest": featurizer.newest,
        "next_sweep": featurizer.next_sweep,
        "fields": {kind: list(state_fields(cls)) for kind, cls in _KINDS.items()},
    }
    for kind, cls in _KINDS.items():
        fields = state_fields(cls)
        states: dict[str, KeyState] = getattr(featurizer, kind)
        body[kind] = {key: _pack(state, fields) for key, state in states.items()}
    return msgspec.msgpack.encode(body)


def decode_into(featurizer: Featurizer, data: bytes) -> int:
    """Replace `featurizer`'s state with the snapshot's; returns the keys restored."""
    try:
        body = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"not a detector snapshot: {exc}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        found = body.get("format") if isinstance(body, dict) else None
        raise SnapshotError(f"unknown snapshot format {found!r}, expected {FORMAT!r}")
    restored: dict[str, dict[str, KeyState]] = {}
    for kind, cls in _KINDS.items():
        fields = state_fields(cls)
        if body["fields"].get(kind) != list(fields):
            raise SnapshotError(f"snapshot {kind} have other fields than this version's")
        try:
            restored[kind] = {
                key: _unpack(cls, fields, values) for key, values in body[kind].items()
            }
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot {kind} are damaged: {exc}") from None
    for kind, states in restored.items():
        setattr(featurizer, kind, states)
    featurizer.newest = float(body["newest"])
    featurizer.next_sweep = float(body["next_sweep"])
    return sum(len(states) for states in restored.values())


def save(featurizer: Featurizer, path: Path) -> int:
    """Write a snapshot to `path` atomically; returns its size in bytes."""
    return write_bytes(encode(featurizer), path)


def write_bytes(data: bytes, path: Path) -> int:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)


def load(featurizer: Featurizer, path: Path) -> int | None:
    """Restore from `path` if it exists; returns the keys restored, or None without a file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_into(featurizer, data)
