"""The SQLite write connection and every write made with it, confined to the writer thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple, cast

import msgspec

from server.store import sqlite_reads as reads
from server.store.base import (
    LABELS,
    Alert,
    AlertConflict,
    AlertEvent,
    AlertNotFound,
    Disposition,
    EventListener,
    FreePages,
    InvalidAssignee,
    Label,
    LabelOutcome,
    LabelValue,
    LabelWithdrawal,
    NameTaken,
    Note,
    Role,
    StoredRecord,
    utc_stamp,
)
from server.store.errors import DatabaseUnusable, StoredRowDamaged
from server.store.migrations import migrate
from server.store.sqlite_rows import encode_verdict, pack_inputs
from server.transactions import encode_transaction

# Random transaction ids make every batch touch ~1000 scattered leaves of the primary-key
# index; a 64 MiB page cache keeps them hot (writer CPU per 1000-row batch at 300k rows
# ~20 ms -> ~14 ms in benchmarks/store.py).
log = logging.getLogger(__name__)
CACHE_KIB = 64 * 1024
NEXT_SKIP_MAX = 100
"""Damaged alerts `next` passes over in one request before it gives up and says so."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
WAL_RESTART_BYTES = WAL_SIZE_LIMIT
"""A WAL over this gets a checkpoint on the writer's thread (`Writer.checkpoint`), so that
it starts over. The checkpointer thread's own checkpoints run beside the writer and, with
commits landing every few milliseconds, never find the WAL whole: it only ever grew (800 MiB
in 40 s of 1,700 transactions a second in 20-row batches)."""
_AUTO_VACUUM_INCREMENTAL = 2  # what `PRAGMA auto_vacuum` reads for INCREMENTAL

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class _NewAlert(NamedTuple):
    """An alert a batch raises, as its row is written."""

    alert: Alert
    snapshot: str  # its JSON
    merchant_id: str  # its own column, for searches (migration 10); in the JSON it is Raw
    event_time_us: int  # its transaction's, for event-time ranges (migration 13)


_encode = reads.encoder.encode

_INSERT_TRANSACTION = (
    "INSERT OR IGNORE INTO transactions (id, account_id, event_time_us, amount, currency, "
    "transaction_json, verdict_json, alert_id, received_at, model_layout, model_inputs, "
    "model_packing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PRUNABLE = (
    "SELECT rowid, id FROM transactions WHERE rowid >= ? AND rowid < ? AND received_at < ? "
    "AND alert_id IS NULL"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (id, transaction_id, account_id, merchant_id, event_time_us, status, "
    "severity, owner, created_at, updated_at, alert_json) "
    "VALUES (?, ?, ?, ?, ?, 'open', ?, NULL, ?, ?, ?)"
)
# OR IGNORE: an alert whose reasons name one rule twice is that rule's once.
_INSERT_REASON = "INSERT OR IGNORE INTO alert_reasons (code, created_at, alert_id) VALUES (?, ?, ?)"
_INSERT_EVENT = "INSERT INTO events (seq, type, alert_id, alert_json) VALUES (?, ?, ?, ?)"
_UPDATE_ALERT = (
    "UPDATE alerts SET status = ?, owner = ?, updated_at = ?, alert_json = ? "
    "WHERE id = ? AND status = ?"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (at, actor, action, alert_id, detail_json) VALUES (?, ?, ?, ?, ?)"
)
_UPSERT_USER = (
    "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, "
    "role = excluded.role, updated_at = excluded.updated_at"
)
_INSERT_NOTE = "INSERT INTO notes (alert_id, author, at, text) VALUES (?, ?, ?, ?)"
# The work queue's order: severity, then oldest; alerts raised in the same millisecond keep
# the order of their transactions (as the dashboard sorts them).
_NEXT_UNOWNED = (
    "SELECT a.id FROM alerts a JOIN transactions t ON t.id = a.transaction_id "
    "WHERE a.status = 'open' AND a.owner IS NULL "
    "AND a.id NOT IN (SELECT value FROM json_each(?)) ORDER BY "
    "CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, "
    "a.created_at, t.event_time_us, a.id LIMIT 1"
)
_TRIAGE_ROLES = ("analyst", "admin")
_INSERT_API_KEY = "INSERT INTO api_keys (name, key_hash, scopes, created_at) VALUES (?, ?, ?, ?)"
_UPSERT_LABEL = (
    "INSERT INTO labels (transaction_id, label, source, labelled_at, received_at, scenario, "
    "change_seq) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE SET "
    "label = excluded.label, source = excluded.source, labelled_at = excluded.labelled_at, "
    "received_at = excluded.received_at, scenario = excluded.scenario, "
    "change_seq = excluded.change_seq"
)
_INSERT_LABEL_CHANGE = (
    "INSERT INTO label_changes (transaction_id, label, labelled_at, replaced_label, replaced_at, "
    "replaced_seq) VALUES (?, ?, ?, ?, ?, ?)"
)
_LABEL_ROW = (
    "SELECT label, source, labelled_at, received_at, scenario FROM labels WHERE transaction_id = ?"
)
_INSERT_RESOLUTION_LABEL = (
    "INSERT OR REPLACE INTO resolution_labels (alert_id, transaction_id, change_seq, was_label, "
    "was_source, was_labelled_at, was_received_at, was_scenario) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SESSION = "INSERT INTO sessions (id_hash, user, created_at, expires_at) VALUES (?, ?, ?, ?)"


class Writer:
    """Owns the write connection. Every method must run on the one writer thread: that is
    what serialises writes, and what makes seq order and commit order the same."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        on_events: EventListener,
        incremental_vacuum: bool = False,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._on_events = on_events
        self._layouts: dict[str, int] = {}  # input_layouts, as committed
        # Whether the file gives pages back on `PRAGMA incremental_vacuum` (its auto_vacuum).
        self.incremental_vacuum = incremental_vacuum

    @classmethod
    def open(
        cls,
        path: Path,
        loop: asyncio.AbstractEventLoop,
        on_events: EventListener,
        busy_timeout: float = reads.BUSY_TIMEOUT_S,
        damaged: reads.DamagedRows | None = None,
    ) -> Writer:
        """Create the file if needed, switch it to WAL and migrate it. `busy_timeout`: how long
        a write waits for a lock another process holds before it fails (and is retried)."""
        # Private: the database holds password hashes, sessions and customers' transactions.
        # A data dir fraudwatch creates is 0700 and a database file it creates 0600 (the WAL
        # and shared-memory files take the database's mode); existing ones keep theirs.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not path.exists()
        conn = reads.connect(path, damaged)
        if created:
            os.chmod(path, 0o600)
        try:
            conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
            # Pages freed by deletions (retention) can then be given back to the file system
            # while running (`release_free_pages`). It only takes on a file with no table
            # yet, and before journal_mode (which writes the new file's header); on an older
            # file it changes nothing until an offline VACUUM (docs/operations.md).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise RuntimeError(f"Database {path} cannot use WAL (journal_mode is {mode})")
            # NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power
            # loss can undo the last few. Analyst actions are made durable by _durable().
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            # Checkpoints fsync the WAL and the database (~120 ms measured): inside a commit
            # that stalls the whole detection loop. SqliteStore runs them on its own thread.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            # The WAL file keeps the size of its busiest second (a retention pass's deletions
            # wrote ~200 MiB of it for 100k transactions): cut it back to this when it restarts.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            migrate(conn)
            (auto_vacuum,) = conn.execute("PRAGMA auto_vacuum").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locks, disk, permissions: the surroundings, not the file
            raise DatabaseUnusable(
                f"Database {path} cannot be opened: {exc} (another file under that name, or "
                "a damaged one; restore it from a backup, docs/operations.md#backup-and-restore)"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, loop, on_events, auto_vacuum == _AUTO_VACUUM_INCREMENTAL)

    def close(self) -> None:
        try:
            # SQLite recommends this before closing a long-lived connection: it refreshes the
            # query planner's statistics where they have drifted. The limit keeps it quick on
            # a large database.
            with suppress(sqlite3.Error):  # only an optimisation; the store may be failing
                self._conn.execute("PRAGMA analysis_limit = 400")
                self._conn.execute("PRAGMA optimize")
        finally:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: what we read inside cannot change before
        # we write, even if another process opens the same file.
        if self._conn.in_transaction:
            # Left open by a rollback that failed (full disk, I/O error): end it first.
            self._conn.execute("ROLLBACK")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                # After a full disk or an I/O error the rollback can fail too; the error to
                # report is the first one (the next transaction retries the rollback).
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _durable(self) -> Iterator[None]:
        # FULL syncs the WAL at commit, so the change is on disk when the caller answers the
        # analyst. The pragma cannot change inside a transaction, hence around it.
        self._conn.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            self._conn.execute("PRAGMA synchronous = NORMAL")

    def _publish(self, events: list[AlertEvent]) -> None:
        if events:
            # Callbacks scheduled this way run FIFO, and this one thread commits in seq order:
            # so on_events sees seq order. It also runs before the caller's await returns.
            self._loop.call_soon_threadsafe(self._on_events, list(events))

    def write_batch(self, records: Sequence[StoredRecord]) -> list[AlertEvent]:
        if len({record.transaction.id for record in records}) != len(records):
            records = _first_of_each_id(records)
        now = utc_stamp()
        # Encode before BEGIN: the write lock is held only while SQLite itself works.
        tx_rows, alerts = _encode_batch(records, now, self._layout_id)
        with self._transaction() as conn:
            if alerts:
                # A transaction stored by an earlier batch keeps its first verdict (INSERT OR
                # IGNORE below) and must not get a second alert.
                stored = reads.stored_verdicts(conn, [n.alert.transaction_id for n in alerts])
                alerts = [n for n in alerts if n.alert.transaction_id not in stored]
            conn.executemany(_INSERT_TRANSACTION, tx_rows)
            events = self._insert_alerts(alerts, now) if alerts else []
        self._publish(events)
        return events

    def prune_range(self, start: int, stop: int, received_before: str) -> int:
        """Delete the transactions with rowid in [start, stop) received before
        `received_before` that raised no alert, and their labels, in one commit."""
        with self._transaction() as conn:
            doomed = conn.execute(_PRUNABLE, (start, stop, received_before)).fetchall()
            if not doomed:
                return 0
            ids = reads.encoder.encode([tx_id for _, tx_id in doomed]).decode()
            for table in ("labels", "label_changes"):
                conn.execute(
                    f"DELETE FROM {table} WHERE transaction_id IN (SELECT value FROM json_each(?))",
                    (ids,),
                )
            rowids = reads.encoder.encode([rowid for rowid, _ in doomed]).decode()
            conn.execute(
                "DELETE FROM transactions WHERE rowid IN (SELECT value FROM json_each(?))",
                (rowids,),
            )
        return len(doomed)

    def checkpoint(self) -> tuple[int, int, int]:
        """A PASSIVE checkpoint on the writer's own connection, between two writes: with no
        commit landing while it runs it can copy the whole WAL in, and the next commit then
        starts the WAL over (if no reader still reads from it) instead of appending to it.
        `SqliteStore` asks for one when the WAL has outgrown `WAL_RESTART_BYTES`. Returns
        SQLite's (busy, frames in the WAL, frames copied)."""
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(copied)

    def release_free_pages(self, pages: int) -> FreePages | None:
        """Move up to `pages` of the file's last pages into free ones, in one commit; the file
        is cut short when the checkpoint copies that commit in. None without incremental
        auto-vacuum, where the pragma would do nothing."""
        if not self.incremental_vacuum:
            return None
        with self._transaction() as conn:
            (before,) = conn.execute("PRAGMA freelist_count").fetchone()
            # A page an execution: the pragma frees one page a step of its statement, and the
            # sqlite3 module takes a statement with no result columns one step only.
            for _ in range(min(pages, before)):
                conn.execute("PRAGMA incremental_vacuum(1)")
            (after,) = conn.execute("PRAGMA freelist_count").fetchone()
        return FreePages(released=before - after, left=after)

    def _layout_id(self, layout: str) -> int:
        """The id of an inputs layout, registered (in its own commit) the first time this
        process writes it: once per feature set, so one small integer per row names it."""
        found = self._layouts.get(layout)
        if found is not None:
            return found
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO input_layouts (layout) VALUES (?)", (layout,))
            (found,) = conn.execute(
                "SELECT id FROM input_layouts WHERE layout = ?", (layout,)
            ).fetchone()
        # Cached once committed: a rolled-back id would name no row.
        self._layouts[layout] = found
        return int(found)

    def _insert_alerts(self, alerts: list[_NewAlert], now: str) -> list[AlertEvent]:
        self._conn.executemany(
            _INSERT_ALERT,
            [
                (a.id, a.transaction_id, a.account_id, merchant, event, a.severity, now, now, json)
                for a, json, merchant, event in alerts
            ],
        )
        self._conn.executemany(
            _INSERT_REASON, [(r.code, now, a.id) for a, *_ in alerts for r in a.reasons]
        )
        # Read inside the write transaction rather than counted in memory: always right,
        # even after a rolled-back batch, for one lookup in a one-row table.
        first = reads.last_seq(self._conn) + 1
        self._conn.executemany(
            _INSERT_EVENT,
            [(first + i, "alert", a.id, snapshot) for i, (a, snapshot, *_) in enumerate(alerts)],
        )
        return [
            AlertEvent(seq=first + i, type="alert", alert=a) for i, (a, *_) in enumerate(alerts)
        ]

    def acknowledge(self, alert_id: str, user: str) -> AlertEvent | None:
        with self._durable(), self._transaction():
            current = self._current(alert_id)
            if current.status == "acknowledged" and current.owner == user:
                return None
            if current.status != "open":
                raise AlertConflict(_conflict_message(current), current)
            changed = msgspec.structs.replace(
                current, status="acknowledged", owner=user, updated_at=utc_stamp()
            )
            event = self._change(current, changed, user, "acknowledge", {})
        self._publish([event])
        return event

    def resolve(
        self, alert_id: str, user: str, disposition: Disposition, note: str | None
    ) -> tuple[AlertEvent, LabelOutcome | None]:
        with self._durable(), self._transaction():
            current = self._current(alert_id)
            if current.status == "resolved" or (
                current.status == "acknowledged" and current.owner != user
            ):
                raise AlertConflict(_conflict_message(current), current)
            changed = msgspec.structs.replace(
                current,
                status="resolved",
                owner=user,
                disposition=disposition,
                note=note,
                updated_at=utc_stamp(),
            )
            detail: dict[str, object] = {"disposition": disposition, "note": note}
            event = self._change(current, changed, user, "resolve", detail)
            # The analyst's decision is a label too, in the same commit as the resolution;
            # other dispositions (a duplicate) say nothing about fraud.
            outcome = None
            if disposition in LABELS:
                label = Label(
                    transaction_id=current.transaction_id,
                    label=cast(LabelValue, disposition),
                    source=f"analyst:{user}",
                    labelled_at=changed.updated_at,
                )
                was = self._conn.execute(_LABEL_ROW, (current.transaction_id,)).fetchone()
                (outcome,) = self._store_labels([label], changed.updated_at)
                if outcome.status in ("created", "updated"):
                    # What a reopen needs to take this label back: the change that set it,
                    # and the label it replaced, whole (source, receipt and all).
                    (seq,) = self._conn.execute(
                        "SELECT change_seq FROM labels WHERE transaction_id = ?",
                        (current.transaction_id,),
                    ).fetchone()
                    self._conn.execute(
                        _INSERT_RESOLUTION_LABEL,
                        (alert_id, current.transaction_id, seq, *(was or (None,) * 5)),
                    )
        self._publish([event])
        return event, outcome

    def add_labels(self, labels: Sequence[Label]) -> list[LabelOutcome]:
        with self._durable(), self._transaction() as conn:
            outcomes = self._store_labels(labels, utc_stamp())
            # A label sent for a transaction an analyst's resolution labelled, the same
            # label (`unchanged`) or another, makes the label the sender's too: reopening
            # that alert no longer withdraws it. (One `not_found` has no alert, nor a row.)
            conn.execute(
                "DELETE FROM resolution_labels "
                "WHERE transaction_id IN (SELECT value FROM json_each(?))",
                (_encode([label.transaction_id for label in labels]).decode(),),
            )
            return outcomes

    def _store_labels(self, labels: Sequence[Label], now: str) -> list[LabelOutcome]:
        """In the caller's transaction: one outcome per label, in order."""
        conn = self._conn
        ids = _encode(list({label.transaction_id for label in labels})).decode()
        accounts = dict(
            conn.execute(
                "SELECT id, account_id FROM transactions "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            ).fetchall()
        )
        current = {
            tx_id: (label, at, seq)
            for tx_id, label, at, seq in conn.execute(
                "SELECT transaction_id, label, labelled_at, change_seq FROM labels "
                "WHERE transaction_id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
        }
        outcomes: list[LabelOutcome] = []
        for label in labels:
            tx_id = label.transaction_id
            account = accounts.get(tx_id)
            if account is None:
                outcomes.append(LabelOutcome("not_found", None))
                continue
            before = current.get(tx_id)
            if before is not None and before[0] == label.label:
                outcomes.append(LabelOutcome("unchanged", account))
                continue
            # In the same commit: the change merchant risk takes in, and a restart after a
            # crash finds if the detector's snapshot had not (server/label_changes.py).
            was, was_at, was_seq = (None, None, None) if before is None else before
            seq = conn.execute(
                _INSERT_LABEL_CHANGE, (tx_id, label.label, label.labelled_at, was, was_at, was_seq)
            ).lastrowid
            conn.execute(
                _UPSERT_LABEL,
                (tx_id, label.label, label.source, label.labelled_at, now, label.scenario, seq),
            )
            current[tx_id] = (label.label, label.labelled_at, seq)
            outcomes.append(
                LabelOutcome("created", account)
                if before is None
                else LabelOutcome("updated", account, (before[0], before[1]))
            )
        return outcomes

    def prune_label_changes(self, through: int) -> int:
        with self._transaction() as conn:
            # The newest stays: `last_label_change` then tells a snapshot of another
            # database (marks beyond it) at start, whatever was pruned.
            return conn.execute(
                "DELETE FROM label_changes WHERE seq <= ? "
                "AND seq < (SELECT max(seq) FROM label_changes)",
                (through,),
            ).rowcount

    def unacknowledge(self, alert_id: str, user: str, force: bool) -> AlertEvent | None:
        with self._durable(), self._transaction():
            current = self._current(alert_id)
            if current.status == "open":
                return None
            if current.status == "resolved" or (current.owner != user and not force):
                raise AlertConflict(_conflict_message(current), current)
            changed = msgspec.structs.replace(
                current, status="open", owner=None, updated_at=utc_stamp()
            )
            event = self._change(current, changed, user, "unacknowledge", {"from": current.owner})
        self._publish([event])
        return event

    def assign(self, alert_id: str, user: str, owner: str, force: bool) -> AlertEvent | None:
        with self._durable(), self._transaction() as conn:
            assignee = reads.user(conn, owner)
            if assignee is None or assignee.role not in _TRIAGE_ROLES:
                raise InvalidAssignee(f"{owner!r} is not an analyst or admin")
            current = self._current(alert_id)
            if current.status == "acknowledged" and current.owner == owner:
                return None
            if current.status == "resolved" or (
                current.status == "acknowledged" and current.owner != user and not force
            ):
                raise AlertConflict(_conflict_message(current), current)
            changed = msgspec.structs.replace(
                current, status="acknowledged", owner=owner, updated_at=utc_stamp()
            )
            detail: dict[str, object] = {"from": current.owner, "to": owner}
            event = self._change(current, changed, user, "assign", detail)
        self._publish([event])
        return event

    def reopen(
        self, alert_id: str, user: str, note: str | None
    ) -> tuple[AlertEvent, LabelWithdrawal | None]:
        with self._durable(), self._transaction():
            current = self._current(alert_id)
            if current.status != "resolved":
                raise AlertConflict(
                    f"Alert {alert_id} is not resolved (it is {current.status})", current
                )
            changed = msgspec.structs.replace(
                current,
                status="open",
                owner=None,
                disposition=None,
                note=None,
                updated_at=utc_stamp(),
            )
            withdrawal = self._withdraw_resolution_label(alert_id)
            detail: dict[str, object] = {
                "disposition": current.disposition,
                "resolved_by": current.owner,
                "note": note,
                "label_withdrawn": None if withdrawal is None else withdrawal.withdrawn[0],
                "label_restored": None
                if withdrawal is None or withdrawal.restored is None
                else withdrawal.restored.label,
            }
            event = self._change(current, changed, user, "reopen", detail)
        self._publish([event])
        return event, withdrawal

    def _withdraw_resolution_label(self, alert_id: str) -> LabelWithdrawal | None:
        """In the caller's transaction: take back the label the alert's resolution gave, if
        it is still the transaction's (the labels row was set by that resolution's change),
        putting back the label it replaced, or none; logged as a label change."""
        conn = self._conn
        found = conn.execute(
            "DELETE FROM resolution_labels WHERE alert_id = ? RETURNING transaction_id, "
            "change_seq, was_label, was_source, was_labelled_at, was_received_at, was_scenario",
            (alert_id,),
        ).fetchall()  # all: a RETURNING statement left unfinished would stay open
        if not found:
            return None
        ((tx_id, seq, was, was_source, was_at, was_received, was_scenario),) = found
        now = conn.execute(
            "SELECT label, labelled_at FROM labels WHERE transaction_id = ? AND change_seq = ?",
            (tx_id, seq),
        ).fetchone()
        if now is None:
            return None  # another label replaced it since (a chargeback): that one stays
        label, labelled_at = now
        change = conn.execute(
            _INSERT_LABEL_CHANGE, (tx_id, was, was_at, label, labelled_at, seq)
        ).lastrowid
        if was is None:
            conn.execute("DELETE FROM labels WHERE transaction_id = ?", (tx_id,))
            restored = None
        else:
            conn.execute(
                _UPSERT_LABEL, (tx_id, was, was_source, was_at, was_received, was_scenario, change)
            )
            restored = Label(
                transaction_id=tx_id,
                label=was,
                source=was_source,
                labelled_at=was_at,
                scenario=was_scenario,
            )
        return LabelWithdrawal(tx_id, (label, labelled_at), restored)

    def add_note(self, alert_id: str, user: str, text: str) -> tuple[Note, AlertEvent]:
        with self._durable(), self._transaction() as conn:
            current = self._current(alert_id)
            now = utc_stamp()
            cursor = conn.execute(_INSERT_NOTE, (alert_id, user, now, text))
            note = Note(
                id=int(cursor.lastrowid or 0), alert_id=alert_id, author=user, at=now, text=text
            )
            changed = msgspec.structs.replace(current, updated_at=now)
            event = self._change(current, changed, user, "note", {"note_id": note.id, "text": text})
        self._publish([event])
        return note, event

    def claim_next(self, user: str) -> AlertEvent | None:
        # One write transaction picks and takes the alert: two analysts asking at once get
        # two different alerts, never the same one.
        with self._durable(), self._transaction() as conn:
            current = self._next_readable(conn)
            if current is None:
                return None
            changed = msgspec.structs.replace(
                current, status="acknowledged", owner=user, updated_at=utc_stamp()
            )
            event = self._change(current, changed, user, "acknowledge", {"via": "next"})
        self._publish([event])
        return event

    def _next_readable(self, conn: sqlite3.Connection) -> Alert | None:
        """The head of the work queue, passing over alerts whose stored row cannot be read
        (each logged): one damaged alert must not stop every analyst's `next` until someone
        repairs it. Past NEXT_SKIP_MAX of them in a row, the last one's error is raised."""
        skipped: list[str] = []
        while True:
            row = conn.execute(_NEXT_UNOWNED, (json.dumps(skipped),)).fetchone()
            if row is None:
                return None
            try:
                return reads.alert(conn, row[0])
            except StoredRowDamaged as exc:
                if len(skipped) >= NEXT_SKIP_MAX:
                    raise
                # Every analyst's `next` meets it until it is repaired: logged once.
                level = reads.damaged_level(conn, "next", row[0], logging.ERROR)
                log.log(
                    level, "next: passed over %s, which cannot be read: %s", exc.what, exc.problem
                )
                skipped.append(row[0])

    def add_user(self, name: str, password_hash: str, role: Role) -> None:
        now = utc_stamp()
        with self._durable(), self._transaction() as conn:
            conn.execute(_UPSERT_USER, (name, password_hash, role, now, now))

    def delete_user(self, name: str) -> bool:
        now = utc_stamp()
        with self._durable(), self._transaction() as conn:
            sql = "UPDATE sessions SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL"
            conn.execute(sql, (now, name))
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 1

    def add_api_key(self, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        with self._durable(), self._transaction() as conn:
            try:
                conn.execute(_INSERT_API_KEY, (name, key_hash, ",".join(scopes), utc_stamp()))
            except sqlite3.IntegrityError:
                sql = "SELECT revoked_at FROM api_keys WHERE name = ?"
                row = conn.execute(sql, (name,)).fetchone()
                if row is not None and row[0] is not None:
                    # `keys list` shows it revoked: "already exists" read as a contradiction.
                    raise NameTaken(
                        f"the name {name!r} belongs to a key revoked at {row[0]}, and names "
                        "are not reused (the audit trail keeps them apart): choose another"
                    ) from None
                raise NameTaken(f"an API key named {name!r} already exists") from None

    def revoke_api_key(self, name: str) -> bool:
        with self._durable(), self._transaction() as conn:
            sql = "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL"
            return conn.execute(sql, (utc_stamp(), name)).rowcount == 1

    def touch_api_key(self, name: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE name = ?", (utc_stamp(), name))

    def add_session(self, id_hash: str, user: str, expires_at: int, now: int) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            conn.execute(_INSERT_SESSION, (id_hash, user, utc_stamp(), expires_at))

    def revoke_session(self, id_hash: str) -> None:
        # Durable: a logout must not come back to life after a crash.
        with self._durable(), self._transaction() as conn:
            sql = "UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL"
            conn.execute(sql, (utc_stamp(), id_hash))

    def _current(self, alert_id: str) -> Alert:
        current = reads.alert(self._conn, alert_id)
        if current is None:
            raise AlertNotFound(f"Alert {alert_id} does not exist")
        return current

    def _change(
        self, current: Alert, changed: Alert, actor: str, action: str, detail: dict[str, object]
    ) -> AlertEvent:
        """Write the new snapshot, its event and the audit row, in the caller's transaction."""
        snapshot = _encode(changed).decode()
        # The status guard is redundant under the write lock, and kept so that a lost race
        # can never be applied whatever changes around this code.
        values = (changed.status, changed.owner, changed.updated_at, snapshot)
        updated = self._conn.execute(_UPDATE_ALERT, (*values, changed.id, current.status)).rowcount
        if updated != 1:
            raise AlertConflict(f"Alert {changed.id} changed while it was being updated", current)
        seq = reads.last_seq(self._conn) + 1
        self._conn.execute(_INSERT_EVENT, (seq, "alert_updated", changed.id, snapshot))
        self._conn.execute(
            _INSERT_AUDIT,
            (changed.updated_at, actor, action, changed.id, _encode(detail).decode()),
        )
        return AlertEvent(seq=seq, type="alert_updated", alert=changed)


def _encode_batch(
    records: Sequence[StoredRecord], now: str, layout_id: Callable[[str], int]
) -> tuple[list[tuple[Any, ...]], list[_NewAlert]]:
    """The transactions table's rows, and each new alert with its JSON snapshot."""
    tx_rows: list[tuple[Any, ...]] = []
    alerts: list[_NewAlert] = []
    for tx, verdict, severity, received_at, model_inputs in records:
        tx_json = encode_transaction(tx)
        if model_inputs is None:
            layout = inputs = packing = None
        else:
            layout = layout_id(model_inputs[0])
            packing, inputs = pack_inputs(model_inputs[1])
        event_us = (tx.timestamp - _EPOCH) // _MICROSECOND
        tx_rows.append(
            (
                tx.id,
                tx.account_id,
                event_us,
                format(tx.amount, "f"),  # never exponent notation such as 1E+2
                tx.currency,
                tx_json.decode(),
                encode_verdict(verdict),
                verdict.alert_id,
                now,
                layout,
                inputs,
                packing,
            )
        )
        if verdict.alert_id is not None:
            alert = Alert(
                id=verdict.alert_id,
                status="open",
                severity=severity,
                score=verdict.score,
                decision=verdict.decision,
                reasons=verdict.reasons,
                transaction=msgspec.Raw(tx_json),
                transaction_id=tx.id,
                account_id=tx.account_id,
                rules_version=verdict.rules_version,
                owner=None,
                disposition=None,
                note=None,
                created_at=now,
                updated_at=now,
                received_at=received_at,
            )
            alerts.append(_NewAlert(alert, _encode(alert).decode(), tx.merchant_id, event_us))
    return tx_rows, alerts


def _first_of_each_id(records: Sequence[StoredRecord]) -> list[StoredRecord]:
    seen: set[str] = set()
    unique: list[StoredRecord] = []
    for record in records:
        if record.transaction.id not in seen:
            seen.add(record.transaction.id)
            unique.append(record)
    return unique


def _conflict_message(alert: Alert) -> str:
    # "Alert a1 is already acknowledged by alice" / "... already resolved by bob"
    return f"Alert {alert.id} is already {alert.status} by {alert.owner}"
