"""The Store on one SQLite file: WAL, all writes on one writer thread, reads on a small pool."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, get_args

from server.detection.verdict import Verdict
from server.store import sqlite_reads as reads
from server.store.base import (
    LABELS,
    AccountPage,
    Alert,
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertStatus,
    ApiKey,
    AuditEntry,
    Disposition,
    EventListener,
    Found,
    FreePages,
    Label,
    LabelChange,
    LabelOutcome,
    LabelWithdrawal,
    ModelInputs,
    Note,
    Role,
    SessionRecord,
    StoredRecord,
    StoredTransaction,
    User,
    UserInfo,
)
from server.store.errors import StoreUnavailable
from server.store.sqlite_writer import WAL_RESTART_BYTES, Writer

T = TypeVar("T")
log = logging.getLogger(__name__)
CHECKPOINT_INTERVAL_S = 1.0

READERS = 4
PRUNE_CHUNK = 2_000
"""Rowids a pruning commit covers. Each holds the writer, and so the detection loop's next
batch commit: 44-48 ms for 2,000 on a 2-core machine at load ~4 (`benchmarks/vacuum.py
--transactions 50000`), against 91-93 ms for 5,000 and 17-24 ms for 1,000. The pass takes
the same ~1 s in all three; smaller commits leave a bigger WAL behind until the next
checkpoint (118 MiB here, 73 MiB for 5,000, 177 MiB for 1,000)."""
VACUUM_STEP_PAGES = 256
"""Free pages one `release_free_pages` commit gives back (1 MiB): 3.5-8.4 ms of the writer
(median) on a file with 97k pruned transactions (`benchmarks/vacuum.py`,
docs/operations.md)."""
_ROLES: frozenset[str] = frozenset(get_args(Role))
# Failures of the file, the disk or a lock held elsewhere: they say nothing about the data,
# so the caller keeps it and retries. Anything else (a constraint, a bug) is raised as is.
_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The StoreUnavailable this error means, or None if it is not about availability."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _UNAVAILABLE:
        return None
    return StoreUnavailable(f"{exc} ({exc.sqlite_errorname})")


class SqliteStore:
    """The Store for one server process on one SQLite file.

    Writes are jobs for a single thread that owns the write connection, so they are serialised
    and seq follows commit order. Reads run on a few threads with their own connections, which
    WAL lets proceed while a write is in progress. The event loop only waits on futures.
    """

    def __init__(
        self, path: Path, *, readers: int = READERS, busy_timeout: float = reads.BUSY_TIMEOUT_S
    ) -> None:
        self._path = path
        self._readers = readers
        self._busy_timeout = busy_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._writer: Writer | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        self._closed = False
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self.damaged = reads.DamagedRows()
        """The damaged rows logged, each once (then at DEBUG), whichever thread met it."""
        self.wal_restarts = 0
        """Checkpoints run on the writer's thread that copied the whole WAL (it then starts
        over at the next commit)."""

    async def start(self, on_events: EventListener) -> None:
        """Open, migrate, and from now on call `on_events` (on the event loop, in commit order)
        with every committed alert event. Raises migrations.SchemaError for a database written
        by a newer fraudwatch."""
        if self._loop is not None:
            raise RuntimeError("SqliteStore.start() was already called")
        loop = self._loop = asyncio.get_running_loop()
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._read_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="store-reader")
        try:
            self._writer = await loop.run_in_executor(
                self._write_pool,
                Writer.open,
                self._path,
                loop,
                on_events,
                self._busy_timeout,
                self.damaged,
            )
        except BaseException:
            # aiohttp runs a cleanup only if its startup finished: leave no thread behind.
            await self.close()
            raise
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="store-checkpointer", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database every second, beside the writer, never blocking it
        (PASSIVE). The WAL starts over only when a checkpoint has copied all of it, which one
        running beside a busy writer never does: commits land while it runs. So once the WAL
        outgrows `WAL_RESTART_BYTES`, the writer's thread runs the next checkpoint itself,
        between two writes, after this one has copied all but the last second's pages."""
        conn = reads.connect(self._path)
        wal = self._path.with_name(self._path.name + "-wal")
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    # A full disk or a lock held elsewhere: the WAL keeps the data meanwhile.
                    log.warning("WAL checkpoint failed (%s); retrying", exc)
                    continue
                if _size(wal) > WAL_RESTART_BYTES:
                    self._checkpoint_on_writer()
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("final WAL checkpoint failed (%s); the next start replays it", exc)
        finally:
            conn.close()

    def _checkpoint_on_writer(self) -> None:
        """`Writer.checkpoint` as the writer's next job, waited for (on the checkpointer's
        thread, never the loop's): batch writes queue behind it for its few milliseconds."""
        writer, pool = self._writer, self._write_pool
        if self._closed or writer is None or pool is None:
            return
        try:
            busy, frames, copied = pool.submit(writer.checkpoint).result()
        except (RuntimeError, sqlite3.Error) as exc:  # the pool or connection closing
            if not self._closed:
                log.warning("WAL checkpoint on the writer failed (%s); retrying", exc)
            return
        self.wal_restarts += not busy and frames == copied

    async def close(self) -> None:
        """Finish the writes already submitted, then close every connection and thread."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            # The writer's queue is FIFO: this runs after every write submitted before it.
            await asyncio.get_running_loop().run_in_executor(self._write_pool, self._writer.close)
        # Joining threads blocks, so not on the loop.
        await asyncio.to_thread(self._shut_down_threads)

    def _shut_down_threads(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        for pool in (self._write_pool, self._read_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        with self._read_conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    async def _write(self, job: Callable[[Writer], T]) -> T:
        """Raises StoreUnavailable when a lock, the disk or the file stops the write."""
        if self._closed or self._writer is None or self._loop is None:
            raise RuntimeError("SqliteStore is not open")
        try:
            return await self._loop.run_in_executor(self._write_pool, job, self._writer)
        except sqlite3.Error as exc:
            if (unavailable := _unavailable(exc)) is not None:
                raise unavailable from exc
            raise

    async def _read(
        self, query: Callable[[sqlite3.Connection], T], *, handles_not_text: bool = False
    ) -> T:
        """Raises StoreUnavailable when a lock, the disk or the file stops the read. A
        `query` that copes with TEXT read as `reads.NotText` (leaving its row out with
        `reads.readable`, or taking it as unreadable) says so with `handles_not_text`: a
        value that is not UTF-8 then costs only its row, not the whole read."""
        if self._closed or self._loop is None:
            raise RuntimeError("SqliteStore is not open")
        try:
            return await self._loop.run_in_executor(
                self._read_pool, self._run_query, query, handles_not_text
            )
        except sqlite3.Error as exc:
            if (unavailable := _unavailable(exc)) is not None:
                raise unavailable from exc
            raise

    def _run_query(self, query: Callable[[sqlite3.Connection], T], lenient: bool) -> T:
        """On a reader thread: run `query` on this thread's own connection. sqlite3 decodes
        TEXT in C, and raises on bytes that are not UTF-8, failing the query; a `lenient`
        one then runs again reading such values as `reads.NotText`, for `reads.readable`
        to leave their rows out. Only then: a text factory of ours on every read would
        call Python for every TEXT value of the hot paths."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = reads.connect(self._path, self.damaged)
            conn.execute("PRAGMA query_only = ON")
            with self._read_conns_lock:
                self._read_conns.append(conn)
            self._local.conn = conn
        try:
            try:
                return query(conn)
            except sqlite3.OperationalError as exc:
                if not (lenient and reads.not_utf8(exc)):
                    raise
            # Again outside the except block: the failed cursor is released with the
            # exception before the connection reads again.
            conn.text_factory = reads.text_or_not
            try:
                return query(conn)
            finally:
                conn.text_factory = str
        except BaseException as exc:
            # A query that raised while iterating its rows (a row it could not decode) leaves
            # its cursor open, referenced from the traceback: as long as anything keeps the
            # exception (a log handler, an error reporter), this connection would read from
            # that snapshot and the WAL could not be checkpointed past it. Clearing the
            # finished frames' locals lets the cursor go (the traceback still prints every
            # line), and closing then finalizes the statement: closed with a statement
            # still alive, the connection would linger open (sqlite3_close_v2) and a final
            # checkpoint wait `BUSY_TIMEOUT_S` for it. The next read on this thread opens
            # a fresh connection.
            traceback.clear_frames(exc.__traceback__)
            with self._read_conns_lock:
                self._read_conns.remove(conn)
            del self._local.conn
            conn.close()
            raise

    async def known_verdicts(self, transaction_ids: Collection[str]) -> dict[str, Verdict]:
        """The stored verdicts of those ids that were already accepted."""
        if not transaction_ids:
            return {}
        return await self._read(
            lambda conn: reads.known_verdicts(conn, transaction_ids), handles_not_text=True
        )

    async def event_times(self, transaction_ids: Collection[str]) -> dict[str, int]:
        """For those ids already accepted: the timestamp, µs since the Unix epoch."""
        if not transaction_ids:
            return {}
        return await self._read(lambda conn: reads.event_times(conn, transaction_ids))

    async def known_transactions(
        self, transaction_ids: Collection[str]
    ) -> Found[tuple[Verdict, bytes]]:
        """For those ids already accepted: the stored verdict and transaction JSON; and the
        ids whose row cannot be read back."""
        if not transaction_ids:
            return Found({}, {})
        return await self._read(
            lambda conn: reads.known_transactions(conn, transaction_ids), handles_not_text=True
        )

    async def transaction_positions(self, transaction_ids: Collection[str]) -> dict[str, int]:
        """For those ids stored: the rowid, which follows commit order. A row gets one more
        than the largest rowid there when it is inserted; once the largest is pruned its
        number may be given again, but only to a row inserted later, which then still
        stands after every row that remains."""
        if not transaction_ids:
            return {}
        return await self._read(lambda conn: reads.transaction_positions(conn, transaction_ids))

    async def last_position(self) -> tuple[int, str] | None:
        """The rowid and id of the transaction stored last; None while there is none."""
        return await self._read(reads.last_position)

    async def position_since(self, received_since: str, at_most: int) -> int:
        """The rowid after which stand the transactions received at or after
        `received_since`, but no more than the `at_most` stored last."""
        return await self._read(lambda conn: reads.position_since(conn, received_since, at_most))

    async def transactions_after(
        self, position: int, until: int, limit: int
    ) -> list[StoredTransaction]:
        """Up to `limit` transactions with a rowid in (`position`, `until`], in rowid order."""
        return await self._read(
            lambda conn: reads.transactions_after(conn, position, until, limit),
            handles_not_text=True,
        )

    async def prune_transactions(self, received_before: str, chunk: int = PRUNE_CHUNK) -> int:
        """Delete the transactions received before `received_before` that raised no alert,
        with their labels, `chunk` rowids a commit (the detection loop's batches go in
        between); how many were deleted. The freed pages stay in the file, reused by later
        writes, until `release_free_pages` gives them back."""
        start, stop = await self._read(lambda conn: reads.prunable_rowids(conn, received_before))
        deleted = 0
        while start < stop:
            end = min(start + chunk, stop)
            deleted += await self._write(_prune(start, end, received_before))
            start = end
        return deleted

    async def release_free_pages(self, pages: int = VACUUM_STEP_PAGES) -> FreePages | None:
        """`PRAGMA incremental_vacuum(pages)` in one commit: the file's last pages move into
        free ones and the file is cut short at the next checkpoint. None for a file created
        without `auto_vacuum = INCREMENTAL` (fraudwatch sets it on new files only; one
        offline `VACUUM` converts an older one, see docs/operations.md)."""
        return await self._write(lambda writer: writer.release_free_pages(pages))

    async def model_inputs(self, transaction_ids: Collection[str]) -> Found[ModelInputs]:
        """The stored model inputs of those ids that have them; and the ids whose inputs
        cannot be read back."""
        if not transaction_ids:
            return Found({}, {})
        return await self._read(
            lambda conn: reads.model_inputs(conn, transaction_ids), handles_not_text=True
        )

    async def write_batch(self, records: Sequence[StoredRecord]) -> list[AlertEvent]:
        """Persist a batch in one transaction: every transaction with its verdict, and an alert
        (with its `alert` event) for every verdict that has an `alert_id`.

        An id already stored, or repeated in the batch, keeps its first verdict and gets no
        second alert. `on_events` runs before this returns.
        """
        if not records:
            return []
        return await self._write(lambda writer: writer.write_batch(records))

    async def acknowledge(self, alert_id: str, user: str) -> AlertEvent | None:
        """Make `user` the owner of an open alert; None if they already own it.
        Raises AlertNotFound, or AlertConflict naming the current owner. Durable on return."""
        return await self._write(lambda writer: writer.acknowledge(alert_id, user))

    async def resolve(
        self, alert_id: str, user: str, disposition: Disposition, note: str | None
    ) -> AlertEvent:
        """Close an open alert, or one acknowledged by `user`. Durable on return.
        Raises AlertNotFound, or AlertConflict when resolved or owned by someone else."""
        event, _ = await self.resolve_labelled(alert_id, user, disposition, note)
        return event

    async def resolve_labelled(
        self, alert_id: str, user: str, disposition: Disposition, note: str | None
    ) -> tuple[AlertEvent, LabelOutcome | None]:
        """`resolve`, and what storing the label did (None: the disposition is no label):
        `unchanged` when the transaction already had that label, which is then not to be
        learnt again."""
        if not isinstance(disposition, str) or not disposition:
            # Which names are allowed is the API's (a setting); the store only needs a name.
            raise ValueError("disposition must be a non-empty string")
        return await self._write(lambda writer: writer.resolve(alert_id, user, disposition, note))

    async def unacknowledge(
        self, alert_id: str, user: str, *, force: bool = False
    ) -> AlertEvent | None:
        """Give an acknowledged alert back to the queue; None if it is already open. Only its
        owner may, unless `force`. Raises AlertNotFound or AlertConflict. Durable on return."""
        return await self._write(lambda writer: writer.unacknowledge(alert_id, user, force))

    async def assign(
        self, alert_id: str, user: str, owner: str, *, force: bool = False
    ) -> AlertEvent | None:
        """Make `owner` hold an unresolved alert; None if they already do. Raises
        InvalidAssignee, AlertNotFound or AlertConflict. Durable on return."""
        return await self._write(lambda writer: writer.assign(alert_id, user, owner, force))

    async def reopen(self, alert_id: str, user: str, note: str | None) -> AlertEvent:
        """Put a resolved alert back in the queue, withdrawing the label its resolution
        gave (`reopen_labelled`). Durable on return."""
        event, _ = await self.reopen_labelled(alert_id, user, note)
        return event

    async def reopen_labelled(
        self, alert_id: str, user: str, note: str | None
    ) -> tuple[AlertEvent, LabelWithdrawal | None]:
        """`reopen`, and the label it withdrew (None: none; see `Store.reopen_labelled`)."""
        return await self._write(lambda writer: writer.reopen(alert_id, user, note))

    async def add_note(self, alert_id: str, user: str, text: str) -> tuple[Note, AlertEvent]:
        """Append a note, as an alert_updated event. Durable on return."""
        return await self._write(lambda writer: writer.add_note(alert_id, user, text))

    async def claim_next(self, user: str) -> AlertEvent | None:
        """Take the most urgent open unowned alert for `user`; None if there is none."""
        return await self._write(lambda writer: writer.claim_next(user))

    async def account_transactions(
        self, account_id: str, limit: int, cursor: str | None
    ) -> AccountPage:
        """Newest event time first. Raises InvalidCursor for a malformed cursor."""
        return await self._read(
            lambda conn: reads.account_transactions(conn, account_id, limit, cursor),
            handles_not_text=True,
        )

    async def notes(self, alert_id: str) -> list[Note]:
        return await self._read(lambda conn: reads.notes(conn, alert_id), handles_not_text=True)

    async def open_summary(self) -> dict[str, object]:
        """Unresolved alerts by severity; created_at of the oldest open one (or None)."""
        return await self._read(reads.open_summary)

    async def get_alert(self, alert_id: str) -> Alert | None:
        return await self._read(lambda conn: reads.alert(conn, alert_id))

    async def add_labels(self, labels: Sequence[Label]) -> list[LabelOutcome]:
        """Store labels in one durable transaction, one outcome each, in order: `created`,
        `unchanged` (a re-send), `updated` (the latest wins) or `not_found`."""
        if not labels:
            return []
        for label in labels:
            if label.label not in LABELS:
                raise ValueError(f"label must be one of {sorted(LABELS)}")
        return await self._write(lambda writer: writer.add_labels(labels))

    async def get_labels(self, transaction_ids: Collection[str]) -> dict[str, Label]:
        if not transaction_ids:
            return {}
        return await self._read(
            lambda conn: reads.labels(conn, transaction_ids), handles_not_text=True
        )

    async def recent_labels(self, limit: int) -> list[Label]:
        return await self._read(
            lambda conn: reads.recent_labels(conn, limit), handles_not_text=True
        )

    async def label_changes_after(self, seq: int, limit: int) -> list[LabelChange]:
        return await self._read(
            lambda conn: reads.label_changes_after(conn, seq, limit), handles_not_text=True
        )

    async def last_label_change(self) -> int:
        return await self._read(reads.last_label_change)

    async def prune_label_changes(self, through: int) -> int:
        return await self._write(lambda writer: writer.prune_label_changes(through))

    async def list_alerts(
        self,
        statuses: Collection[AlertStatus] | None,
        limit: int,
        cursor: str | None,
        where: AlertFilter | None = None,
    ) -> AlertPage:
        """Newest first (by created_at, then id), filtered to `statuses` when given; `cursor`
        is opaque and comes from the previous page's next_cursor. Read in one snapshot.
        Raises ValueError for a limit below 1 or an unknown status, InvalidCursor for a
        malformed cursor."""
        return await self._read(
            lambda conn: reads.alert_page(conn, statuses, limit, cursor, where),
            handles_not_text=True,
        )

    async def events_since(self, seq: int, limit: int) -> list[AlertEvent]:
        """Events with seq > `seq`, oldest first, at most `limit` and fewer only when there
        are no more: an event that cannot be read back is left out, and the page reads on."""
        return await self._read(
            lambda conn: reads.events_since(conn, seq, limit), handles_not_text=True
        )

    async def last_seq(self) -> int:
        return await self._read(reads.last_seq)

    async def audit_log(self, alert_id: str) -> list[AuditEntry]:
        return await self._read(lambda conn: reads.audit_log(conn, alert_id), handles_not_text=True)

    async def add_user(self, name: str, password_hash: str, role: Role) -> None:
        """Create or replace a user. Durable on return."""
        if role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}")
        await self._write(lambda writer: writer.add_user(name, password_hash, role))

    async def get_user(self, name: str) -> User | None:
        return await self._read(lambda conn: reads.user(conn, name))

    async def list_users(self) -> list[UserInfo]:
        return await self._read(reads.users)

    async def delete_user(self, name: str) -> bool:
        """Remove a user and revoke their sessions. Durable on return."""
        return await self._write(lambda writer: writer.delete_user(name))

    async def add_api_key(self, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        """Store a new key; raises NameTaken if the name was ever used. Durable on return."""
        await self._write(lambda writer: writer.add_api_key(name, key_hash, scopes))

    async def revoke_api_key(self, name: str) -> bool:
        """Mark a key revoked; False if no live key has that name. Durable on return."""
        return await self._write(lambda writer: writer.revoke_api_key(name))

    async def list_api_keys(self) -> list[ApiKey]:
        return await self._read(reads.api_keys)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._read(lambda conn: reads.api_key_by_hash(conn, key_hash))

    async def touch_api_key(self, name: str) -> None:
        await self._write(lambda writer: writer.touch_api_key(name))

    async def add_session(self, id_hash: str, user: str, expires_at: int) -> None:
        now = int(time.time())
        await self._write(lambda writer: writer.add_session(id_hash, user, expires_at, now))

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        return await self._read(lambda conn: reads.session(conn, id_hash))

    async def revoke_session(self, id_hash: str) -> None:
        """Durable on return: a logout survives a crash."""
        await self._write(lambda writer: writer.revoke_session(id_hash))


def _prune(start: int, stop: int, received_before: str) -> Callable[[Writer], int]:
    return lambda writer: writer.prune_range(start, stop, received_before)
