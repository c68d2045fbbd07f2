"""At start, the stored transactions the restored detector state lacks, replayed into it.

The detector's state survives a restart through its snapshot (server/detection/snapshot.py),
written every `state_snapshot_interval` and at shutdown. After a crash, what was scored
since the last snapshot is in the store and not in the state: an account's third tiny
charge would count as its first. So before the detection loop starts, the transactions
stored after the snapshot are read back in the order they were stored (the order the loop
scored them in) and taken into their keys' state, as scoring them did, with no verdict, no
alert and nothing sent to anyone.

The snapshot is not one instant: its keys are encoded a frame at a time while the loop goes
on scoring, and a batch is scored before it is committed. Each frame records the last
transaction scored and the last stored when it was encoded (`snapshot.Progress`), so each
key holds exactly the stored transactions up to its frame's mark: a replayed transaction is
taken in by the keys whose mark is before it, and by no other. A key the snapshot lacks was
new while it was written and holds nothing after the header's mark. Nothing is counted
twice and nothing is skipped, whatever the event times.

With no snapshot at all (a first start, a deleted or damaged file) the state is rebuilt from
what the store received in the last `REPLAY_DAYS`. Either way at most `state_replay_max` of
the newest are read (`max_rows`), `REPLAY_CHUNK` at a time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

import msgspec

from server.detection.detector import Detector
from server.detection.snapshot import Marks, Progress, Restored
from server.store.base import Store, StoredTransaction, utc_stamp
from server.transactions import Transaction

log = logging.getLogger(__name__)
REPLAY_DAYS = 31.0
"""How far back a replay reads, by when the server received each transaction: the longest
window (30 days) and a day. A key's history goes further (its count, mean and first-seen
sets), but windows are what the rules lean on."""
REPLAY_CHUNK = 5_000
"""Transactions read at a time (a few MB); the next chunk is read while one is replayed."""

_decode = msgspec.json.Decoder(Transaction).decode


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay did: transactions read; of those, the ones only some of whose keys took
    them (the others held them already), the ones every key held already (`skipped`), and
    the ones that could not be read back; and how long it took."""

    read: int
    partly: int
    skipped: int
    damaged: int
    seconds: float
    rebuilt: bool  # no snapshot: the state was rebuilt from the store alone


async def replay_stored(
    detector: Detector,
    store: Store,
    progress: Progress,
    restored: Restored | None,
    *,
    max_rows: int,
    now: float | None = None,
) -> Replayed | None:
    """Take into `detector`'s state the stored transactions it lacks: those after the marks
    of the snapshot `restored` (None: there was none, so rebuild), received in the last
    `REPLAY_DAYS` and at most the `max_rows` stored last. Then `progress` is through the
    last transaction stored, whatever was replayed. None when nothing was to be replayed."""
    last = await store.last_position()
    progress.through(None if last is None else last[1])
    if last is None or max_rows <= 0:
        return None
    try:
        return await _replay(detector, store, restored, last[0], max_rows, now)
    except Exception:
        # `progress` says the state holds everything stored: what was not replayed is
        # missing from it for good, never counted twice. Starting matters more.
        log.exception("detector state: the replay failed; the state lacks what it had not read")
        return None


async def _replay(
    detector: Detector,
    store: Store,
    restored: Restored | None,
    until: int,
    max_rows: int,
    now: float | None,
) -> Replayed | None:
    marks = None if restored is None else restored.marks
    if restored is not None and marks is None:
        log.info(
            "detector state: the snapshot has no store marks (an earlier version wrote "
            "it); no stored transaction replayed"
        )
        return None
    positions: list[int | None] = [0] if marks is None else await _positions(store, marks)
    resolved = [p for p in positions if p is not None]
    if len(resolved) < len(positions):
        log.warning(
            "detector state: %d of the snapshot's %d marks are not in the store (another "
            "database, or pruned since): their keys are not replayed",
            len(positions) - len(resolved),
            len(positions),
        )
    if not resolved:
        return None
    since = utc_stamp((time.time() if now is None else now) - REPLAY_DAYS * 86400)
    floor = await store.position_since(since, max_rows)
    start = max(min(resolved), floor)
    if start >= until:
        return None
    if marks is not None and floor > min(resolved):
        log.warning(
            "detector state: more was stored after the snapshot than a replay reads "
            "(state_replay_max %d, %g days): older ones are left out",
            max_rows,
            REPLAY_DAYS,
        )
    # Said before it starts: on a large store it takes a while, and nothing else is said
    # meanwhile (the server is not serving yet).
    log.info(
        "detector state: %s from the store (at most %d transactions); serving after that",
        "rebuilding" if marks is None else "replaying",
        min(max_rows, until - start),
    )
    started = time.monotonic()
    read = partly = skipped = damaged = 0
    apply = _Apply(detector, marks, positions)
    reading = asyncio.ensure_future(store.transactions_after(start, until, REPLAY_CHUNK))
    # Before the server serves anything: the cyclic collector would scan the whole restored
    # state again and again for garbage the replay does not make (its objects die by
    # reference count), a quarter of the time at a million rows; and the flags need the
    # rules' score only, not their messages.
    collecting, explain = gc.isenabled(), detector.explain
    gc.disable()
    detector.explain = False
    try:
        while chunk := await reading:
            # The next chunk is read on the store's thread while this one is replayed.
            reading = asyncio.ensure_future(
                store.transactions_after(chunk[-1].position, until, REPLAY_CHUNK)
            )
            read += len(chunk)
            done = apply.chunk(chunk)
            partly += done.partly
            skipped += done.skipped
            damaged += done.damaged
    finally:
        reading.cancel()
        detector.explain = explain
        if collecting:
            gc.enable()
    seconds = time.monotonic() - started
    replayed = Replayed(read, partly, skipped, damaged, seconds, marks is None)
    log.info(
        "detector state: %s %d stored transactions in %.1f s (%.0f a second)%s",
        "rebuilt from" if replayed.rebuilt else "replayed",
        read,
        replayed.seconds,
        read / max(replayed.seconds, 1e-9),
        f"; held already by all their keys: {skipped}, by some: {partly}"
        if skipped or partly
        else "",
    )
    if damaged:
        log.error(
            "detector state: %d stored transactions could not be read back, not replayed "
            "(first at position %d)",
            damaged,
            apply.first_damaged,
        )
    return replayed


async def _positions(store: Store, marks: Marks) -> list[int | None]:
    """Each mark's position in the store: its last scored transaction's if that was
    stored, else its last stored one's; 0 when nothing stored was in the state; None when
    the store does not have it (the key is then left as restored: never counted twice)."""
    ids = {tx_id for mark in marks.marks for tx_id in mark if tx_id is not None}
    found = await store.transaction_positions(ids) if ids else {}
    out: list[int | None] = []
    for scored, stored in marks.marks:
        if scored is not None and scored in found:
            out.append(found[scored])
        elif stored is None:
            out.append(0)
        else:
            out.append(found.get(stored))
    return out


@dataclass(frozen=True, slots=True)
class _Done:
    partly: int
    skipped: int
    damaged: int


class _Apply:
    """Replays chunks in order, each transaction into the keys whose mark is before it."""

    def __init__(self, detector: Detector, marks: Marks | None, positions: list[int | None]):
        self.detector = detector
        self.positions = positions
        keys = marks.keys if marks is not None else {}
        self.accounts = keys.get("accounts", {})
        self.merchants = keys.get("merchants", {})
        self.devices = keys.get("devices", {})
        self.ips = keys.get("ips", {})
        self.flags = keys.get("account_flags", {})
        # The MCCs' running amounts (the end frame's) hold every transaction up to this.
        self.end = 0 if marks is None else marks.end
        self.mccs = marks is not None
        # Past every mark (all found), a transaction is new to all its keys: no lookups.
        found = [p for p in positions if p is not None]
        self.beyond = max(found) if len(found) == len(positions) else None
        self.first_damaged = 0

    def _before(self, keys: dict[str, int], key: str | None, position: int) -> bool:
        """Whether `key` holds the transaction at `position` already (or may: no mark)."""
        if key is None:
            return False
        mark = self.positions[keys.get(key, 0)]
        return mark is None or position <= mark

    def chunk(self, rows: list[StoredTransaction]) -> _Done:
        detector, beyond, before = self.detector, self.beyond, self._before
        partly = skipped = damaged = 0
        for position, raw in rows:
            try:
                tx = _decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                damaged += 1
                self.first_damaged = self.first_damaged or position
                continue
            t = tx.timestamp.timestamp()
            if beyond is not None and position > beyond:
                detector.relearn(tx, t)
                continue
            held = [
                kind
                for kind, keys, key in (
                    ("accounts", self.accounts, tx.account_id),
                    ("merchants", self.merchants, tx.merchant_id),
                    ("devices", self.devices, tx.device_id),
                    ("ips", self.ips, tx.ip),
                )
                if before(keys, key, position)
            ]
            if len(held) == 2 + (tx.device_id is not None) + (tx.ip is not None):
                skipped += 1  # every key holds it already
                continue
            # Scored before the end frame was encoded: the MCC's amounts and the stream's
            # scale hold it already.
            ended = self.mccs and self._mcc_holds(position)
            mcc = tx.mcc if ended else None
            kept = None if mcc is None else self._mcc_stats(mcc)
            scale = detector.featurizer.scale.state() if ended else None
            if not held:
                detector.relearn(tx, t, flags=not before(self.flags, tx.account_id, position))
            else:
                partly += 1
                detector.relearn(tx, t, held=held)
            if mcc is not None:
                self._put_mcc_stats(mcc, kept)
            if scale is not None:
                detector.featurizer.scale.put(scale)
        return _Done(partly, skipped, damaged)

    def _mcc_holds(self, position: int) -> bool:
        mark = self.positions[self.end]
        return mark is None or position <= mark

    def _mcc_stats(self, mcc: str) -> list[float] | None:
        stats = self.detector.featurizer.mcc_amounts.get(mcc)
        return None if stats is None else list(stats)

    def _put_mcc_stats(self, mcc: str, stats: list[float] | None) -> None:
        mccs = self.detector.featurizer.mcc_amounts
        if stats is None:
            mccs.pop(mcc, None)
        else:
            mccs[mcc] = stats
