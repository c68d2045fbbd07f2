"""Searching alerts by account, merchant or transaction id (GET /alerts?q=) in the SQLite
store: along an index per kind of id, with every other filter and the cursor, listing the
same alerts in the same order as the one-query search it replaced; and migration 10, which
gives the alerts stored before it their merchant id column."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from server.detection.verdict import Reason, Severity, Verdict
from server.store import sqlite_reads as reads
from server.store.base import AlertEvent, AlertFilter, AlertStatus, StoredRecord
from server.store.migrations import LATEST_VERSION, schema_version
from server.store.sqlite import SqliteStore
from server.transactions import Transaction

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ACCOUNTS = ("acct-0", "acct-1", "acct-2", "acct-3")
MERCHANTS = ("m-0", "m-1", "m-2")
SEVERITIES: tuple[Severity, ...] = ("medium", "high", "critical")


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def record(n: int, account: str, merchant: str, *, tx_id: str | None = None) -> StoredRecord:
    """Transaction tx-<n> (or `tx_id`) at T0 + n s, raising alert al-<n>."""
    tx = Transaction(
        id=tx_id or f"tx-{n:05d}",
        timestamp=T0 + dt.timedelta(seconds=n),
        account_id=account,
        merchant_id=merchant,
        amount=Decimal("12.50"),
        currency="USD",
        country="US",
    )
    codes = (("velocity",), ("amount_spike",), ("velocity", "amount_spike"))[n % 3]
    verdict = Verdict(
        transaction_id=tx.id,
        score=0.9,
        decision="review",
        reasons=[Reason(code, f"{code} fired", 6.0, 5.0, 0.4) for code in codes],
        alert_id=f"al-{n:05d}",
        rules_version="rules-1",
        latency_ms=0.2,
    )
    return StoredRecord(tx, verdict, SEVERITIES[n % 3])


def mixed_records() -> list[list[StoredRecord]]:
    """Six batches of ten (a batch's alerts share created_at: ties are ordered by id).
    Alert 7's account and merchant ids are the same, "shared-1": found by two arms. The
    transaction of alert 44 has the id "acct-2", another alert's account id."""
    batches = []
    for first in range(0, 60, 10):
        batch = []
        for n in range(first, first + 10):
            account, merchant = ACCOUNTS[n % 4], MERCHANTS[n % 3]
            if n == 7:
                account = merchant = "shared-1"
            batch.append(record(n, account, merchant, tx_id="acct-2" if n == 44 else None))
        batches.append(batch)
    return batches


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "fraudwatch.db")
    await store.start(_ignore)
    for batch in mixed_records():
        await store.write_batch(batch)
    # Some taken, some closed: owner and status filters have something to tell apart.
    for n in range(0, 60, 4):
        await store.acknowledge(f"al-{n:05d}", "alice" if n % 8 else "bob")
    for n in range(0, 60, 8):
        await store.resolve(f"al-{n:05d}", "bob", "fraud", None)
    yield store
    await store.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


_filtered_query = reads._filtered_query


def _before(
    statuses: frozenset[str] | None,
    where: AlertFilter,
    limit: int,
    after: tuple[str, str] | None,
    *,
    json_checked: bool = False,
) -> tuple[str, tuple[object, ...]]:
    """The search as it was before migration 10 (one query, the merchant id read out of
    alert_json row by row): the listing it gave is the one to keep."""
    rest = msgspec.structs.replace(where, query=None)
    sql, params = _filtered_query(statuses, rest, limit, after, json_checked=json_checked)
    if where.query is None:
        return sql, params
    merchant = "json_extract(a.alert_json, '$.transaction.merchant_id')"
    if json_checked:
        merchant = f"CASE WHEN json_valid(a.alert_json) THEN {merchant} END"
    searched = f"(a.account_id = ? OR a.transaction_id = ? OR {merchant} = ?)"
    if " WHERE " in sql:
        sql = sql.replace(" WHERE ", f" WHERE {searched} AND ", 1)
    else:
        sql = sql.replace(" ORDER BY ", f" WHERE {searched} ORDER BY ", 1)
    return sql, (where.query, where.query, where.query, *params)


async def pages(
    store: SqliteStore, statuses: list[AlertStatus] | None, where: AlertFilter, limit: int
) -> list[tuple[list[str], str | None]]:
    found: list[tuple[list[str], str | None]] = []
    cursor = None
    while True:
        page = await store.list_alerts(statuses, limit, cursor, where)
        found.append(([a.id for a in page.alerts], page.next_cursor))
        if (cursor := page.next_cursor) is None:
            return found


SEARCHES = ("acct-0", "acct-2", "shared-1", "m-0", "m-2", "tx-00013", "acct", "nothing")
NARROWER: tuple[tuple[list[AlertStatus] | None, AlertFilter], ...] = (
    (None, AlertFilter()),
    (["open"], AlertFilter()),
    (["open", "acknowledged"], AlertFilter()),
    (None, AlertFilter(severities=frozenset({"high", "critical"}))),
    (None, AlertFilter(unowned=True)),
    (None, AlertFilter(owner="alice")),
    (["acknowledged"], AlertFilter(owner="alice", rule="velocity")),
    (None, AlertFilter(rule="amount_spike")),
    (
        None,
        AlertFilter(
            event_from_us=(T0 - EPOCH) // dt.timedelta(microseconds=1) + 15_000_000,
            event_to_us=(T0 - EPOCH) // dt.timedelta(microseconds=1) + 50_000_000,
        ),
    ),
)


async def test_a_search_lists_what_the_one_query_search_listed_page_by_page(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every kind of id, with each other filter, one, three and all alerts a page: the same
    # alerts in the same order, and the same cursors, as the query it replaced.
    cases = [
        (statuses, msgspec.structs.replace(where, query=q), limit)
        for q, (statuses, where), limit in itertools.product(SEARCHES, NARROWER, (1, 3, 100))
    ]
    now = [await pages(store, *case) for case in cases]
    monkeypatch.setattr(reads, "_filtered_query", _before)
    was = [await pages(store, *case) for case in cases]
    for case, got, expected in zip(cases, now, was, strict=True):
        assert got == expected, case
    # Not agreement on nothing: most searches find alerts, several a page at a time.
    found = [sum(len(ids) for ids, _ in got) for got in now]
    assert sum(n > 0 for n in found) > len(cases) / 2
    assert sum(len(got) > 2 for got in now) > 50


async def test_each_kind_of_id_is_found_once_with_the_other_filters(store: SqliteStore) -> None:
    async def ids(
        q: str, statuses: list[AlertStatus] | None = None, **narrower: object
    ) -> list[str]:
        where = AlertFilter(query=q, **narrower)  # type: ignore[arg-type]
        return [i for part, _ in await pages(store, statuses, where, 2) for i in part]

    # acct-2: n % 4 == 2, less alert 7, which is shared-1's; plus alert 44, whose
    # transaction's id is "acct-2". Newest first: batches of ten, ties by id, descending.
    assert await ids("acct-2") == [
        f"al-{n:05d}" for n in range(58, -1, -1) if n % 4 == 2 or n == 44
    ]
    # Account and merchant both: listed once.
    assert await ids("shared-1") == ["al-00007"]
    assert await ids("m-2") == [f"al-{n:05d}" for n in range(59, -1, -1) if n % 3 == 2 and n != 7]
    assert await ids("tx-00013") == ["al-00013"]
    assert await ids("acct-2", ["open"]) == [
        f"al-{n:05d}" for n in (58, 54, 50, 46, 42, 38, 34, 30, 26, 22, 18, 14, 10, 6, 2)
    ]
    assert await ids("m-2", None, owner="alice") == ["al-00044", "al-00020"]
    assert await ids("m-2", None, rule="velocity", severities=frozenset({"critical"})) == [
        f"al-{n:05d}" for n in range(59, -1, -1) if n % 3 == 2 and n != 7
    ]
    assert await ids("m-2", None, rule="velocity", severities=frozenset({"high"})) == []
    assert await ids("acct") == []


def _plan(path: Path, statuses: frozenset[str] | None, where: AlertFilter) -> list[str]:
    sql, params = reads._filtered_query(statuses, where, 51, ("2026-03-02T12:00:00.000Z", "al"))
    with raw(path) as conn:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_a_search_reads_its_three_indexes_and_never_walks_the_history(
    store: SqliteStore, tmp_path: Path
) -> None:
    # Whatever else narrows it: with a status or an owner, SQLite would rather read the
    # status or work-queue index, which give the order, and walk every alert they hold.
    for statuses, where in NARROWER:
        wanted = None if statuses is None else frozenset(statuses)
        plan = _plan(tmp_path / "fraudwatch.db", wanted, msgspec.structs.replace(where, query="x"))
        searches = [step for step in plan if step.startswith("SEARCH a ")]
        assert [step.split()[4] for step in searches] == [
            "alerts_by_account",
            "alerts_by_merchant",
            "alerts_by_transaction",
        ], plan
        assert not [step for step in plan if step.startswith("SCAN a")], plan
        # The cursor bounds the two long ranges, not only the page's end.
        assert all("(created_at,id)<(?,?)" in step for step in searches[:2]), plan


async def _as_before_migration_10(path: Path) -> None:
    """A store as fraudwatch left it before migration 10, with the mixed alerts in it: no
    merchant_id column, no index on it, schema version 9."""
    store = SqliteStore(path)
    await store.start(_ignore)
    for batch in mixed_records():
        await store.write_batch(batch)
    await store.close()
    with raw(path) as conn:
        conn.execute("DROP INDEX alerts_by_merchant")
        conn.execute("ALTER TABLE alerts DROP COLUMN merchant_id")
        conn.execute("DELETE FROM schema_migrations WHERE version = 10")
        assert schema_version(conn) == 9


# Rows another tool or a damaged file left: cut short, not UTF-8, a BLOB, and an alert
# whose merchant id is a number (its JSON still an alert's: the transaction is kept raw).
DAMAGE = {
    "al-00010": "substr(alert_json, 1, 40)",
    "al-00011": "CAST(x'7bff7d' AS TEXT)",
    "al-00014": "CAST(alert_json AS BLOB)",
    "al-00017": "json_set(alert_json, '$.transaction.merchant_id', 42)",
}


async def test_migration_10_fills_in_the_merchant_ids_of_stored_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fraudwatch.db"
    await _as_before_migration_10(path)
    with raw(path) as conn:
        for alert_id, damage in DAMAGE.items():
            conn.execute(f"UPDATE alerts SET alert_json = {damage} WHERE id = ?", (alert_id,))
    store = SqliteStore(path)
    await store.start(_ignore)  # migrates: a damaged row must not fail it, and so the start
    try:
        with raw(path) as conn:
            assert schema_version(conn) == LATEST_VERSION
            merchants = dict(conn.execute("SELECT id, merchant_id FROM alerts"))
        expected = {f"al-{n:05d}": "shared-1" if n == 7 else MERCHANTS[n % 3] for n in range(60)}
        # A BLOB is JSON text to SQLite 3.40's JSON functions, JSONB (and so not JSON) to
        # 3.45's: its merchant id is what a search read out of it before, either way.
        blob = merchants["al-00014"]
        assert blob in ("m-2", None)
        assert merchants == {**expected, **dict.fromkeys(DAMAGE), "al-00014": blob}
        # Searches then list what they listed before the step, the damaged rows left out
        # (the ones not JSON), or not found (the number: a search gives text).
        cases = [
            (None, AlertFilter(query=q), limit)
            for q, limit in itertools.product(("m-1", "m-2", "acct-2", "42"), (1, 4, 100))
        ]
        now = [await pages(store, *case) for case in cases]
        monkeypatch.setattr(reads, "_filtered_query", _before)
        was = [await pages(store, *case) for case in cases]
        assert [[ids for ids, _ in got] for got in now] == [[ids for ids, _ in got] for got in was]
        listed = [i for ids, _ in now[2] for i in ids]  # m-1, all at once
        assert listed == [
            f"al-{n:05d}" for n in range(58, -1, -1) if n % 3 == 1 and n not in (7, 10)
        ]
        assert not [ids for ids, _ in now[-1] if ids]  # "42", a number in al-00017's JSON
    finally:
        await store.close()
