"""Label changes into merchant risk and the amount's and the hour's fraud rates, in the
store's order, each once; and at start, the changes the restored detector snapshot had not
taken in.

The store logs every change of a transaction's label in the commit that makes it
(`Store.label_changes_after`). Merchant risk (`merchant_frauds_7d`, …) and the amount's fraud
rate take them in from that log, one reader at a time, strictly in its order: whoever
stored labels asks for a `catch_up` (on the event loop, between two of the detection loop's
batches, which own the featurizer) and it returns once their changes are in. So what has
been taken in is always a prefix of the log, one seq (`Progress.labels`) that each frame of
a snapshot records as it is encoded. Requests that store labels at once, or a read that
fails, never leave a hole behind that mark: a change is taken in after every one before it.
Order matters, not only membership: the amount's rate decays by event time from the last
label it saw, so two labels taken in the other way round leave other figures.

After a crash the snapshot is up to `state_snapshot_interval` behind the log. At start,
before the detection loop runs and after the transactions are replayed (state_replay.py),
the changes after its marks are applied in the log's order: to the amount's rate those after
the end frame's mark, to a merchant those after its frame's mark (after the header's for a
merchant the snapshot lacks). Each part of the state then holds every change once, in the
order a server that never stopped took them in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from decimal import Decimal

import msgspec

from server.detection.features import Featurizer
from server.detection.snapshot import LabelMarks, Progress, Restored
from server.store.base import LabelChange, Store

log = logging.getLogger(__name__)
CHUNK = 5_000
"""Changes read at a time (~1 MB)."""


class _Labelled(msgspec.Struct):
    """What a label change needs of its stored transaction."""

    merchant_id: str
    amount: Decimal
    timestamp: dt.datetime


_labelled = msgspec.json.Decoder(_Labelled)


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


class LabelChanges:
    """The one reader of the store's label changes into `featurizer`'s merchant risk and
    amount rate. `progress.labels`: every change up to it has been taken in."""

    def __init__(self, featurizer: Featurizer, store: Store, progress: Progress) -> None:
        self.featurizer = featurizer
        self.store = store
        self.progress = progress
        self._lock = asyncio.Lock()

    async def catch_up(self) -> set[str]:
        """Take in every change committed before this call and not taken in yet, with any
        committed meanwhile; raises what the store's read raises (the changes not read are
        taken in by the next call). Returns the ids of the changes' transactions whose
        stored row cannot be read (logged): those changes are passed over."""
        async with self._lock:
            damaged: set[str] = set()
            while changes := await self.store.label_changes_after(self.progress.labels, CHUNK):
                damaged |= self._apply(changes, None)
                if len(changes) < CHUNK:
                    break
            return damaged

    async def start(self, restored: Restored | None) -> None:
        """Before the detection loop runs: take in the changes the snapshot `restored` lacks
        (after a crash), or, with no snapshot or one without label marks, none (merchant
        risk starts from what the snapshot holds). Never raises: a failing store is logged
        and the changes not read are left out for good (never taken in twice later)."""
        marks = None if restored is None else restored.labels
        try:
            # (Should this read fail, the log is read from its start later: what it holds is
            # at most two snapshots' worth, new to a state with no marks in all but name.)
            last = await self.store.last_label_change()
            if marks is None:
                # None of the changes so far is in the state: nor is a label one replaces.
                self.progress.labels = self.progress.labels_from = last
                if restored is not None:
                    log.info(
                        "merchant risk: the snapshot has no label marks (an earlier version "
                        "wrote it); no label change replayed"
                    )
                return
            if marks.highest() > last:
                # The store never handed out that seq: the snapshot is of another database.
                # Its state is kept as restored; this store's changes from now on count.
                log.warning(
                    "merchant risk: the snapshot took in label changes up to %d, the store "
                    "has them up to %d (another database?): no label change replayed",
                    marks.highest(),
                    last,
                )
                self.progress.labels = self.progress.labels_from = last
                marks = None
                return
            self.progress.labels_from = marks.since
            await self._replay(marks)
        except Exception:
            log.exception("merchant risk: the label replay failed; it lacks what it had not read")
        finally:
            if marks is not None:
                # Past every mark: each later change is new to every part of the state.
                self.progress.labels = max(self.progress.labels, marks.highest())

    async def _replay(self, marks: LabelMarks) -> None:
        started = time.monotonic()
        self.progress.labels = marks.header
        read = 0
        async with self._lock:
            while changes := await self.store.label_changes_after(self.progress.labels, CHUNK):
                read += len(changes)
                self._apply(changes, marks)
                if len(changes) < CHUNK:
                    break
        if read:
            seconds = time.monotonic() - started
            log.info(
                "merchant risk: replayed %d label changes in %.1f s (%.0f a second)",
                read,
                seconds,
                read / max(seconds, 1e-9),
            )

    def _holds(self, seq: int | None) -> bool:
        """Whether the state took in the change `seq` (one a later change replaced), so that
        there is something to take back: not if it came before the state began taking them
        in (`Progress.labels_from`). A change whose seq is not known (stored before the
        store kept it) is taken to be in a state that has taken in every change."""
        since = self.progress.labels_from
        return since == 0 if seq is None else seq > since

    def _apply(self, changes: Sequence[LabelChange], marks: LabelMarks | None) -> set[str]:
        """Synchronously (a snapshot frame sees all of a chunk or none of it): each change,
        into the parts of the state whose mark is before it (all of them without `marks`);
        the label it replaced taken back first, and a withdrawal (no label) only that.
        Moves `progress.labels` past the chunk."""
        featurizer = self.featurizer
        damaged: dict[str, str] = {}
        for change in changes:
            raw = change.transaction
            if raw is None:
                continue  # pruned since: nothing of it is counted any more
            try:
                tx = _labelled.decode(raw)
            except msgspec.DecodeError as exc:
                damaged[change.transaction_id] = f"transaction_json unreadable: {exc}"
                continue
            # The amount's and the hour's rates are kept together (the snapshot's end frame).
            amount: float | None = float(tx.amount)
            hour: int | None = tx.timestamp.hour
            merchant = True
            if marks is not None:
                if change.seq <= marks.amounts:
                    amount = hour = None
                merchant = change.seq > marks.merchant(tx.merchant_id)
                if amount is None and not merchant:
                    continue
            if change.replaced is not None and self._holds(change.replaced_seq):
                was, was_at = change.replaced
                featurizer.unlearn_label(
                    tx.merchant_id, _stamp(was_at), was == "fraud", amount, hour, merchant=merchant
                )
            if change.label is None or change.labelled_at is None:
                continue  # withdrawn (an alert reopened): no label to count in its place
            featurizer.learn_label(
                tx.merchant_id,
                _stamp(change.labelled_at),
                change.label == "fraud",
                amount,
                hour,
                merchant=merchant,
            )
        self.progress.labels = changes[-1].seq
        for tx_id, problem in damaged.items():
            log.error("label of %s not taken in by merchant risk: %s", tx_id, problem)
        return set(damaged)
