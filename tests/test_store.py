"""Tests for the SQLite store, on real database files."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import sqlite3
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from server.detection.verdict import Reason, Severity, Verdict
from server.store.base import (
    AlertConflict,
    AlertEvent,
    AlertFilter,
    AlertNotFound,
    AlertStatus,
    Label,
    StoredRecord,
)
from server.store.errors import StoredRowDamaged
from server.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaError,
    migrate,
    schema_version,
)
from server.store.sqlite import SqliteStore
from server.store.sqlite_reads import DamagedRows
from server.store.sqlite_rows import pack_inputs, unpack_inputs
from server.transactions import Transaction, encode_transaction

T0 = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)


def make_record(
    n: int,
    *,
    alert: bool = False,
    severity: Severity = "high",
    account: str = "acct-1",
    amount: str = "12.50",
    alert_id: str | None = None,
    score: float | None = None,
) -> StoredRecord:
    """Transaction tx-<n>; with `alert`, a verdict that raises alert al-<n>."""
    tx = Transaction(
        id=f"tx-{n:05d}",
        timestamp=T0 + dt.timedelta(seconds=n),
        account_id=account,
        merchant_id="m-1",
        amount=Decimal(amount),
        currency="USD",
        country="US",
    )
    reasons = [Reason("velocity", "6 payments in 5 minutes", 6.0, 5.0, 0.4)] if alert else []
    verdict = Verdict(
        transaction_id=tx.id,
        score=score if score is not None else (0.9 if alert else 0.1),
        decision="review" if alert else "allow",
        reasons=reasons,
        alert_id=(alert_id or f"al-{n:05d}") if alert else None,
        rules_version="rules-1",
        latency_ms=0.2,
    )
    return StoredRecord(tx, verdict, severity if alert else "low")


async def open_alerts(store: SqliteStore) -> int:
    """Alerts not yet resolved, as the dashboard's summary counts them."""
    summary = await store.open_summary()
    by_severity = summary["by_severity"]
    assert isinstance(by_severity, dict)
    return sum(by_severity.values())


def make_batch(first: int, size: int, *, alert_every: int = 3) -> list[StoredRecord]:
    return [make_record(n, alert=n % alert_every == 0) for n in range(first, first + size)]


class Recorder:
    """The on_events listener: remembers what it got, and where it ran."""

    def __init__(self) -> None:
        self.batches: list[list[AlertEvent]] = []
        self.off_loop_calls = 0

    def __call__(self, events: list[AlertEvent]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.off_loop_calls += 1
        if threading.current_thread() is not threading.main_thread():
            self.off_loop_calls += 1
        self.batches.append(events)

    @property
    def seqs(self) -> list[int]:
        return [event.seq for batch in self.batches for event in batch]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A directory that does not exist yet, as for a fresh data_dir.
    return tmp_path / "data" / "fraudwatch.db"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def store(db_path: Path, recorder: Recorder) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path)
    await store.start(recorder)
    yield store
    await store.close()


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        yield conn


async def test_database_is_created_in_wal_mode(store: SqliteStore, db_path: Path) -> None:
    assert await asyncio.to_thread(db_path.exists)
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_batch_round_trip(store: SqliteStore, recorder: Recorder, db_path: Path) -> None:
    records = make_batch(0, 10)  # alerts on 0, 3, 6, 9
    records[3] = make_record(3, alert=True, severity="critical", amount="1E+2")
    events = await store.write_batch(records)

    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert {e.type for e in events} == {"alert"}
    assert [e.alert.id for e in events] == ["al-00000", "al-00003", "al-00006", "al-00009"]
    assert recorder.batches == [events]

    alert = await store.get_alert("al-00003")
    assert alert == events[1].alert
    assert alert is not None
    tx, verdict, *_ = records[3]
    assert alert.status == "open"
    assert alert.severity == "critical"
    assert (alert.score, alert.decision, alert.reasons) == (0.9, "review", verdict.reasons)
    assert (alert.transaction_id, alert.account_id, alert.rules_version) == (
        tx.id,
        "acct-1",
        "rules-1",
    )
    assert (alert.owner, alert.disposition, alert.note) == (None, None, None)
    assert alert.created_at == alert.updated_at
    assert dt.datetime.fromisoformat(alert.created_at).tzinfo == dt.UTC
    assert len(alert.created_at) == len("2026-01-31T12:00:00.000Z")
    assert bytes(alert.transaction) == encode_transaction(tx)
    assert msgspec.json.decode(alert.transaction, type=Transaction) == tx

    stored = await store.known_verdicts(["tx-00001", "tx-00003", "tx-99999"])
    assert stored == {"tx-00001": records[1].verdict, "tx-00003": verdict}
    assert await store.events_since(0, 100) == events
    assert await store.last_seq() == 4
    assert await open_alerts(store) == 4
    assert await store.get_alert("al-00001") is None

    with raw(db_path) as conn:
        row = conn.execute(
            "SELECT account_id, event_time_us, amount, currency, alert_id, received_at "
            "FROM transactions WHERE id = 'tx-00003'"
        ).fetchone()
        assert conn.execute("SELECT count(*) FROM transactions").fetchone()[0] == 10
    expected_us = int(tx.timestamp.timestamp()) * 1_000_000
    assert row == ("acct-1", expected_us, "100", "USD", "al-00003", alert.created_at)


async def test_batch_without_alerts_publishes_nothing(
    store: SqliteStore, recorder: Recorder
) -> None:
    assert await store.write_batch([make_record(n) for n in range(5)]) == []
    assert await store.write_batch([]) == []
    await asyncio.sleep(0)
    assert recorder.batches == []
    assert await store.last_seq() == 0


async def test_seq_follows_commit_order_and_reaches_listener_in_order(
    store: SqliteStore, recorder: Recorder
) -> None:
    await store.write_batch(make_batch(0, 30))  # 10 alerts: al-00000, al-00003, ...
    writes = [store.write_batch(make_batch(100 * i, 30)) for i in range(1, 6)]
    acks = [store.acknowledge(f"al-{n:05d}", "alice") for n in (0, 3, 6)]
    resolves = [store.resolve(f"al-{n:05d}", "bob", "fraud", None) for n in (9, 12)]
    # Both gathers start their tasks at once: batches and updates race for the writer.
    batches = asyncio.gather(*writes)
    updates = asyncio.gather(*acks, *resolves)
    returned = [e.seq for batch in await batches for e in batch]
    returned += [e.seq for e in await updates if e is not None]

    assert sorted(returned) == list(range(11, 11 + 50 + 5))
    assert recorder.seqs == list(range(1, 11 + 50 + 5))
    assert recorder.off_loop_calls == 0
    assert [e.seq for e in await store.events_since(0, 1000)] == recorder.seqs


async def test_listener_has_the_events_when_write_returns(
    store: SqliteStore, recorder: Recorder
) -> None:
    events = await store.write_batch([make_record(1, alert=True)])
    assert recorder.batches == [events]
    event = await store.acknowledge("al-00001", "alice")
    assert recorder.batches[-1] == [event]


async def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.start(Recorder())
    await first.write_batch(make_batch(0, 9))  # alerts al-00000, al-00003, al-00006
    await first.acknowledge("al-00000", "alice")
    await first.acknowledge("al-00003", "alice")
    await first.resolve("al-00003", "alice", "legitimate", "known customer")
    await first.add_user("alice", "argon2-hash", "analyst")
    before = (
        await first.events_since(0, 100),
        await first.audit_log("al-00003"),
        await first.list_alerts(None, 100, None),
    )
    await first.close()

    second = SqliteStore(db_path)
    recorder = Recorder()
    await second.start(recorder)
    try:
        assert await second.events_since(0, 100) == before[0]
        assert await second.audit_log("al-00003") == before[1]
        assert await second.list_alerts(None, 100, None) == before[2]
        assert await second.last_seq() == 6
        acked = await second.get_alert("al-00000")
        resolved = await second.get_alert("al-00003")
        assert acked is not None and (acked.status, acked.owner) == ("acknowledged", "alice")
        assert resolved is not None
        assert (resolved.status, resolved.disposition, resolved.note) == (
            "resolved",
            "legitimate",
            "known customer",
        )
        user = await second.get_user("alice")
        assert user is not None and (user.password_hash, user.role) == ("argon2-hash", "analyst")
        assert set(await second.known_verdicts([f"tx-{n:05d}" for n in range(9)])) == {
            f"tx-{n:05d}" for n in range(9)
        }
        assert await open_alerts(second) == 2
        # seq carries on from the file, not from zero.
        events = await second.write_batch([make_record(100, alert=True)])
        assert [e.seq for e in events] == [7]
    finally:
        await second.close()


async def test_close_finishes_pending_writes(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.start(Recorder())
    pending = [asyncio.create_task(store.write_batch(make_batch(i * 10, 10))) for i in range(5)]
    await asyncio.sleep(0)  # let the tasks hand their batches to the writer thread
    await store.close()
    assert all(task.done() for task in pending)
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM transactions").fetchone()[0] == 50


async def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.start(Recorder())
    await store.close()
    await store.close()  # twice is harmless
    with pytest.raises(RuntimeError):
        await store.write_batch([make_record(1)])
    with pytest.raises(RuntimeError):
        await store.last_seq()


async def test_acknowledge_race_has_exactly_one_winner(
    store: SqliteStore, recorder: Recorder
) -> None:
    await store.write_batch([make_record(1, alert=True)])
    users = [f"analyst-{i}" for i in range(20)]
    results = await asyncio.gather(
        *(store.acknowledge("al-00001", user) for user in users), return_exceptions=True
    )

    wins = [r for r in results if isinstance(r, AlertEvent)]
    conflicts = [r for r in results if isinstance(r, AlertConflict)]
    assert len(wins) == 1 and len(conflicts) == 19
    winner = wins[0].alert.owner
    assert winner in users
    for conflict in conflicts:
        assert str(conflict) == f"Alert al-00001 is already acknowledged by {winner}"
        assert conflict.alert == wins[0].alert
    assert [e.action for e in await store.audit_log("al-00001")] == ["acknowledge"]
    assert recorder.seqs == [1, 2]


async def test_acknowledge_race_between_two_stores_on_one_file(
    store: SqliteStore, db_path: Path
) -> None:
    # As if a second process opened the same file: the write lock decides, not the thread.
    other = SqliteStore(db_path)
    await other.start(Recorder())
    try:
        await store.write_batch([make_record(1, alert=True)])
        results = await asyncio.gather(
            *(
                (store if i % 2 else other).acknowledge("al-00001", f"analyst-{i}")
                for i in range(20)
            ),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, AlertEvent)]
        assert len(wins) == 1
        assert all(isinstance(r, AlertConflict) for r in results if r is not wins[0])
        assert [e.seq for e in await other.events_since(0, 10)] == [1, 2]
    finally:
        await other.close()


async def test_acknowledge_twice_by_the_owner_changes_nothing(
    store: SqliteStore, recorder: Recorder
) -> None:
    await store.write_batch([make_record(1, alert=True)])
    first = await store.acknowledge("al-00001", "alice")
    assert first is not None
    assert (first.type, first.alert.status, first.alert.owner) == (
        "alert_updated",
        "acknowledged",
        "alice",
    )
    assert first.alert.updated_at >= first.alert.created_at
    assert await store.acknowledge("al-00001", "alice") is None
    assert recorder.seqs == [1, 2]
    assert len(await store.audit_log("al-00001")) == 1
    assert await store.get_alert("al-00001") == first.alert


async def test_unknown_alert(store: SqliteStore) -> None:
    with pytest.raises(AlertNotFound):
        await store.acknowledge("al-nope", "alice")
    with pytest.raises(AlertNotFound):
        await store.resolve("al-nope", "alice", "fraud", None)


async def test_resolve_rules(store: SqliteStore) -> None:
    await store.write_batch([make_record(n, alert=True) for n in range(1, 4)])

    # Open: anyone may resolve, and becomes the owner.
    event = await store.resolve("al-00001", "carol", "fraud", "card reported stolen")
    assert (event.type, event.alert.status, event.alert.owner) == (
        "alert_updated",
        "resolved",
        "carol",
    )
    assert (event.alert.disposition, event.alert.note) == ("fraud", "card reported stolen")
    assert await store.get_alert("al-00001") == event.alert

    # Resolved: no second resolution, no acknowledgement.
    with pytest.raises(AlertConflict, match="Alert al-00001 is already resolved by carol"):
        await store.resolve("al-00001", "carol", "legitimate", None)
    with pytest.raises(AlertConflict, match="already resolved by carol"):
        await store.acknowledge("al-00001", "dave")

    # Acknowledged: only the owner may resolve.
    await store.acknowledge("al-00002", "alice")
    with pytest.raises(AlertConflict, match="already acknowledged by alice") as caught:
        await store.resolve("al-00002", "bob", "fraud", None)
    assert caught.value.alert.owner == "alice"
    unchanged = await store.get_alert("al-00002")
    assert unchanged is not None and unchanged.status == "acknowledged"
    own = await store.resolve("al-00002", "alice", "legitimate", None)
    assert (own.alert.status, own.alert.owner, own.alert.note) == ("resolved", "alice", None)

    # Which names are allowed is a setting the API checks; the store refuses only a non-name,
    # which would make the alert undecodable.
    with pytest.raises(ValueError, match="disposition"):
        await store.resolve("al-00003", "alice", "", None)

    audit = await store.audit_log("al-00002")
    assert [(a.actor, a.action, a.alert_id) for a in audit] == [
        ("alice", "acknowledge", "al-00002"),
        ("alice", "resolve", "al-00002"),
    ]
    assert audit[1].detail == {"disposition": "legitimate", "note": None}
    assert audit[1].at == own.alert.updated_at
    assert (await store.audit_log("al-00001"))[0].detail == {
        "disposition": "fraud",
        "note": "card reported stolen",
    }
    assert await open_alerts(store) == 1


async def _all_pages(
    store: SqliteStore, statuses: list[AlertStatus] | None, limit: int
) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_alerts(statuses, limit, cursor)
        assert len(page.alerts) <= limit
        ids += [a.id for a in page.alerts]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def test_pagination_covers_every_alert_once(store: SqliteStore) -> None:
    created: list[AlertEvent] = []
    for i in range(4):  # 4 batches of 15 alerts: ties on created_at within each
        created += await store.write_batch(make_batch(100 * i, 45))
    for event in created[:30:3]:
        await store.acknowledge(event.alert.id, "alice")
    for event in created[::6]:
        await store.resolve(event.alert.id, "alice", "fraud", None)
    alerts = {a.id: a for a in (await store.list_alerts(None, 1000, None)).alerts}
    assert len(alerts) == 60

    def expected(statuses: set[str]) -> list[str]:
        chosen = [a for a in alerts.values() if a.status in statuses]
        return [a.id for a in sorted(chosen, key=lambda a: (a.created_at, a.id), reverse=True)]

    everything = await _all_pages(store, None, 7)
    assert everything == expected({"open", "acknowledged", "resolved"})
    filters: list[list[AlertStatus]] = [
        ["open"],
        ["acknowledged"],
        ["open", "acknowledged"],
        ["resolved", "open"],
    ]
    assert all(expected(set(statuses)) for statuses in filters)  # no empty case hides a bug
    for statuses in filters:
        for limit in (1, 4, 60, 61):
            assert await _all_pages(store, statuses, limit) == expected(set(statuses))
    assert await _all_pages(store, [], 5) == []

    # New alerts arriving between pages land before the first page, not in later ones.
    page = await store.list_alerts(None, 10, None)
    await store.write_batch(make_batch(1000, 30))
    rest = page.next_cursor
    assert rest is not None
    later: list[str] = []
    while rest is not None:
        next_page = await store.list_alerts(None, 10, rest)
        later += [a.id for a in next_page.alerts]
        rest = next_page.next_cursor
    assert [a.id for a in page.alerts] + later == everything


async def test_list_alerts_rejects_bad_arguments(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.list_alerts(None, 10, "not a cursor!")
    with pytest.raises(ValueError, match="limit"):
        await store.list_alerts(None, 0, None)
    with pytest.raises(ValueError, match="status"):
        await store.list_alerts(["closed"], 10, None)  # type: ignore[list-item]


async def test_page_seq_is_read_with_the_alerts(store: SqliteStore) -> None:
    """A client that loads a page and resumes from its seq ends up with the full state."""

    async def keep_writing() -> None:
        for i in range(30):
            await store.write_batch(make_batch(1000 + 10 * i, 10, alert_every=2))
            if i % 3 == 0:
                await store.acknowledge(f"al-{1000 + 10 * i:05d}", "alice")

    writer = asyncio.create_task(keep_writing())
    pages = []
    while not writer.done():
        pages.append(await store.list_alerts(None, 10_000, None))
        await asyncio.sleep(0)
    await writer
    assert len(pages) > 1
    for page in pages:
        events = await store.events_since(0, 10_000)
        state = {e.alert.id: e.alert for e in events if e.seq <= page.seq}
        assert {a.id: a for a in page.alerts} == state
    last = pages[-1]
    missed = await store.events_since(last.seq, 10_000)
    assert [e.seq for e in missed] == list(range(last.seq + 1, await store.last_seq() + 1))


async def test_events_since(store: SqliteStore) -> None:
    events = await store.write_batch(make_batch(0, 30))
    assert len(events) == 10
    assert await store.events_since(2, 3) == events[2:5]
    assert await store.events_since(-5, 2) == events[:2]
    assert await store.events_since(10, 100) == []
    with pytest.raises(ValueError):
        await store.events_since(0, 0)


async def test_duplicate_transaction_ids_are_ignored(store: SqliteStore) -> None:
    first = await store.write_batch([make_record(1, alert=True, score=0.7)])
    again = [
        make_record(1, alert=True, alert_id="al-second", score=0.99),
        make_record(2, alert=True),
        make_record(2, alert=True, alert_id="al-twin"),  # repeated within one batch
        make_record(3),
    ]
    events = await store.write_batch(again)

    assert [e.alert.id for e in events] == ["al-00002"]
    verdicts = await store.known_verdicts(["tx-00001", "tx-00002", "tx-00003"])
    assert (verdicts["tx-00001"].score, verdicts["tx-00001"].alert_id) == (0.7, "al-00001")
    assert await store.get_alert("al-00001") == first[0].alert
    assert verdicts["tx-00002"].alert_id == "al-00002"
    assert await store.get_alert("al-second") is None
    assert await store.get_alert("al-twin") is None
    assert await open_alerts(store) == 2
    assert await store.last_seq() == 2


async def test_users(store: SqliteStore) -> None:
    assert await store.get_user("alice") is None
    await store.add_user("alice", "hash-1", "analyst")
    await store.add_user("alice", "hash-2", "admin")
    user = await store.get_user("alice")
    assert user is not None and (user.name, user.password_hash, user.role) == (
        "alice",
        "hash-2",
        "admin",
    )
    with pytest.raises(ValueError, match="role"):
        await store.add_user("bob", "hash", "root")  # type: ignore[arg-type]


async def test_known_verdicts_of_a_large_batch(store: SqliteStore) -> None:
    await store.write_batch(make_batch(0, 2500, alert_every=10**6))
    ids = [f"tx-{n:05d}" for n in range(0, 5000, 2)]
    verdicts = await store.known_verdicts(ids)
    assert sorted(verdicts) == ids[:1250]
    assert await store.known_verdicts([]) == {}


def test_migration_versions_are_increasing() -> None:
    # Not consecutive while branches own numbers: 3 lands from the detection branch.
    versions = [m.version for m in MIGRATIONS]
    assert versions[0] == 1
    assert versions == sorted(set(versions))


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


async def test_migrating_a_current_database_is_a_no_op(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.start(Recorder())
    await store.write_batch([make_record(1, alert=True)])
    await store.close()
    with raw(db_path) as conn:
        schema = _schema(conn)
        applied = conn.execute("SELECT * FROM schema_migrations").fetchall()
        assert [version for version, _ in applied] == [m.version for m in MIGRATIONS]
        assert migrate(conn) == []
        assert _schema(conn) == schema
        assert conn.execute("SELECT * FROM schema_migrations").fetchall() == applied
    reopened = SqliteStore(db_path)
    await reopened.start(Recorder())
    assert await reopened.get_alert("al-00001") is not None
    await reopened.close()


def test_pending_migrations_are_applied_once(tmp_path: Path) -> None:
    with raw(tmp_path / "db") as conn:
        assert migrate(conn) == [m.version for m in MIGRATIONS]
        step = Migration(LATEST_VERSION + 1, "an extra table", ("CREATE TABLE extra (x INTEGER)",))
        assert migrate(conn, (*MIGRATIONS, step)) == [LATEST_VERSION + 1]
        assert migrate(conn, (*MIGRATIONS, step)) == []
        assert schema_version(conn) == LATEST_VERSION + 1


def test_an_upgrade_says_each_step_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A step that fills in a column from every stored alert took 18 s on a million alerts,
    # before the server listened, and nothing said why.
    caplog.set_level(logging.DEBUG, logger="server.store.migrations")
    path = tmp_path / "db"
    with raw(path) as conn:
        migrate(conn)
        # A new database's steps are not news: DEBUG only.
        assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
        assert any("Schema step 1 (" in r.getMessage() for r in caplog.records)
        caplog.clear()
        step = Migration(LATEST_VERSION + 1, "an extra table", ("CREATE TABLE extra (x INTEGER)",))
        migrate(conn, (*MIGRATIONS, step))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert said[0] == (
        f"Database {path}: schema version {LATEST_VERSION} -> {LATEST_VERSION + 1}, "
        "1 step(s), in one transaction"
    )
    assert said[1].startswith(f"Schema step {LATEST_VERSION + 1} (an extra table) done in ")
    assert said[2].startswith("Schema upgrade committed: ")
    assert len(said) == 3


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    with raw(tmp_path / "db") as conn:
        migrate(conn)
        schema = _schema(conn)
        step = Migration(
            LATEST_VERSION + 1, "broken", ("CREATE TABLE extra (x INTEGER)", "CREATE TABLE (")
        )
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, step))
        assert not conn.in_transaction
        assert _schema(conn) == schema
        assert schema_version(conn) == LATEST_VERSION


async def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.start(Recorder())
    await store.close()
    with raw(db_path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, '2099-01-01T00:00:00+00:00')")

    newer = SqliteStore(db_path)
    with pytest.raises(SchemaError, match="schema version 99") as caught:
        await newer.start(Recorder())
    assert str(db_path) in str(caught.value)
    assert "upgrade fraudwatch" in str(caught.value)
    await newer.close()  # start() already cleaned up; closing again is harmless
    assert not [t for t in threading.enumerate() if t.name.startswith("store-")]


async def test_close_checkpoints_the_wal_away(tmp_path: Path) -> None:
    # Checkpoints run on their own thread, off the commit path; on close the WAL is folded
    # into the database and truncated, so a stopped server leaves one self-contained file.
    path = tmp_path / "fw.db"
    store = SqliteStore(path)
    await store.start(lambda _events: None)
    for i in range(5):
        await store.write_batch([make_record(i * 200 + j) for j in range(200)])
    assert Path(f"{path}-wal").stat().st_size > 0
    await store.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_lower_numbered_step_merged_later_still_runs_once(tmp_path: Path) -> None:
    # Branches own migration numbers: a database at 4 must still get 3 when it lands.
    with raw(tmp_path / "db") as conn:
        first = [m for m in MIGRATIONS if m.version != 3]
        migrate(conn, first)
        step = Migration(3, "from another branch", ("CREATE TABLE branch (x INTEGER)",))
        merged = sorted([*first, step], key=lambda m: m.version)
        assert migrate(conn, merged) == [3]
        assert migrate(conn, merged) == []
        assert conn.execute("SELECT count(*) FROM branch").fetchone() == (0,)


# --- labels ---------------------------------------------------------------------------------


def label(n: int, value: str = "fraud", source: str = "api:test", **extra: object) -> Label:
    return Label(
        transaction_id=f"tx-{n:05d}",
        label=value,  # type: ignore[arg-type]
        source=source,
        labelled_at="2026-02-07T12:00:00Z",
        **extra,  # type: ignore[arg-type]
    )


async def test_labels_are_stored_once_and_report_what_they_did(
    store: SqliteStore, db_path: Path
) -> None:
    await store.write_batch(make_batch(0, 5))
    outcomes = await store.add_labels([label(1), label(2, "legitimate"), label(99)])
    assert [o.status for o in outcomes] == ["created", "created", "not_found"]
    assert [o.account_id for o in outcomes] == ["acct-1", "acct-1", None]

    # A re-send changes nothing; a different label for the same transaction replaces it.
    again = await store.add_labels([label(1, source="api:other"), label(2, "fraud")])
    assert [o.status for o in again] == ["unchanged", "updated"]
    # An update names what it replaced, for what was learnt from it to be taken back.
    assert [o.replaced for o in again] == [None, ("legitimate", "2026-02-07T12:00:00Z")]
    stored = await store.get_labels(["tx-00001", "tx-00002", "tx-00099"])
    assert set(stored) == {"tx-00001", "tx-00002"}
    assert stored["tx-00001"].source == "api:test"  # the first of two equal labels stays
    assert stored["tx-00002"].label == "fraud"
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM labels").fetchone() == (2,)
        # Nothing was written for the unknown transaction (the foreign key would refuse it).
        assert (
            conn.execute("SELECT 1 FROM labels WHERE transaction_id = 'tx-00099'").fetchone()
            is None
        )


async def test_labels_repeated_within_one_call_count_in_order(store: SqliteStore) -> None:
    await store.write_batch(make_batch(0, 2))
    outcomes = await store.add_labels([label(0), label(0), label(0, "legitimate")])
    assert [o.status for o in outcomes] == ["created", "unchanged", "updated"]
    assert (await store.get_labels(["tx-00000"]))["tx-00000"].label == "legitimate"


async def test_a_label_value_outside_the_two_is_refused(store: SqliteStore) -> None:
    await store.write_batch(make_batch(0, 1))
    with pytest.raises(ValueError, match="label must be one of"):
        await store.add_labels([label(0, "maybe")])
    assert await store.get_labels(["tx-00000"]) == {}


async def test_resolving_an_alert_labels_its_transaction(store: SqliteStore) -> None:
    await store.write_batch(make_batch(0, 4))  # alerts al-00000, al-00003
    await store.resolve("al-00003", "alice", "fraud", None)
    await store.resolve("al-00000", "bob", "legitimate", "known customer")
    labels = await store.get_labels(["tx-00000", "tx-00003"])
    assert labels["tx-00003"].label == "fraud"
    assert labels["tx-00003"].source == "analyst:alice"
    assert labels["tx-00000"].label == "legitimate"
    assert labels["tx-00000"].source == "analyst:bob"
    # An analyst's label then counts as known: the same label by the API is a re-send.
    assert [o.status for o in await store.add_labels([label(3)])] == ["unchanged"]
    # And the other way round: the resolution says what storing its label did.
    await store.write_batch([make_record(6, alert=True), make_record(9, alert=True)])
    await store.add_labels([label(6), label(9, "legitimate")])
    _, same = await store.resolve_labelled("al-00006", "alice", "fraud", None)
    _, other = await store.resolve_labelled("al-00009", "alice", "fraud", None)
    assert same is not None and same.status == "unchanged"
    assert other is not None and other.status == "updated"
    assert other.replaced == ("legitimate", "2026-02-07T12:00:00Z")


async def test_labels_survive_a_restart_and_keep_the_scenario(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.start(Recorder())
    await first.write_batch(make_batch(0, 3))
    await first.add_labels([label(2, source="simulator", scenario="card_testing")])
    await first.close()
    again = SqliteStore(db_path)
    await again.start(Recorder())
    stored = await again.get_labels(["tx-00002"])
    await again.close()
    assert stored["tx-00002"].scenario == "card_testing"
    assert stored["tx-00002"].source == "simulator"
    assert stored["tx-00002"].labelled_at == "2026-02-07T12:00:00Z"


async def test_every_label_change_is_logged_in_commit_order_and_pruned_by_seq(
    store: SqliteStore,
) -> None:
    await store.write_batch(make_batch(0, 4))  # alert al-00003
    later = msgspec.structs.replace(label(1, "legitimate"), labelled_at="2026-02-08T12:00:00Z")
    # A re-send and an unknown transaction change nothing and log nothing.
    await store.add_labels([label(1), label(1), label(99), label(2, "legitimate"), later])
    await store.resolve_labelled("al-00003", "alice", "fraud", None)
    changes = await store.label_changes_after(0, 100)
    assert [(c.seq, c.transaction_id, c.label, c.replaced) for c in changes] == [
        (1, "tx-00001", "fraud", None),
        (2, "tx-00002", "legitimate", None),
        (3, "tx-00001", "legitimate", ("fraud", "2026-02-07T12:00:00Z")),
        (4, "tx-00003", "fraud", None),
    ]
    assert changes[2].labelled_at == "2026-02-08T12:00:00Z"
    assert changes[0].transaction is not None
    assert msgspec.json.decode(changes[0].transaction)["merchant_id"] == "m-1"
    assert [c.seq for c in await store.label_changes_after(2, 1)] == [3]
    assert await store.last_label_change() == 4

    # Pruned up to a seq but the newest (the store's high-water mark), the rest keep their
    # seqs, and a seq is never handed out again.
    assert await store.prune_label_changes(4) == 3
    assert [c.seq for c in await store.label_changes_after(0, 100)] == [4]
    assert await store.last_label_change() == 4
    await store.add_labels([label(2, "fraud")])
    assert await store.prune_label_changes(5) == 1
    await store.add_labels([label(2, "legitimate")])
    assert [c.seq for c in await store.label_changes_after(0, 100)] == [5, 6]


async def test_reopening_withdraws_the_label_its_resolution_gave_and_logs_it(
    db_path: Path,
) -> None:
    first = SqliteStore(db_path)
    await first.start(Recorder())
    await first.write_batch(make_batch(0, 10))  # alerts al-00000, -03, -06, -09
    await first.add_labels([label(6, "legitimate", source="chargeback", scenario="normal")])
    before = await first.get_labels(["tx-00006"])
    resolved, gave = await first.resolve_labelled("al-00003", "alice", "fraud", None)
    _, replaced = await first.resolve_labelled("al-00006", "alice", "fraud", None)
    await first.resolve_labelled("al-00009", "alice", "fraud", None)
    await first.add_labels([label(9, source="chargeback")])  # the same label, sent: its own
    assert gave is not None and replaced is not None
    assert (gave.status, replaced.status) == ("created", "updated")
    await first.close()

    # What to withdraw is stored: a restart in between changes nothing.
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        event, withdrawal = await store.reopen_labelled("al-00003", "bob", "mis-click")
        assert event.alert.status == "open"
        assert withdrawal is not None and withdrawal.restored is None
        assert withdrawal.transaction_id == "tx-00003"
        assert withdrawal.withdrawn == ("fraud", resolved.alert.updated_at)
        assert await store.get_labels(["tx-00003"]) == {}
        _, back = await store.reopen_labelled("al-00006", "bob", None)
        assert back is not None and back.restored == before["tx-00006"]
        assert await store.get_labels(["tx-00006"]) == before
        _, kept = await store.reopen_labelled("al-00009", "bob", None)
        assert kept is None and (await store.get_labels(["tx-00009"]))["tx-00009"].label == "fraud"

        changes = await store.label_changes_after(0, 100)
        assert [(c.transaction_id, c.label, c.replaced and c.replaced[0]) for c in changes] == [
            ("tx-00006", "legitimate", None),
            ("tx-00003", "fraud", None),
            ("tx-00006", "fraud", "legitimate"),
            ("tx-00009", "fraud", None),
            ("tx-00003", None, "fraud"),  # withdrawn: no label in its place
            ("tx-00006", "legitimate", "fraud"),  # the chargeback's, put back
        ]
        assert changes[4].labelled_at is None and changes[4].replaced_seq == changes[1].seq
        assert changes[5].labelled_at == "2026-02-07T12:00:00Z"
        assert changes[5].replaced_seq == changes[2].seq
        # Resolved again: a first label again, which a reopen withdraws again.
        _, again = await store.resolve_labelled("al-00003", "alice", "legitimate", None)
        assert again is not None and again.status == "created"
        _, withdrawn = await store.reopen_labelled("al-00003", "alice", None)
        assert withdrawn is not None and withdrawn.withdrawn[0] == "legitimate"
        # Reopened twice, it was resolved once: nothing more to withdraw.
        await store.resolve("al-00003", "alice", "duplicate", None)
        _, none = await store.reopen_labelled("al-00003", "alice", None)
        assert none is None
    finally:
        await store.close()


def test_migration_14_keeps_the_log_of_label_changes_and_never_reuses_a_seq(
    db_path: Path,
) -> None:
    db_path.parent.mkdir()
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        migrate(conn, [m for m in MIGRATIONS if m.version < 14])
        for tx_id in ("a", "b", "c"):
            conn.execute(
                "INSERT INTO label_changes (transaction_id, label, labelled_at) "
                "VALUES (?, 'fraud', '2026-02-07T12:00:00Z')",
                (tx_id,),
            )
        conn.execute("DELETE FROM label_changes WHERE seq = 3")  # retention took the newest
        assert migrate(conn) == [14]
        rows = conn.execute("SELECT seq, transaction_id, label FROM label_changes").fetchall()
        assert rows == [(1, "a", "fraud"), (2, "b", "fraud")]
        conn.execute("INSERT INTO label_changes (transaction_id) VALUES ('d')")  # a withdrawal
        assert conn.execute("SELECT max(seq) FROM label_changes").fetchone() == (4,)
        with pytest.raises(sqlite3.IntegrityError):  # a label is known from some time
            conn.execute("INSERT INTO label_changes (transaction_id, label) VALUES ('e', 'fraud')")


async def test_model_inputs_are_kept_with_their_transaction_and_layout(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.start(Recorder())
    batch = make_batch(0, 4)
    batch[1] = batch[1]._replace(model_inputs=("fs-a/<dd", b"\x01\x02"))
    batch[2] = batch[2]._replace(model_inputs=("fs-b/<d", b"\x00" * 120))
    await first.write_batch(batch)
    # A second batch in a known layout registers nothing new.
    await first.write_batch([make_record(7)._replace(model_inputs=("fs-a/<dd", b"\x07"))])
    await first.close()

    again = SqliteStore(db_path)  # read back by a new process, as a restarted server would
    await again.start(Recorder())
    try:
        ids = ["tx-00000", "tx-00001", "tx-00002", "tx-00007", "tx-00099"]
        assert await again.model_inputs(ids) == (
            {
                "tx-00001": ("fs-a/<dd", b"\x01\x02"),
                "tx-00002": ("fs-b/<d", b"\x00" * 120),
                "tx-00007": ("fs-a/<dd", b"\x07"),
            },
            {},
        )
        assert await again.model_inputs([]) == ({}, {})
    finally:
        await again.close()
    with raw(db_path) as conn:
        layouts = conn.execute("SELECT layout FROM input_layouts ORDER BY id").fetchall()
        assert layouts == [("fs-a/<dd",), ("fs-b/<d",)]


async def test_a_batch_retried_after_a_failure_keeps_its_layout_valid(
    store: SqliteStore, db_path: Path
) -> None:
    # The first batch in a new layout fails after the layout was registered (a duplicate
    # alert id, refused by the primary key); the retry must still name a stored layout.
    await store.write_batch([make_record(0, alert=True, alert_id="al-x")])
    clash = make_record(1, alert=True, alert_id="al-x")._replace(model_inputs=("fs-c/<d", b"\x05"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.write_batch([clash])
    await store.write_batch([make_record(2)._replace(model_inputs=("fs-c/<d", b"\x06"))])
    found = await store.model_inputs(["tx-00001", "tx-00002"])
    assert found.rows == {"tx-00002": ("fs-c/<d", b"\x06")}
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def _age(db_path: Path, ids: list[str], received_at: str) -> None:
    """As if these rows had been stored at `received_at` (the store stamps its own clock)."""
    with raw(db_path) as conn:
        conn.executemany(
            "UPDATE transactions SET received_at = ? WHERE id = ?", [(received_at, i) for i in ids]
        )


async def test_pruning_deletes_old_transactions_without_alerts_and_their_labels(
    store: SqliteStore, db_path: Path
) -> None:
    await store.write_batch(make_batch(0, 30, alert_every=7))  # alerts on 0, 7, 14, 21, 28
    await store.write_batch(make_batch(30, 10))
    old = [f"tx-{n:05d}" for n in range(25)]
    _age(db_path, old, "2026-01-01T00:00:00.000Z")
    await store.add_labels([label(3), label(7), label(26), label(35, "legitimate")])

    # Chunks smaller than the table: the work is split over several commits.
    deleted = await store.prune_transactions("2026-02-01T00:00:00.000Z", chunk=4)
    gone = {f"tx-{n:05d}" for n in range(25) if n % 7}
    assert deleted == len(gone) == 21
    kept = await store.known_verdicts([f"tx-{n:05d}" for n in range(40)])
    assert set(kept) == {f"tx-{n:05d}" for n in range(40)} - gone
    # The labels of deleted transactions go with them; the others stay.
    assert set(await store.get_labels(["tx-00003", "tx-00007", "tx-00026", "tx-00035"])) == {
        "tx-00007",
        "tx-00026",
        "tx-00035",
    }
    # So do their label changes: a restart has nothing to take in for them.
    logged = {c.transaction_id for c in await store.label_changes_after(0, 100)}
    assert logged == {"tx-00007", "tx-00026", "tx-00035"}
    # An alert's transaction is part of its case: its alert, history and label are intact.
    assert (await store.get_alert("al-00007")) is not None
    history = await store.account_transactions("acct-1", 100, None)
    assert {t.verdict.transaction_id for t in history.transactions} == set(kept)
    assert await store.prune_transactions("2026-02-01T00:00:00.000Z") == 0
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_pruning_an_empty_or_recent_store_deletes_nothing(store: SqliteStore) -> None:
    assert await store.prune_transactions("2026-02-01T00:00:00.000Z") == 0
    await store.write_batch(make_batch(0, 5))
    assert await store.prune_transactions("2000-01-01T00:00:00.000Z") == 0
    assert len(await store.known_verdicts([f"tx-{n:05d}" for n in range(5)])) == 5


async def test_a_read_that_fails_midway_leaves_no_stale_snapshot_behind(db_path: Path) -> None:
    # One reader thread, so every read below uses the connection the failed one used.
    store = SqliteStore(db_path, readers=1)
    await store.start(Recorder())
    try:
        await store.write_batch(make_batch(0, 3, alert_every=1))
        for name in ("alice", "bob", "carol"):
            await store.add_user(name, "hash", "analyst")
        with raw(db_path) as conn:
            conn.execute(f"UPDATE users SET created_at = {NOT_UTF8} WHERE name = 'alice'")
        # The read fails on its first row with more to come, and whoever logs the error may
        # keep it, traceback and all (a log handler that keeps records, an error reporter).
        # (The list of users: the alerts, events, notes and audit log now read past such
        # rows.)
        with pytest.raises(sqlite3.OperationalError, match="Could not decode") as failed:
            await store.list_users()
        kept = failed.value
        assert (await store.add_labels([label(1)]))[0].status == "created"
        # Later reads see what was committed since: the failed read's snapshot is gone.
        assert set(await store.get_labels(["tx-00001"])) == {"tx-00001"}
        assert kept.__traceback__ is not None
        # Gone from the file too: a checkpoint that waits for no reader copies the whole
        # WAL back. The failed cursor, alive in the kept traceback, had kept its closed
        # connection open, and the store's final checkpoint waited BUSY_TIMEOUT_S (10 s).
        with raw(db_path) as conn:
            conn.execute("PRAGMA busy_timeout = 0")
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert (busy, frames, copied) == (0, 0, 0)
        assert "list_users" in "".join(traceback.format_tb(kept.__traceback__))
    finally:
        await store.close()


async def test_a_damaged_row_is_named_and_the_others_are_read(
    store: SqliteStore, db_path: Path
) -> None:
    # One row edited by hand (or written by a faulty build) failed the whole read, and so
    # every label of a request with it. Now it is left out and named, with what is wrong.
    batch = [r._replace(model_inputs=("fs-a/<d", b"\x01")) for r in make_batch(0, 4)]
    await store.write_batch(batch)
    with raw(db_path) as conn:
        conn.execute("UPDATE transactions SET verdict_json = '{}' WHERE id = 'tx-00001'")
        conn.execute("UPDATE transactions SET model_inputs = 'text' WHERE id = 'tx-00002'")
    ids = [f"tx-{n:05d}" for n in range(4)]
    known = await store.known_transactions(ids)
    assert set(known.rows) == {"tx-00000", "tx-00002", "tx-00003"}
    assert list(known.damaged) == ["tx-00001"]
    assert known.damaged["tx-00001"].startswith("verdict_json unreadable: ")
    inputs = await store.model_inputs(ids)
    assert set(inputs.rows) == {"tx-00000", "tx-00001", "tx-00003"}
    assert inputs.damaged == {"tx-00002": "model_inputs unreadable: str, not bytes"}


NOT_UTF8 = "CAST(x'7bff7d' AS TEXT)"  # `{`, a byte no UTF-8 text holds, `}`


async def test_text_that_is_not_utf8_costs_only_its_own_row(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # sqlite3 raised decoding such a TEXT value (a damaged file, another tool's write),
    # failing the whole read: the alert list, an account's history, the labels, a batch's
    # stored rows. Now its row is left out and named, the others read. One reader thread:
    # the reads after one that met a damaged row run on the connection it ran on.
    store = SqliteStore(db_path, readers=1)
    await store.start(Recorder())
    try:
        batch = [r._replace(model_inputs=("fs-a/<d", b"\x01")) for r in make_batch(0, 8)]
        await store.write_batch(batch)  # alerts al-00000, al-00003, al-00006
        await store.add_labels([label(n) for n in range(8)])
        note, _ = await store.add_note("al-00000", "alice", "called the customer")
        await store.add_note("al-00000", "alice", "card blocked")
        with raw(db_path) as conn:
            for sql in (
                f"UPDATE transactions SET transaction_json = {NOT_UTF8} WHERE id = 'tx-00001'",
                f"UPDATE transactions SET verdict_json = {NOT_UTF8} WHERE id = 'tx-00002'",
                f"UPDATE transactions SET model_inputs = {NOT_UTF8} WHERE id = 'tx-00004'",
                f"UPDATE alerts SET alert_json = {NOT_UTF8} WHERE id = 'al-00003'",
                f"UPDATE events SET alert_json = {NOT_UTF8} WHERE alert_id = 'al-00003'",
                f"UPDATE labels SET source = {NOT_UTF8} WHERE transaction_id = 'tx-00005'",
                f"UPDATE label_changes SET labelled_at = {NOT_UTF8} "
                "WHERE transaction_id = 'tx-00005'",
                f"UPDATE notes SET text = {NOT_UTF8} WHERE id = {note.id}",
            ):
                conn.execute(sql)
        ids = [f"tx-{n:05d}" for n in range(8)]
        known = await store.known_transactions(ids)
        assert set(known.rows) == set(ids) - {"tx-00001", "tx-00002"}
        assert known.damaged == {
            "tx-00001": "transaction_json not UTF-8 (b'{\\xff}')",
            "tx-00002": "verdict_json not UTF-8 (b'{\\xff}')",
        }
        inputs = await store.model_inputs(ids)
        assert set(inputs.rows) == set(ids) - {"tx-00004"}
        assert inputs.damaged == {"tx-00004": "model_inputs not UTF-8 (b'{\\xff}')"}
        assert set(await store.known_verdicts(ids)) == set(ids) - {"tx-00002"}
        history = await store.account_transactions("acct-1", 100, None)
        assert [t.verdict.transaction_id for t in history.transactions] == [
            f"tx-{n:05d}" for n in (7, 6, 5, 4, 3, 0)
        ]
        page = await store.list_alerts(None, 100, None)
        assert [a.id for a in page.alerts] == ["al-00006", "al-00000"]
        events = await store.events_since(0, 100)
        assert {e.alert.id for e in events} == {"al-00000", "al-00006"}
        assert [e.seq for e in await store.events_since(0, 2)] == [1, 3]  # reads on past it
        assert set(await store.get_labels(ids)) == set(ids) - {"tx-00005"}
        assert {lb.transaction_id for lb in await store.recent_labels(100)} == set(ids) - {
            "tx-00005"
        }
        changes = await store.label_changes_after(0, 100)
        assert {c.transaction_id for c in changes} == set(ids) - {"tx-00005"}
        # Replay reads a transaction that is not text as empty, as before: said so there.
        replayed = await store.transactions_after(0, 100, 100)
        assert [t.transaction == b"" for t in replayed] == [n == 1 for n in range(8)]
        assert [n.text for n in await store.notes("al-00000")] == ["card blocked"]
        # Each row left out without a `damaged` to name it in is logged: table, id, column.
        for logged in (
            "alerts al-00003: alert_json not UTF-8",
            "events seq 2: alert_json not UTF-8",
            "transactions tx-00001: transaction_json not UTF-8",
            "labels tx-00005: source not UTF-8",
            f"notes id {note.id}: text not UTF-8",
        ):
            assert f"damaged row left out: {logged}" in caplog.text, logged
        # A page cut short by a damaged row still leads on, from where the rows were read.
        first = await store.list_alerts(None, 2, None)
        assert [a.id for a in first.alerts] == ["al-00006"] and first.next_cursor is not None
        rest = await store.list_alerts(None, 2, first.next_cursor)
        assert [a.id for a in rest.alerts] == ["al-00000"] and rest.next_cursor is None
        # A read of that one row has nothing else to give: it says which row, and why.
        with pytest.raises(StoredRowDamaged, match="alert al-00003: Could not decode to UTF-8"):
            await store.get_alert("al-00003")
        assert (await store.get_alert("al-00006")) is not None
    finally:
        await store.close()


# Text that is UTF-8 but no alert: cut short, and of another shape (a score that is text).
TRUNCATED = "substr(alert_json, 1, 40)"
WRONG_SHAPE = "json_set(alert_json, '$.score', 'high')"


async def test_an_alert_row_that_is_not_an_alert_costs_only_its_own_row(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A row's alert_json cut short or of another shape (a damaged file, another tool's
    # write) failed the whole alert list and the events a dashboard resumes from with
    # msgspec's error: one bad row blanked every analyst's dashboard. Now it is left out
    # and logged, as a row that is not UTF-8 is.
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        await store.write_batch(make_batch(0, 13))  # alerts al-00000, -03, -06, -09, -12
        with raw(db_path) as conn:
            for table, alert_id, damage in (
                ("alerts", "al-00003", TRUNCATED),
                ("alerts", "al-00006", WRONG_SHAPE),
                ("events", "al-00003", WRONG_SHAPE),
                ("events", "al-00006", TRUNCATED),
            ):
                key = "id" if table == "alerts" else "alert_id"
                conn.execute(
                    f"UPDATE {table} SET alert_json = {damage} WHERE {key} = ?", (alert_id,)
                )
        page = await store.list_alerts(None, 100, None)
        assert [a.id for a in page.alerts] == ["al-00012", "al-00009", "al-00000"]
        filtered = await store.list_alerts(["open"], 100, None)
        assert [a.id for a in filtered.alerts] == ["al-00012", "al-00009", "al-00000"]
        # Filters on what the JSON holds, the rule a reason carries and a merchant id (read
        # out of it by SQLite's JSON functions, which raise on text that is not JSON, until
        # migrations 10 and 11 kept them beside it). Page by page, too.
        for where in (AlertFilter(rule="velocity"), AlertFilter(query="m-1")):
            found = await store.list_alerts(None, 100, None, where)
            assert [a.id for a in found.alerts] == ["al-00012", "al-00009", "al-00000"], where
            ids, cursor = [], None
            while True:
                part = await store.list_alerts(None, 1, cursor, where)
                ids += [a.id for a in part.alerts]
                if (cursor := part.next_cursor) is None:
                    break
            assert ids == ["al-00012", "al-00009", "al-00000"], where
        events = await store.events_since(0, 100)
        assert [(e.seq, e.alert.id) for e in events] == [
            (1, "al-00000"),
            (4, "al-00009"),
            (5, "al-00012"),
        ]
        for logged in (
            "alerts al-00003: alert_json unreadable: Input data was truncated",
            "alerts al-00006: alert_json unreadable: Expected `float`, got `str` - at `$.score`",
            "events seq 2: alert_json unreadable: Expected `float`, got `str` - at `$.score`",
            "events seq 3: alert_json unreadable: Input data was truncated",
        ):
            assert f"damaged row left out: {logged}" in caplog.text, logged
        # Pages cut short by damaged rows still lead on, from where the rows were read.
        ids, cursor, pages = [], None, 0
        while True:
            part = await store.list_alerts(None, 2, cursor)
            ids += [a.id for a in part.alerts]
            pages += 1
            if (cursor := part.next_cursor) is None:
                break
        assert ids == ["al-00012", "al-00009", "al-00000"] and pages == 3
        # A page of events is full unless there are no more: a resume that stops at a
        # short page would stop at the damaged rows and miss the rest.
        assert [e.seq for e in await store.events_since(0, 2)] == [1, 4]
        assert [e.seq for e in await store.events_since(1, 1)] == [4]
        assert [e.seq for e in await store.events_since(4, 2)] == [5]
    finally:
        await store.close()


async def test_an_alert_page_emptied_by_damaged_rows_leads_on_only_if_rows_follow(
    store: SqliteStore, db_path: Path
) -> None:
    # Every row of a page left out: the page is empty. Its cursor must lead on where rows
    # were read past it (a client stopping at an empty page would miss the rest), and be
    # absent on the last page, or a client would ask for nothing forever.
    await store.write_batch(make_batch(0, 16))  # alerts al-00000, -03, -06, -09, -12, -15
    with raw(db_path) as conn:
        for alert_id in ("al-00012", "al-00009", "al-00003", "al-00000"):
            conn.execute(f"UPDATE alerts SET alert_json = {TRUNCATED} WHERE id = ?", (alert_id,))

    async def pages(limit: int) -> list[tuple[list[str], bool]]:
        found: list[tuple[list[str], bool]] = []
        cursor = None
        while len(found) < 10:
            part = await store.list_alerts(None, limit, cursor)
            found.append(([a.id for a in part.alerts], part.next_cursor is not None))
            if (cursor := part.next_cursor) is None:
                break
        return found

    # Two a page, [15, 12x] [9x, 6] [3x, 0x]: cut short pages lead on; the last, emptied,
    # ends the listing.
    assert await pages(2) == [(["al-00015"], True), (["al-00006"], True), ([], False)]
    # One a page: the emptied pages with rows after them lead on.
    assert await pages(1) == [
        (["al-00015"], True),
        ([], True),
        ([], True),
        (["al-00006"], True),
        ([], True),
        ([], False),
    ]


async def test_a_damaged_row_is_logged_once_then_at_debug(
    store: SqliteStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every dashboard's list read met the damaged alert and logged it again: a line per
    # read per row. Now the first read logs it, later ones at DEBUG.
    await store.write_batch(make_batch(0, 10))  # alerts al-00000, -03, -06, -09
    with raw(db_path) as conn:
        conn.execute(f"UPDATE alerts SET alert_json = {TRUNCATED} WHERE id = 'al-00003'")
        conn.execute(f"UPDATE alerts SET alert_json = {NOT_UTF8} WHERE id = 'al-00006'")
    caplog.set_level(logging.DEBUG, logger="server.store.sqlite_reads")

    async def logged(reads: int) -> list[tuple[str, str]]:
        caplog.clear()
        for _ in range(reads):
            page = await store.list_alerts(None, 100, None)
            assert [a.id for a in page.alerts] == ["al-00009", "al-00000"]
        return [
            (r.levelname, r.getMessage().split(":")[1].strip())
            for r in caplog.records
            if r.getMessage().startswith("damaged row left out")
        ]

    assert await logged(4) == [
        ("WARNING", "alerts al-00006"),
        ("WARNING", "alerts al-00003"),
        *[("DEBUG", "alerts al-00006"), ("DEBUG", "alerts al-00003")] * 3,
    ]
    # Bounded: a row not among the `cap` met last is warned of again.
    seen = DamagedRows(cap=2)
    met = ("a", "b", "a", "c", "b", "a", "b")
    assert [seen.first("alerts", i) for i in met] == [1, 1, 0, 1, 1, 1, 0]


async def test_an_account_history_row_whose_verdict_is_not_a_verdict_costs_only_itself(
    store: SqliteStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A verdict_json cut short or of another shape failed the whole account history (the
    # drawer's), and the API answered it 500 internal_error. Now the row is left out and
    # logged, as one that is not UTF-8 is, and paging leads on past it.
    await store.write_batch(make_batch(0, 8))  # all of acct-1, newest event last
    with raw(db_path) as conn:
        conn.execute(
            "UPDATE transactions SET verdict_json = substr(verdict_json, 1, 6) "
            "WHERE id = 'tx-00002'"
        )
        conn.execute(
            "UPDATE transactions SET verdict_json = json_set(verdict_json, '$[0]', 'high') "
            "WHERE id = 'tx-00005'"
        )
    history = await store.account_transactions("acct-1", 100, None)
    assert [t.verdict.transaction_id for t in history.transactions] == [
        f"tx-{n:05d}" for n in (7, 6, 4, 3, 1, 0)
    ]
    for logged in (
        "transactions tx-00002: verdict_json unreadable: Input data was truncated",
        "transactions tx-00005: verdict_json unreadable: Expected `float`, got `str` - at `$[0]`",
    ):
        assert f"damaged row left out: {logged}" in caplog.text, logged
    pages, cursor = [], None
    while True:
        part = await store.account_transactions("acct-1", 2, cursor)
        pages.append([t.verdict.transaction_id[-1] for t in part.transactions])
        if (cursor := part.next_cursor) is None:
            break
    assert pages == [["7", "6"], ["4"], ["3"], ["1", "0"]]


async def test_an_audit_entry_whose_detail_is_damaged_is_shown_without_it(
    store: SqliteStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A detail_json that is not JSON, of another shape or not UTF-8 failed the whole audit
    # log, and so the drawer's read of the alert: 500 internal_error. Left out, the entry
    # would hide who did what to the alert; it is kept, with its detail None, and logged.
    await store.write_batch(make_batch(0, 1))  # al-00000
    await store.add_user("bob", "hash", "analyst")
    await store.acknowledge("al-00000", "alice")
    await store.assign("al-00000", "alice", "bob")
    await store.add_note("al-00000", "bob", "called the customer")
    await store.resolve_labelled("al-00000", "bob", "fraud", None)
    before = await store.audit_log("al-00000")
    actions = ["acknowledge", "assign", "note", "resolve"]
    assert [a.action for a in before] == actions
    with raw(db_path) as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM audit ORDER BY id")]
        damage = ("substr(detail_json, 1, 5)", "'[]'", NOT_UTF8)
        for audit_id, value in zip(ids[1:3], damage[:2], strict=True):
            conn.execute(f"UPDATE audit SET detail_json = {value} WHERE id = ?", (audit_id,))
    after = await store.audit_log("al-00000")
    assert [a.action for a in after] == actions
    assert [a.detail for a in after] == [before[0].detail, None, None, before[3].detail]
    assert [(a.at, a.actor) for a in after] == [(a.at, a.actor) for a in before]
    # And with a detail not UTF-8 too: the read that meets one runs again, as others do.
    with raw(db_path) as conn:
        conn.execute(f"UPDATE audit SET detail_json = {damage[2]} WHERE id = ?", (ids[3],))
    again = await store.audit_log("al-00000")
    assert [a.action for a in again] == actions
    assert [a.detail for a in again] == [before[0].detail, None, None, None]
    for logged in (
        f"audit id {ids[1]}: detail_json unreadable: Input data was truncated",
        f"audit id {ids[2]}: detail_json unreadable: Expected `object`, got `array`",
        f"audit id {ids[3]}: detail_json not UTF-8 (b'{{\\xff}}')",
    ):
        assert f"damaged row shown without its detail: {logged}" in caplog.text, logged
    assert caplog.text.count(f"audit id {ids[1]}:") == 1  # the second read: at DEBUG


async def test_a_note_whose_text_is_not_text_is_left_out(
    store: SqliteStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite keeps a BLOB in a TEXT column (another tool's write, a damaged file): such a
    # note did not fail the list, but the API showed its bytes as base64, a note nobody
    # wrote ("b25l" for b"one"). Now it is left out and logged, as one not UTF-8 is; the
    # audit log still says it was written.
    await store.write_batch(make_batch(0, 1))  # al-00000
    notes = [(await store.add_note("al-00000", "alice", text))[0] for text in "abc"]
    with raw(db_path) as conn:
        conn.execute("UPDATE notes SET text = CAST(text AS BLOB) WHERE id = ?", (notes[0].id,))
        conn.execute("UPDATE notes SET at = x'00' WHERE id = ?", (notes[2].id,))
    assert await store.notes("al-00000") == [notes[1]]
    for logged in (f"{notes[0].id}: text bytes, not text", f"{notes[2].id}: at bytes, not text"):
        assert f"damaged row left out: notes id {logged}" in caplog.text, logged
    assert [a.action for a in await store.audit_log("al-00000")] == ["note"] * 3


async def test_an_alert_that_cannot_be_read_by_itself_is_named_and_left_as_it_is(
    store: SqliteStore,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Reading one alert, or changing it, has nothing else to give: msgspec's error (or
    # sqlite3's, for text that is not UTF-8) went up bare, and the API answered it as a bug.
    # Now the read says which row, and what is wrong with it; no change is written.
    await store.write_batch(make_batch(0, 7))  # alerts al-00000, al-00003, al-00006
    await store.add_user("bob", "hash", "analyst")
    with raw(db_path) as conn:
        conn.execute(f"UPDATE alerts SET alert_json = {TRUNCATED} WHERE id = 'al-00000'")
        conn.execute(f"UPDATE alerts SET alert_json = {NOT_UTF8} WHERE id = 'al-00003'")
    seq = await store.last_seq()
    truncated = "alert al-00000: alert_json unreadable: Input data was truncated"
    not_utf8 = "alert al-00003: Could not decode to UTF-8 column 'alert_json'"
    for alert_id, problem in (("al-00000", truncated), ("al-00003", not_utf8)):
        for change in (
            store.get_alert(alert_id),
            store.acknowledge(alert_id, "alice"),
            store.assign(alert_id, "alice", "bob"),
            store.resolve_labelled(alert_id, "alice", "fraud", None),
            store.add_note(alert_id, "alice", "called the customer"),
            store.reopen(alert_id, "alice", None),
        ):
            with pytest.raises(StoredRowDamaged, match=problem) as raised:
                await change
            assert raised.value.what == f"alert {alert_id}"
    assert await store.last_seq() == seq
    assert await store.notes("al-00000") == [] and await store.get_labels(["tx-00000"]) == {}
    # The work queue's head is the damaged al-00000, then al-00003 (oldest first): `next`
    # passes over them, each logged, and takes the first alert it can read. It answered
    # every analyst's `next` with the damaged head until someone repaired the row.
    monkeypatch.setattr("server.store.sqlite_writer.NEXT_SKIP_MAX", 1)
    with pytest.raises(StoredRowDamaged, match=not_utf8):  # past the limit: said, not taken
        await store.claim_next("alice")
    monkeypatch.setattr("server.store.sqlite_writer.NEXT_SKIP_MAX", 100)
    with caplog.at_level(logging.ERROR, logger="server.store.sqlite_writer"):
        taken = await store.claim_next("alice")
    assert taken is not None and taken.alert.id == "al-00006" and taken.alert.owner == "alice"
    assert await store.last_seq() == seq + 1
    assert (
        "next: passed over alert al-00000, which cannot be read: alert_json unreadable: "
        "Input data was truncated"
    ) in caplog.text
    assert "next: passed over alert al-00003, which cannot be read: Could not decode" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="server.store.sqlite_writer"):
        assert await store.claim_next("alice") is None  # only the damaged ones are left
    # Every analyst's `next` meets them until they are repaired: logged once, then at DEBUG.
    passed = [r.levelname for r in caplog.records if "passed over" in r.getMessage()]
    assert passed == ["DEBUG", "DEBUG"]


async def test_the_wal_starts_over_under_a_steady_stream_of_batches(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint beside a writer that commits every few milliseconds never copies the
    # whole WAL, and only a whole copy lets it start over: at 1,700 transactions a second
    # it grew 20 MiB a second, without end. Past its bound (1 MiB here) the writer's own
    # thread now runs a checkpoint between two batches, and the WAL starts over.
    monkeypatch.setattr("server.store.sqlite.WAL_RESTART_BYTES", 1 << 20)
    monkeypatch.setattr("server.store.sqlite.CHECKPOINT_INTERVAL_S", 0.1)
    store = SqliteStore(db_path)
    await store.start(lambda events: None)
    wal = db_path.with_name(db_path.name + "-wal")
    sizes = []
    try:
        for n in range(0, 4_000, 20):
            await store.write_batch(make_batch(n, 20))
            await asyncio.sleep(0.002)
            sizes.append(wal.stat().st_size)
        restarts = store.wal_restarts
    finally:
        await store.close()
    assert restarts > 0
    # Bounded by the last restart's bound plus what a checkpoint interval writes, where
    # without them the WAL holds every page of every batch (~12 KiB a transaction).
    assert max(sizes[len(sizes) // 2 :]) < 8 << 20, [s >> 20 for s in sizes[::20]]


async def test_a_new_data_dir_and_database_are_private(db_path: Path) -> None:
    # The database holds password hashes, sessions and customers' transactions: a data dir
    # and database fraudwatch creates are readable by their owner only, the WAL too.
    store = SqliteStore(db_path)
    await store.start(lambda events: None)
    try:
        await store.write_batch(make_batch(0, 3))
        wal = db_path.with_name(db_path.name + "-wal")
        modes = {p.name: p.stat().st_mode & 0o777 for p in (db_path.parent, db_path, wal)}
    finally:
        await store.close()
    assert modes == {"data": 0o700, "fraudwatch.db": 0o600, "fraudwatch.db-wal": 0o600}


async def test_an_existing_database_keeps_its_mode(db_path: Path) -> None:
    # An operator's choice (a group that reads backups, say) is left alone.
    db_path.parent.mkdir(mode=0o750)
    with raw(db_path) as conn:
        conn.execute("PRAGMA user_version")
    db_path.chmod(0o640)
    store = SqliteStore(db_path)
    await store.start(lambda events: None)
    await store.close()
    assert (db_path.parent.stat().st_mode & 0o777, db_path.stat().st_mode & 0o777) == (
        0o750,
        0o640,
    )


async def test_positions_follow_the_order_transactions_were_stored_in(store: SqliteStore) -> None:
    assert await store.last_position() is None
    assert await store.position_since("2000-01-01T00:00:00.000Z", 10) == 0
    assert await store.transactions_after(0, 100, 10) == []
    await store.write_batch([make_record(5), make_record(2)])  # stored in the order given
    await store.write_batch([make_record(9), make_record(1)])
    positions = await store.transaction_positions(
        ["tx-00005", "tx-00002", "tx-00009", "tx-00001", "tx-00077"]
    )
    assert sorted(positions, key=positions.__getitem__) == [
        "tx-00005",
        "tx-00002",
        "tx-00009",
        "tx-00001",
    ]
    last = await store.last_position()
    assert last == (positions["tx-00001"], "tx-00001")
    # Read a chunk at a time, in that order, each as the JSON it was stored as.
    first = positions["tx-00005"]
    chunk = await store.transactions_after(first, last[0], 2)
    assert [row.position for row in chunk] == [positions["tx-00002"], positions["tx-00009"]]
    assert chunk[0].transaction == encode_transaction(make_record(2).transaction)
    rest = await store.transactions_after(chunk[-1].position, last[0], 2)
    assert [row.position for row in rest] == [positions["tx-00001"]]
    assert await store.transactions_after(first, positions["tx-00002"], 10) == chunk[:1]


async def test_a_pruned_newest_rowid_given_again_still_stands_after_every_row_left(
    store: SqliteStore, db_path: Path
) -> None:
    await store.write_batch([make_record(1), make_record(2, alert=True), make_record(3)])
    _age(db_path, ["tx-00001", "tx-00002", "tx-00003"], "2026-01-01T00:00:00.000Z")
    assert await store.prune_transactions("2026-02-01T00:00:00.000Z") == 2
    await store.write_batch([make_record(4)])
    positions = await store.transaction_positions(["tx-00002", "tx-00004"])
    assert positions["tx-00002"] < positions["tx-00004"]


async def test_position_since_bounds_a_replay_by_receipt_and_by_count(
    store: SqliteStore, db_path: Path
) -> None:
    await store.write_batch(make_batch(0, 10))
    ids = [f"tx-{n:05d}" for n in range(10)]
    positions = await store.transaction_positions(ids)
    _age(db_path, ids[:4], "2026-01-01T00:00:00.000Z")
    # Received since February: the last six; at most three: the last three.
    assert await store.position_since("2026-02-01T00:00:00.000Z", 100) == positions[ids[3]]
    assert await store.position_since("2026-02-01T00:00:00.000Z", 3) == positions[ids[6]]
    assert await store.position_since("2000-01-01T00:00:00.000Z", 100) == 0
    assert await store.position_since("2000-01-01T00:00:00.000Z", 0) == positions[ids[9]]


def _captured_inputs(n: int) -> list[tuple[str, bytes]]:
    """Model inputs as the detector keeps them, of `n` simulated transactions."""
    from server.detection.detector import Detector
    from server.detection.model import ModelSlot
    from simulator import Simulator

    detector = Detector(model=ModelSlot())
    kept = []
    for item in Simulator(seed=3, rate=20.0, start=T0).generate(n):
        detector.score(item.transaction)
        inputs = detector.kept_inputs(item.transaction.id)
        assert inputs is not None
        kept.append(inputs)
    return kept


async def test_model_inputs_read_back_as_the_exact_bytes_however_they_are_kept(
    store: SqliteStore, db_path: Path
) -> None:
    real = _captured_inputs(40)
    noise = bytes((n * 97 + 13) % 251 for n in range(126))  # deflate cannot shorten it
    odd = [("fs-x/<d", b""), ("fs-x/<d", b"\x00"), ("fs-x/<d", noise), ("fs-x/<d", bytes(126))]
    given = real + odd
    records = [make_record(n)._replace(model_inputs=inputs) for n, inputs in enumerate(given)]
    await store.write_batch(records)
    ids = [r.transaction.id for r in records]
    found = await store.model_inputs(ids)
    assert found.damaged == {}
    assert found.rows == dict(zip(ids, given, strict=True))
    with raw(db_path) as conn:
        sql = "SELECT id, model_packing FROM transactions WHERE model_inputs IS NOT NULL"
        kept = dict(conn.execute(sql))
        stored = conn.execute("SELECT sum(length(model_inputs)) FROM transactions").fetchone()[0]
    # The detector's inputs are mostly zeros: each is kept deflated, in under half the bytes.
    assert all(kept[tx_id] == 1 for tx_id in ids[: len(real)])
    assert stored < sum(len(raw) for _, raw in given) / 2
    # What deflate would not make shorter is kept as given.
    assert kept["tx-00040"] is None and kept["tx-00042"] is None


async def test_model_inputs_not_in_their_packing_are_named_damaged(
    store: SqliteStore, db_path: Path
) -> None:
    inputs = bytes(60) + b"\x05" + bytes(60)
    records = [make_record(n)._replace(model_inputs=("fs-x/<d", inputs)) for n in range(6)]
    await store.write_batch(records)
    with raw(db_path) as conn:
        (packed,) = conn.execute("SELECT model_inputs FROM transactions LIMIT 1").fetchone()
        for tx_id, packing, value in (
            ("tx-00001", 1, packed[:-1]),  # a byte short
            ("tx-00002", 1, packed + b"\x07"),  # a byte too many
            ("tx-00003", 1, packed[:-1] + b"\x00"),  # a zero kept as a value
            ("tx-00004", 1, b"\x01"),  # not even its length
            ("tx-00005", 7, packed),  # a packing this store never wrote
        ):
            conn.execute(
                "UPDATE transactions SET model_packing = ?, model_inputs = ? WHERE id = ?",
                (packing, value, tx_id),
            )
    found = await store.model_inputs([r.transaction.id for r in records])
    assert found.rows == {"tx-00000": ("fs-x/<d", inputs)}
    assert sorted(found.damaged) == [f"tx-0000{n}" for n in range(1, 6)]
    assert all(why.startswith("model_inputs unreadable: ") for why in found.damaged.values())


def _write_as_schema_7(db_path: Path, records: list[StoredRecord]) -> None:
    """Rows as the store wrote them before migration 8: the whole Verdict as a JSON object,
    the model's inputs as given."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with raw(db_path) as conn:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        assert migrate(conn, MIGRATIONS[:7]) == [1, 2, 3, 4, 5, 6, 7]
        conn.execute("INSERT INTO input_layouts (id, layout) VALUES (1, 'fs-old/<d')")
        for tx, verdict, _, _, inputs in records:
            conn.execute(
                "INSERT INTO transactions (id, account_id, event_time_us, amount, currency, "
                "transaction_json, verdict_json, alert_id, received_at, model_layout, "
                "model_inputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tx.id,
                    tx.account_id,
                    int(tx.timestamp.timestamp() * 1_000_000),
                    format(tx.amount, "f"),
                    tx.currency,
                    encode_transaction(tx).decode(),
                    msgspec.json.encode(verdict).decode(),
                    verdict.alert_id,
                    "2026-01-31T12:00:00.000Z",
                    None if inputs is None else 1,
                    None if inputs is None else inputs[1],
                ),
            )


async def test_rows_written_before_migration_8_read_as_they_did(db_path: Path) -> None:
    old = [make_record(n, alert=n == 1) for n in range(3)]
    old[2] = old[2]._replace(model_inputs=("fs-old/<d", bytes(100) + b"\x01"))
    _write_as_schema_7(db_path, old)
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        new = [make_record(n, alert=n == 11)._replace(model_inputs=("fs-old/<d", bytes(120)))
               for n in range(10, 13)]  # fmt: skip
        await store.write_batch(new)
        ids = [r.transaction.id for r in old + new]
        expected = {r.transaction.id: r.verdict for r in old + new}
        assert await store.known_verdicts(ids) == expected
        known = await store.known_transactions(ids)
        assert known.damaged == {}
        assert known.rows == {
            r.transaction.id: (r.verdict, encode_transaction(r.transaction)) for r in old + new
        }
        page = await store.account_transactions("acct-1", 10, None)
        assert {t.verdict.transaction_id: t.verdict for t in page.transactions} == expected
        inputs = await store.model_inputs(ids)
        assert inputs.rows == {
            "tx-00002": ("fs-old/<d", bytes(100) + b"\x01"),
            **{r.transaction.id: ("fs-old/<d", bytes(120)) for r in new},
        }
    finally:
        await store.close()
    with raw(db_path) as conn:
        assert schema_version(conn) == LATEST_VERSION
        rows = dict(conn.execute("SELECT id, verdict_json FROM transactions"))
    # Only the rows written since keep the shorter form; the older ones were not rewritten.
    assert rows["tx-00001"] == msgspec.json.encode(old[1].verdict).decode()
    assert rows["tx-00011"].startswith('[0.9,"review",[{"code":"velocity"')


def test_packed_inputs_unpack_to_the_same_bytes_whatever_they_hold() -> None:
    rng = random.Random(5)
    cases = [b"", b"\x00", b"\x01", bytes(0xFFFF), bytes(0x10000), b"\x01" * 0x10000]
    for _ in range(2000):
        size = rng.choice((1, 7, 8, 9, 126, 134, 300, rng.randrange(1, 1000)))
        zeros = rng.random()  # the share of zero bytes: from none to all
        draw = (0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(size))
        cases.append(bytes(draw))
    for raw in cases:
        packing, kept = pack_inputs(raw)
        assert unpack_inputs(packing, kept) == raw
        assert len(kept) <= len(raw)
        assert (packing is None) == (kept is raw)
