"""Detector state to a file and back, so that a restart keeps every key's history.

The file is length-prefixed msgpack frames (no pickle: loading it runs no code): a header,
then chunks of keys, each key's state as its slots in order with arrays as (typecode,
bytes); with a model, chunks of its memory (each recent transaction's packed inputs, kept
until its label arrives, and the accounts the rules flagged in the last day), so that a
chargeback arriving after a restart is still learnt; then an end frame. Hashes inside are
stable across processes (`features.stable_hash`). Written to a temporary file and renamed,
so a crash mid-write leaves the previous snapshot whole.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from server import atomic_file
from server.detection.features import AccountState, Featurizer, KeyState, state_fields
from server.detection.model import RAW_LAYOUT, RAW_LAYOUTS_READ, ModelSlot, remembered_entry

FORMAT = "fraudwatch-detector-state/2"
READABLE = frozenset({"fraudwatch-detector-state/1", FORMAT})  # /1: no model memory
_KINDS: dict[str, type[KeyState]] = {
    "accounts": AccountState,
    "merchants": KeyState,
    "devices": KeyState,
    "ips": KeyState,
}


_CACHES = frozenset({"risk"})  # derived from other fields; rebuilt on use


class SnapshotError(Exception):
    """A snapshot that cannot be read back; the message says why."""


def _pack(state: KeyState, fields: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for name in fields:
        if name in _CACHES:
            out.append(None)
            continue
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


def count_keys(featurizer: Featurizer) -> int:
    """The keys a snapshot of `featurizer` holds now (accounts, merchants, devices, IPs)."""
    return sum(len(getattr(featurizer, kind)) for kind in _KINDS)


def encode_frames(
    featurizer: Featurizer, chunk: int = 2000, model: ModelSlot | None = None
) -> Iterator[bytes]:
    """The featurizer's state as length-prefixed msgpack frames, `chunk` keys a frame, then
    `model`'s memory if given.

    A caller may let other work run between frames (the periodic snapshot does, so a
    million accounts never stop the detection loop for seconds). Each key is then written
    as it stands when its frame is encoded: a consistent record per key, not one instant
    for all, which for a snapshot taken to survive a restart is enough. Keys added
    meanwhile wait for the next snapshot; keys evicted meanwhile are skipped.
    """
    header: dict[str, Any] = {
        "format": FORMAT,
        "fields": {kind: list(state_fields(cls)) for kind, cls in _KINDS.items()},
    }
    if model is not None:
        header["model_layout"] = RAW_LAYOUT
    yield _frame(header)
    for kind, cls in _KINDS.items():
        fields = state_fields(cls)
        states: dict[str, KeyState] = getattr(featurizer, kind)
        keys = list(states)
        for start in range(0, len(keys), chunk):
            packed = {}
            for key in keys[start : start + chunk]:
                state = states.get(key)
                if state is not None:
                    packed[key] = _pack(state, fields)
            yield _frame({"kind": kind, "states": packed})
    if model is not None:
        memory: tuple[tuple[str, Mapping[str, Any]], ...] = (
            ("model_inputs", model.remembered),
            ("account_flags", model.flags.accounts),
        )
        for kind, mapping in memory:
            # The keys are copied first (the loop may remember and forget between two frames;
            # ~10-25 ms for 250,000, a third of copying the items), each value read with its
            # chunk; one forgotten meanwhile is left out.
            keys = list(mapping)
            for start in range(0, len(keys), chunk):
                items = [
                    (key, value)
                    for key in keys[start : start + chunk]
                    if (value := mapping.get(key)) is not None
                ]
                yield _frame({"kind": kind, "items": items})
    amounts = [[bucket, *counts] for bucket, counts in featurizer.amounts.items()]
    yield _frame(
        {
            "end": True,
            "newest": featurizer.newest,
            "next_sweep": featurizer.next_sweep,
            "amounts": amounts,
        }
    )


def _frame(body: object) -> bytes:
    data = msgspec.msgpack.encode(body)
    return len(data).to_bytes(8, "little") + data


def encode(featurizer: Featurizer, model: ModelSlot | None = None) -> bytes:
    """The whole state at once (at shutdown, when nothing else runs)."""
    return b"".join(encode_frames(featurizer, chunk=1 << 30, model=model))


def decode_into(featurizer: Featurizer, data: bytes, model: ModelSlot | None = None) -> int:
    """Replace `featurizer`'s state with the snapshot's, and `model`'s memory with the
    snapshot's when it has one of the same inputs (another layout is left out: those
    transactions' labels will be stored but not learnt); returns the keys restored."""
    frames = _frames(data)
    header = next(frames, None)
    if not isinstance(header, dict) or header.get("format") not in READABLE:
        found = header.get("format") if isinstance(header, dict) else None
        raise SnapshotError(f"unknown snapshot format {found!r}, expected {FORMAT!r}")
    fields = {kind: state_fields(cls) for kind, cls in _KINDS.items()}
    for kind, names in fields.items():
        if header["fields"].get(kind) != list(names):
            raise SnapshotError(f"snapshot {kind} have other fields than this version's")
    restored: dict[str, dict[str, KeyState]] = {kind: {} for kind in _KINDS}
    memory: dict[str, list[Any]] = {"model_inputs": [], "account_flags": []}
    end: dict[str, Any] | None = None
    for body in frames:
        if not isinstance(body, dict):
            raise SnapshotError("snapshot is damaged: a frame is not a table")
        if body.get("end"):
            end = body
            break
        kind_found = body.get("kind")
        if kind_found in memory and isinstance(body.get("items"), list):
            memory[str(kind_found)].extend(body["items"])
            continue
        if kind_found not in _KINDS:
            raise SnapshotError(f"snapshot is damaged: unknown kind {kind_found!r}")
        kind = str(kind_found)
        try:
            restored[kind].update(
                (key, _unpack(_KINDS[kind], fields[kind], values))
                for key, values in body["states"].items()
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise SnapshotError(f"snapshot {kind} are damaged: {exc}") from None
    if end is None:
        raise SnapshotError("snapshot is truncated: no end frame")
    remembered = flags = None
    layout = header.get("model_layout")
    if model is not None and layout in RAW_LAYOUTS_READ:
        try:
            # The newest `memory` inputs, oldest first as they were scored; an entry of a
            # length the layout cannot hold is left out (its label is stored, not learnt).
            remembered = OrderedDict(
                (str(tx_id), raw)
                for tx_id, value in memory["model_inputs"][-model.memory :]
                if (raw := remembered_entry(layout, bytes(value))) is not None
            )
            flags = OrderedDict(
                (str(account), [(float(t), float(s)) for t, s in recent])
                for account, recent in memory["account_flags"]
            )
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot model memory is damaged: {exc}") from None
    for kind, states in restored.items():
        setattr(featurizer, kind, states)
    if model is not None and remembered is not None and flags is not None:
        model.remembered = remembered
        model.flags.accounts = flags
    try:
        # A snapshot from before the amount's fraud rate has none: it starts empty.
        featurizer.amounts = {
            int(bucket): [float(labels), float(frauds), float(last)]
            for bucket, labels, frauds, last in end.get("amounts", ())
        }
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot amount labels are damaged: {exc}") from None
    featurizer.newest = float(end["newest"])
    featurizer.next_sweep = float(end["next_sweep"])
    return sum(len(states) for states in restored.values())


def _frames(data: bytes) -> Iterator[Any]:
    view = memoryview(data)
    at = 0
    while at < len(view):
        if at + 8 > len(view):
            raise SnapshotError("snapshot is truncated")
        size = int.from_bytes(view[at : at + 8], "little")
        at += 8
        if at + size > len(view):
            raise SnapshotError("snapshot is truncated")
        try:
            yield msgspec.msgpack.decode(view[at : at + size])
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"not a detector snapshot: {exc}") from None
        at += size


def save(featurizer: Featurizer, path: Path, model: ModelSlot | None = None) -> int:
    """Write a snapshot to `path` atomically; returns its size in bytes."""
    return write_bytes(encode(featurizer, model), path)


def write_bytes(data: bytes | list[bytes], path: Path) -> int:
    """Write `data` (or its frames) to `path` atomically; returns the bytes written."""
    return atomic_file.write(path, data)


def load(featurizer: Featurizer, path: Path, model: ModelSlot | None = None) -> int | None:
    """Restore from `path` if it exists; returns the keys restored, or None without a file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_into(featurizer, data, model)
