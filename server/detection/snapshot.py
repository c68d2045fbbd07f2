"""Detector state to a file and back, so that a restart keeps every key's history.

The file is length-prefixed msgpack frames (no pickle: loading it runs no code): a header,
then chunks of keys, each key's state as its slots in order with arrays as (typecode,
bytes); with a model, chunks of its memory (each recent transaction's packed inputs, kept
until its label arrives, and the accounts the rules flagged in the last day), so that a
chargeback arriving after a restart is still learnt; then an end frame. Hashes inside are
stable across processes (`features.stable_hash`). Written to a temporary file and renamed,
so a crash mid-write leaves the previous snapshot whole.

Each frame also says how far through the store the state it holds had got when it was
encoded (`Progress`: the last transaction scored, and the last of those stored), so that a
restart after a crash can replay, key by key, exactly the stored transactions the snapshot
lacks (server/state_replay.py), and through which of the store's label changes merchant
risk and the amount's fraud rate had got (`Progress.labels`; the end frame's for the
amounts), so that the label changes each lacks are applied too (server/label_changes.py).
Older files have no such marks; they load as before.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from server import atomic_file
from server.detection.features import (
    AccountState,
    AmountScale,
    Featurizer,
    KeyState,
    state_fields,
)
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


Mark = tuple[str | None, str | None]
"""(last transaction scored, last of those stored) when a frame was encoded: `Progress`."""


@dataclass(slots=True)
class Progress:
    """How far through the store the detector's state has got, in the store's order: the
    last transaction scored into it, and the last of those committed. The detection loop
    scores a whole batch, then waits for its commit; it moves `scored`, then `stored`, once
    a batch (never per transaction). None: no stored transaction is in the state."""

    scored: str | None = None
    stored: str | None = None
    # The label changes merchant risk and the amount's rate have taken in: every one up to
    # this seq of the store's log, and none after (server/label_changes.py); and none up to
    # `labels_from` (the state began after them: no snapshot, or one without label marks).
    labels: int = 0
    labels_from: int = 0

    def mark(self) -> Mark:
        return (self.scored, self.stored)

    def through(self, tx_id: str | None) -> None:
        """The state holds every transaction stored up to `tx_id` (at start, after replay)."""
        self.scored = self.stored = tx_id


MARKED_KINDS = ("accounts", "merchants", "devices", "ips", "account_flags")


@dataclass(slots=True)
class Marks:
    """Where each key of a restored snapshot stands in the store's order: it holds every
    stored transaction up to its frame's mark, and none after. `marks[0]` is the header's,
    taken before any key was encoded: a key the snapshot lacks (new while it was written)
    holds nothing stored after it. `keys[kind][key]` indexes `marks`, for the keys whose
    frame's mark is not the header's (none at shutdown, when nothing moves)."""

    marks: list[Mark]
    keys: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: {} for kind in MARKED_KINDS}
    )
    # The end frame's mark (an index into `marks`): what the MCCs' amounts hold, a running
    # figure of every transaction, not of a key. 0, the header's, in a file without it.
    end: int = 0

    def add_end(self, mark: object) -> None:
        found = _mark(mark)
        if found != self.marks[-1]:
            self.marks.append(found)
        self.end = len(self.marks) - 1

    def add(self, mark: object, kind: str, keys: Iterator[str]) -> None:
        """A frame's `mark` for its `keys` of `kind`."""
        found = _mark(mark)
        if found == self.marks[-1]:
            index = len(self.marks) - 1  # frames' marks only move forward: one per change
        else:
            index = len(self.marks)
            self.marks.append(found)
        if index:
            self.keys[kind].update(dict.fromkeys(keys, index))


@dataclass(slots=True)
class LabelMarks:
    """Which label changes each part of a restored snapshot holds: every one up to its
    frame's mark. `header` for a merchant the snapshot lacks, `merchants` for those whose
    frame's mark is not the header's, `amounts` (the end frame's) for the amount's rate;
    none of them holds a change up to `since` (`Progress.labels_from`)."""

    header: int
    amounts: int = 0
    merchants: dict[str, int] = field(default_factory=dict)
    since: int = 0

    def merchant(self, merchant_id: str) -> int:
        return self.merchants.get(merchant_id, self.header)

    def highest(self) -> int:
        """Frames' marks only move forward: the end frame's is the last."""
        return max(self.amounts, self.header)


def _label_mark(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SnapshotError(f"snapshot is damaged: a frame's label mark is {value!r}")


def _mark(value: object) -> Mark:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(part is None or isinstance(part, str) for part in value)
    ):
        return (value[0], value[1])
    raise SnapshotError(f"snapshot is damaged: a frame's mark is {value!r}")


@dataclass(frozen=True, slots=True)
class Restored:
    """What `restore` put back: how many keys, and the marks (None in a file without)."""

    keys: int
    marks: Marks | None
    labels: LabelMarks | None = None  # None in a file without label marks


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
    featurizer: Featurizer,
    chunk: int = 2000,
    model: ModelSlot | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The featurizer's state as length-prefixed msgpack frames, `chunk` keys a frame, then
    `model`'s memory if given.

    A caller may let other work run between frames (the periodic snapshot does, so a
    million accounts never stop the detection loop for seconds). Each key is then written
    as it stands when its frame is encoded: a consistent record per key, not one instant
    for all. Keys added meanwhile wait for the next snapshot; keys evicted meanwhile are
    skipped. With `progress`, the header and each frame say how far through the store the
    state had got when they were encoded, which tells a replay after a crash which stored
    transactions each key holds already.
    """
    header: dict[str, Any] = {
        "format": FORMAT,
        "fields": {kind: list(state_fields(cls)) for kind, cls in _KINDS.items()},
    }
    if model is not None:
        header["model_layout"] = RAW_LAYOUT
    marked: dict[str, Any] = {}  # a frame's mark, if any: read as the frame is encoded
    if progress is not None:
        header["through"] = marked["through"] = progress.mark()
        header["labels"] = marked["labels"] = progress.labels
        header["labels_from"] = progress.labels_from
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
            if progress is not None:
                marked["through"] = progress.mark()
                marked["labels"] = progress.labels
            yield _frame({"kind": kind, "states": packed, **marked})
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
                if progress is not None:
                    marked["through"] = progress.mark()
                    marked["labels"] = progress.labels
                yield _frame({"kind": kind, "items": items, **marked})
    amounts = [[bucket, *counts] for bucket, counts in featurizer.amounts.items()]
    hours = [[hour, *counts] for hour, counts in featurizer.hours.items()]
    mccs = [[mcc, *stats] for mcc, stats in featurizer.mcc_amounts.items()]
    end: dict[str, Any] = {
        "end": True,
        "newest": featurizer.newest,
        "next_sweep": featurizer.next_sweep,
        "amounts": amounts,
        "hours": hours,
        "mcc_amounts": mccs,
        "amount_scale": featurizer.scale.state(),
    }
    if progress is not None:
        end["through"] = progress.mark()  # what the MCCs' amounts and the scale hold
        end["labels"] = progress.labels  # what the amounts and the hours hold
    yield _frame(end)


def _frame(body: object) -> bytes:
    data = msgspec.msgpack.encode(body)
    return len(data).to_bytes(8, "little") + data


def encode(
    featurizer: Featurizer, model: ModelSlot | None = None, progress: Progress | None = None
) -> bytes:
    """The whole state at once (at shutdown, when nothing else runs)."""
    return b"".join(encode_frames(featurizer, chunk=1 << 30, model=model, progress=progress))


def decode_into(featurizer: Featurizer, data: bytes, model: ModelSlot | None = None) -> int:
    """`restore`, returning the keys restored."""
    return restore(featurizer, data, model).keys


def restore(featurizer: Featurizer, data: bytes, model: ModelSlot | None = None) -> Restored:
    """Replace `featurizer`'s state with the snapshot's, and `model`'s memory with the
    snapshot's when it has one of the same inputs (another layout is left out: those
    transactions' labels will be stored but not learnt); returns the keys restored and
    each key's mark."""
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
    marks = Marks([_mark(header["through"])]) if "through" in header else None
    labels = LabelMarks(_label_mark(header["labels"])) if "labels" in header else None
    if labels is not None:
        # A file from before it was written: taken to hold every change up to its marks.
        labels.since = _label_mark(header.get("labels_from", 0))
    for body in frames:
        if not isinstance(body, dict):
            raise SnapshotError("snapshot is damaged: a frame is not a table")
        if body.get("end"):
            end = body
            break
        kind_found = body.get("kind")
        if kind_found in memory and isinstance(body.get("items"), list):
            memory[str(kind_found)].extend(body["items"])
            if marks is not None and kind_found == "account_flags":
                marks.add(body.get("through"), "account_flags", _firsts(body["items"]))
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
        if marks is not None:
            marks.add(body.get("through"), kind, iter(body["states"]))
        if labels is not None and kind == "merchants":
            mark = _label_mark(body.get("labels"))
            if mark != labels.header:
                labels.merchants.update(dict.fromkeys(body["states"], mark))
    if end is None:
        raise SnapshotError("snapshot is truncated: no end frame")
    if marks is not None and "through" in end:
        marks.add_end(end["through"])
    if labels is not None:
        labels.amounts = _label_mark(end.get("labels"))
    remembered = flags = None
    layout = header.get("model_layout")
    if model is not None and layout in RAW_LAYOUTS_READ:
        try:
            # The newest `memory` inputs, oldest first as they were scored; an entry of a
            # length the layout cannot hold is left out (its label is stored, not learnt).
            remembered = OrderedDict(
                (str(tx_id), raw)
                for tx_id, value in memory["model_inputs"][-(model.memory or 0) :]
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
        model.scored_inputs.clear()  # of transactions no longer remembered
        model.flags.accounts = flags
    try:
        # A snapshot from before the amount's fraud rate has none: it starts empty.
        featurizer.amounts = {
            int(bucket): [float(labels), float(frauds), float(last)]
            for bucket, labels, frauds, last in end.get("amounts", ())
        }
        featurizer.hours = {
            int(hour): [float(labels), float(frauds), float(last)]
            for hour, labels, frauds, last in end.get("hours", ())
        }
        featurizer.mcc_amounts = {
            str(mcc): [float(n), float(mean), float(m2)]
            for mcc, n, mean, m2 in end.get("mcc_amounts", ())
        }
        # A snapshot from before the stream's scale has none: it starts again, from the
        # stored transactions replayed after it and those that come.
        scale = AmountScale()
        if "amount_scale" in end:
            scale.put([float(x) for x in end["amount_scale"]])
        featurizer.scale = scale
    except (TypeError, ValueError) as exc:
        raise SnapshotError(
            f"snapshot amount, hour, MCC or scale figures are damaged: {exc}"
        ) from None
    featurizer.newest = float(end["newest"])
    featurizer.next_sweep = float(end["next_sweep"])
    return Restored(sum(len(states) for states in restored.values()), marks, labels)


def _firsts(items: list[Any]) -> Iterator[str]:
    for item in items:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise SnapshotError("snapshot model memory is damaged: an entry has no key")
        yield item[0]


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


def save(
    featurizer: Featurizer,
    path: Path,
    model: ModelSlot | None = None,
    progress: Progress | None = None,
) -> int:
    """Write a snapshot to `path` atomically; returns its size in bytes. Frames are written
    as they are encoded: the whole snapshot is never in memory at once."""
    return write_bytes(encode_frames(featurizer, model=model, progress=progress), path)


def write_bytes(data: bytes | Iterable[bytes], path: Path) -> int:
    """Write `data` (or its frames, written as they come) to `path` atomically; returns the
    bytes written."""
    return atomic_file.write(path, data)


def load(featurizer: Featurizer, path: Path, model: ModelSlot | None = None) -> int | None:
    """Restore from `path` if it exists; returns the keys restored, or None without a file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_into(featurizer, data, model)
