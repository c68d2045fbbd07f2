"""Narrowing the alert list on a long history in the SQLite store: a search by account,
merchant or transaction id (GET /alerts?q=), a rule, an owner, an event-time range and two
statuses with a severity or unowned, each read along its own index with every other filter
and the cursor, listing the same alerts in the same order, with the same cursors, as the
one query it replaced; and migrations 10-13, which give the alerts stored before them what
those indexes read."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import get_args

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


# main's query builder as it was before migration 10, verbatim: the listings it gave are
# the ones to keep. Always with `json_checked`, which lists what its first try listed on
# a store whose alert_json is all JSON, and is what main's alert_page tried next on one
# that is not (the store's read no longer needs the second try).
def _main_filtered_query(
    statuses: frozenset[str] | None,
    where: AlertFilter,
    limit: int,
    after: tuple[str, str] | None,
    *,
    json_checked: bool = False,
) -> tuple[str, tuple[object, ...]]:
    """SQL for a narrowed listing, newest first. One plain query: the filters that have an
    index (status, account) keep it short; the rest are checked row by row along the
    created_at order, which is fine for a page but not free on a huge history. With
    `json_checked`, a row whose alert_json is not JSON fails the JSON conditions rather
    than the query: one more parse of each row they look at, so only once one has failed."""
    conds: list[str] = []
    params: list[object] = []

    def of_json(condition: str) -> str:
        if not json_checked:
            return condition
        return f"CASE WHEN json_valid(a.alert_json) THEN {condition} END"

    def any_of(column: str, values: Collection[str]) -> None:
        conds.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(sorted(values))

    if statuses is not None and statuses != reads._STATUSES:
        if not statuses:
            return "SELECT created_at, id, alert_json FROM alerts WHERE 0", ()
        any_of("a.status", statuses)
    if where.severities is not None:
        any_of("a.severity", where.severities)
    if where.unowned:
        conds.append("a.owner IS NULL")
    elif where.owner is not None:
        conds.append("a.owner = ?")
        params.append(where.owner)
    if where.rule is not None:
        conds.append(
            of_json(
                "EXISTS (SELECT 1 FROM json_each(a.alert_json, '$.reasons') r "
                "WHERE json_extract(r.value, '$.code') = ?)"
            )
        )
        params.append(where.rule)
    if where.query is not None:
        merchant = of_json("json_extract(a.alert_json, '$.transaction.merchant_id')")
        conds.append(f"(a.account_id = ? OR a.transaction_id = ? OR {merchant} = ?)")
        params += [where.query] * 3
    join = ""
    if where.event_from_us is not None or where.event_to_us is not None:
        join = " JOIN transactions t ON t.id = a.transaction_id"
        if where.event_from_us is not None:
            conds.append("t.event_time_us >= ?")
            params.append(where.event_from_us)
        if where.event_to_us is not None:
            conds.append("t.event_time_us <= ?")
            params.append(where.event_to_us)
    if after is not None:
        conds.append("(a.created_at, a.id) < (?, ?)")
        params += list(after)
    where_sql = f" WHERE {' AND '.join(conds)}" if conds else ""
    sql = (
        f"SELECT a.created_at, a.id, a.alert_json FROM alerts a{join}{where_sql} "
        "ORDER BY a.created_at DESC, a.id DESC LIMIT ?"
    )
    return sql, (*params, limit)


def _before(
    statuses: frozenset[str] | None,
    where: AlertFilter,
    limit: int,
    after: tuple[str, str] | None,
    *,
    by_event_time: bool = False,  # how this version reads it: the one query had one way
    rule_first: bool = False,
    few_of_severity: bool = False,
) -> tuple[str, tuple[object, ...]]:
    return _main_filtered_query(statuses, where, limit, after, json_checked=True)


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


def _plan(
    path: Path,
    statuses: frozenset[str] | None,
    where: AlertFilter,
    by_event_time: bool = False,
    rule_first: bool = False,
) -> list[str]:
    after = ("2026-03-02T12:00:00.000Z", "al")
    chosen = {"by_event_time": by_event_time, "rule_first": rule_first}
    sql, params = reads._filtered_query(statuses, where, 51, after, **chosen)
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
        # A rule, checked on each alert found: by key, not by reading its JSON.
        if where.rule is not None:
            assert (
                plan.count("SEARCH r USING PRIMARY KEY (code=? AND created_at=? AND alert_id=?)")
                == 3
            ), plan


async def test_a_rule_reads_its_own_range_of_reason_codes(
    store: SqliteStore, tmp_path: Path
) -> None:
    # A rule that fires rarely walked the whole history, reading each alert's JSON. Now its
    # alerts are one range of alert_reasons, newest first, bounded by the cursor; whatever
    # else narrows the listing is checked on each alert read from there; but an owner's
    # range, which is read instead (test_an_owner_reads_their_own_range_...).
    for statuses, where in NARROWER:
        if where.owner is not None:
            continue
        wanted = None if statuses is None else frozenset(statuses)
        narrowed = msgspec.structs.replace(where, rule="velocity")
        plan = _plan(tmp_path / "fraudwatch.db", wanted, narrowed)
        assert plan[:2] == [
            "SEARCH r USING PRIMARY KEY (code=? AND (created_at,alert_id)<(?,?))",
            "SEARCH a USING INDEX sqlite_autoindex_alerts_1 (id=?)",
        ], plan
        assert not [step for step in plan if step.startswith("SCAN")], plan


async def _as_schema_9(path: Path) -> None:
    """A store as fraudwatch left it before migration 10, with the mixed alerts in it: no
    merchant_id column nor its index, no alert_reasons, no resolution_labels, schema
    version 9."""
    store = SqliteStore(path)
    await store.start(_ignore)
    for batch in mixed_records():
        await store.write_batch(batch)
    await store.close()
    with raw(path) as conn:
        conn.execute("DROP TABLE alert_reasons")
        conn.execute("DROP INDEX alerts_by_merchant")
        conn.execute("ALTER TABLE alerts DROP COLUMN merchant_id")
        conn.execute("DROP INDEX alerts_by_owner")
        conn.execute("DROP INDEX alerts_by_event")
        conn.execute("ALTER TABLE alerts DROP COLUMN event_time_us")
        conn.execute("DROP TABLE resolution_labels")  # (14 copies label_changes as it finds it)
        conn.execute("DELETE FROM schema_migrations WHERE version > 9")
        assert schema_version(conn) == 9


# Rows another tool or a damaged file left: cut short, not UTF-8, a BLOB; an alert whose
# merchant id is a number, and one that names its rule twice (their JSON still alerts').
DAMAGE = {
    "al-00010": "substr(alert_json, 1, 40)",
    "al-00011": "CAST(x'7bff7d' AS TEXT)",
    "al-00014": "CAST(alert_json AS BLOB)",
    "al-00017": "json_set(alert_json, '$.transaction.merchant_id', 42)",
    "al-00018": "json_insert(alert_json, '$.reasons[#]', json(alert_json -> '$.reasons[0]'))",
}


def _codes(n: int) -> tuple[str, ...]:
    return tuple(r.code for r in record(n, "a", "m").verdict.reasons)


async def test_migrations_10_and_11_fill_in_what_stored_alerts_are_searched_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fraudwatch.db"
    await _as_schema_9(path)
    with raw(path) as conn:
        for alert_id, damage in DAMAGE.items():
            conn.execute(f"UPDATE alerts SET alert_json = {damage} WHERE id = ?", (alert_id,))
    store = SqliteStore(path)
    await store.start(_ignore)  # migrates: a damaged row must not fail it, and so the start
    try:
        with raw(path) as conn:
            assert schema_version(conn) == LATEST_VERSION
            merchants = dict(conn.execute("SELECT id, merchant_id FROM alerts"))
            reasons = conn.execute("SELECT alert_id, code FROM alert_reasons").fetchall()
        # A BLOB is JSON text to SQLite 3.40's JSON functions, JSONB (and so not JSON) to
        # 3.45's: it is found as a search found it before, either way.
        blob = merchants["al-00014"]
        assert blob in ("m-2", None)
        expected = {f"al-{n:05d}": "shared-1" if n == 7 else MERCHANTS[n % 3] for n in range(60)}
        not_json = {"al-00010": None, "al-00011": None, "al-00014": blob}
        assert merchants == {**expected, **not_json, "al-00017": None}
        blob_codes = {code for alert_id, code in reasons if alert_id == "al-00014"}
        assert blob_codes in (set(_codes(14)), set())
        assert sorted(reasons) == sorted(
            (f"al-{n:05d}", code)
            for n in range(60)
            for code in _codes(n)
            if n not in (10, 11) and (n != 14 or blob_codes)
        )  # al-00018's rule once
        # Searches then list what they listed before the steps, the damaged rows left out
        # (the ones not JSON), or not found (the number: a search gives text).
        cases = [
            (None, AlertFilter(query=q, rule=rule), limit)
            for q, rule, limit in itertools.product(
                ("m-1", "m-2", "acct-2", "42", None), ("velocity", None), (1, 4, 100)
            )
            if q or rule
        ]
        now = [await pages(store, *case) for case in cases]
        monkeypatch.setattr(reads, "_filtered_query", _before)
        was = [await pages(store, *case) for case in cases]
        assert [[ids for ids, _ in got] for got in now] == [[ids for ids, _ in got] for got in was]
        m_1 = [i for ids, _ in await pages(store, None, AlertFilter(query="m-1"), 100) for i in ids]
        assert m_1 == [f"al-{n:05d}" for n in range(58, -1, -1) if n % 3 == 1 and n not in (7, 10)]
        assert (await store.list_alerts(None, 100, None, AlertFilter(query="42"))).alerts == []
    finally:
        await store.close()


OWNERS = ("alice", "bob", "carol", "nobody")
# What narrows an owner's listing (or a listing with no owner) besides it, without `q`.
ALONGSIDE: tuple[tuple[list[AlertStatus] | None, AlertFilter], ...] = (
    (None, AlertFilter()),
    (["acknowledged"], AlertFilter()),
    (["open", "resolved"], AlertFilter()),
    (None, AlertFilter(severities=frozenset({"high", "critical"}))),
    (None, AlertFilter(rule="velocity")),
    (["acknowledged"], AlertFilter(rule="amount_spike", severities=frozenset({"critical"}))),
)


async def _listed(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, cases: list[Listing]
) -> tuple[list[list[tuple[list[str], str | None]]], list[list[tuple[list[str], str | None]]]]:
    """Each case's pages, as this store reads them and as the one query did."""
    now = [await pages(store, *case) for case in cases]
    with monkeypatch.context() as patched:
        patched.setattr(reads, "_filtered_query", _before)
        was = [await pages(store, *case) for case in cases]
    return now, was


Listing = tuple[list[AlertStatus] | None, AlertFilter, int]


def _owner_cases() -> list[Listing]:
    return [
        (statuses, msgspec.structs.replace(where, owner=owner), limit)
        for owner, (statuses, where), limit in itertools.product(OWNERS, ALONGSIDE, (1, 3, 100))
    ] + [
        (statuses, msgspec.structs.replace(where, unowned=True), limit)
        for (statuses, where), limit in itertools.product(ALONGSIDE, (1, 3, 100))
    ]


async def _move_owners(store: SqliteStore) -> None:
    """Owners change over an alert's life: each writer path that changes one, once."""
    for name in ("alice", "bob", "carol"):
        await store.add_user(name, "x", "analyst")
    await store.unacknowledge("al-00004", "alice")  # alice's, back to nobody's
    await store.assign("al-00012", "alice", "carol")  # alice's, now carol's
    await store.reopen("al-00008", "bob", None)  # bob's, resolved, back to nobody's
    await store.acknowledge("al-00009", "bob")
    await store.resolve("al-00009", "bob", "fraud", None)
    claimed = await store.claim_next("carol")
    assert claimed is not None


@pytest.mark.parametrize("read", ["owner first", "rule first", "as counted"])
async def test_an_owner_lists_what_the_one_query_listed_page_by_page(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    # After the owners moved (claim, assign, unacknowledge, reopen, resolve): each owner's
    # alerts, with each other filter, one, three and all a page, are those the one query
    # listed, in its order, with its cursors, whichever range a rule with them is read
    # along; and those whose owner the store says.
    await _move_owners(store)
    if read != "as counted":
        chosen = read == "rule first"
        monkeypatch.setattr(reads, "rule_before_owner", lambda _conn, _where: chosen)
    cases = _owner_cases()
    now, was = await _listed(store, monkeypatch, cases)
    for case, got, expected in zip(cases, now, was, strict=True):
        assert got == expected, case
    everything = (await store.list_alerts(None, 100, None)).alerts
    for owner in OWNERS:
        listed = [
            i for ids, _ in await pages(store, None, AlertFilter(owner=owner), 2) for i in ids
        ]
        assert listed == [a.id for a in everything if a.owner == owner], owner
    carol = [i for ids, _ in await pages(store, None, AlertFilter(owner="carol"), 2) for i in ids]
    assert "al-00012" in carol and len(carol) == 2  # assigned, and claimed
    assert sum(len(got) > 2 for got in now) >= 15  # not agreement on nothing


async def test_an_owner_reads_their_own_range_whatever_else_narrows_it(
    store: SqliteStore, tmp_path: Path
) -> None:
    # A rare owner alone walked the whole history; with a status SQLite read that status's
    # index, with a rule the rule's reason codes, and walked those. Now the owner's alerts
    # are one range in the listing's order, bounded by the cursor: no sort, no scan.
    for statuses, where in (*NARROWER, *ALONGSIDE):
        wanted = None if statuses is None else frozenset(statuses)
        narrowed = msgspec.structs.replace(where, owner="alice", unowned=False)
        plan = _plan(tmp_path / "fraudwatch.db", wanted, narrowed)
        assert (
            plan[0] == "SEARCH a USING INDEX alerts_by_owner (owner=? AND (created_at,id)<(?,?))"
        ), plan
        assert not [step for step in plan if "SCAN" in step or "TEMP B-TREE" in step], plan


def _us(n: float) -> int:
    """The event time of transaction n (T0 + n s), in µs since the epoch."""
    return (T0 - EPOCH) // dt.timedelta(microseconds=1) + round(n * 1_000_000)


# (from, to): a few alerts, old ones, from the start, to the end, one alone, none.
RANGES = ((15, 50), (0, 5), (None, 20), (40, None), (33, 33), (10.5, 10.7), (70, None))


def _ranged(ranges: Collection[tuple[float | None, float | None]]) -> list[AlertFilter]:
    return [
        AlertFilter(
            event_from_us=None if start is None else _us(start),
            event_to_us=None if end is None else _us(end),
        )
        for start, end in ranges
    ]


def _event_cases() -> list[Listing]:
    others = [*ALONGSIDE, (None, AlertFilter(owner="alice")), (None, AlertFilter(unowned=True))]
    return [
        (
            statuses,
            msgspec.structs.replace(
                where, event_from_us=when.event_from_us, event_to_us=when.event_to_us
            ),
            limit,
        )
        for when, (statuses, where), limit in itertools.product(
            _ranged(RANGES), others, (1, 3, 100)
        )
    ]


@pytest.mark.parametrize("read", ["along the range", "newest first", "as counted"])
async def test_an_event_time_range_lists_what_the_one_query_listed_page_by_page(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    # Whichever way a range is read (its range of alerts_by_event sorted, the newest-first
    # walk, or as counted: short below 10 alerts here), with each other filter, one, three
    # and all a page: the alerts the one query listed, joining each to its transaction, in
    # its order, with its cursors.
    await _move_owners(store)
    if read == "as counted":
        monkeypatch.setattr(reads, "SHORT_EVENT_RANGE", 10)
    else:
        chosen = read == "along the range"
        monkeypatch.setattr(reads, "read_by_event_time", lambda _conn, _where: chosen)
    cases = _event_cases()
    now, was = await _listed(store, monkeypatch, cases)
    for case, got, expected in zip(cases, now, was, strict=True):
        assert got == expected, case
    assert sum(len(got) > 2 for got in now) >= 15  # not agreement on nothing


async def test_a_short_or_old_event_time_range_is_read_along_its_index(
    store: SqliteStore, tmp_path: Path
) -> None:
    # The history's first hour walked every newer alert first. A range that holds few
    # alerts, or that the walk reaches only past many newer ones, is read along
    # alerts_by_event, the page's keys sorted (the cursor checked in the index, before
    # any row is read), then the page's alerts by id; any other is walked newest first,
    # its range checked on each alert read and never read along alerts_by_event (a wide
    # range's sort would read most of the history).
    path = tmp_path / "fraudwatch.db"
    for statuses, where in (*NARROWER, *ALONGSIDE):
        wanted = None if statuses is None else frozenset(statuses)
        ranged = msgspec.structs.replace(where, event_from_us=1, event_to_us=2)
        along = _plan(path, wanted, ranged, by_event_time=True)
        walked = _plan(path, wanted, ranged, by_event_time=False)
        if where.query is not None:  # a search reads its three ids' ranges either way
            assert along == walked
            continue
        range_read = "alerts_by_event (event_time_us>? AND event_time_us<?)"
        assert along[0] == "CO-ROUTINE k", along
        assert along[1] in (f"SEARCH a USING {k} {range_read}" for k in ("INDEX", "COVERING INDEX"))
        # COVERING when nothing but the range and the cursor narrows it: no alert's row.
        if where == AlertFilter() and statuses is None:
            assert along[1] == f"SEARCH a USING COVERING INDEX {range_read}", along
        assert "SEARCH a USING INDEX sqlite_autoindex_alerts_1 (id=?)" in along, along
        assert not [step for step in along if step.startswith("SCAN a")], along
        assert not [step for step in walked if "alerts_by_event" in step], walked
        assert not [step for step in walked if "TEMP B-TREE" in step], walked
    alone = _plan(path, None, AlertFilter(event_from_us=1, event_to_us=2), by_event_time=False)
    assert alone == ["SEARCH a USING INDEX alerts_by_time ((created_at,id)<(?,?))"], alone


async def test_the_read_is_chosen_by_counting_along_the_event_time_index(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "SHORT_EVENT_RANGE", 10)
    path = tmp_path / "fraudwatch.db"

    def chosen(start: float | None, end: float | None, **other: object) -> bool:
        (where,) = _ranged([(start, end)])
        with closing(reads.connect(path)) as conn:
            return reads.read_by_event_time(conn, msgspec.structs.replace(where, **other))

    assert chosen(0, 5)  # 6 alerts
    assert chosen(0, 9.5)  # 10
    assert not chosen(40, None)  # 20, the newest among them: the walk starts in them
    # Wider: read along the range when it holds at most twice as many as are newer.
    assert not chosen(15, 50)  # 36, and 9 newer than them: the walk soon reaches them
    assert chosen(None, 20)  # 21, and 39 newer than them
    assert not chosen(0, 45)  # 46, 14 newer
    assert chosen(0, 35)  # 36, 24 newer (counted past the first caps of 10 and 20)
    assert chosen(0, 29)  # 30, 30 newer
    assert not chosen(None, 20, owner="alice")  # the owner's alerts walked instead
    assert chosen(None, 20, unowned=True)
    assert chosen(0, 5, owner="alice")
    assert chosen(70, None)  # none
    assert not chosen(0, 5, query="acct-0")  # a search reads its ids' ranges
    assert not chosen(None, None, owner="alice")


async def test_the_writer_keeps_each_alerts_event_time_beside_it(
    store: SqliteStore, tmp_path: Path
) -> None:
    with raw(tmp_path / "fraudwatch.db") as conn:
        times = dict(conn.execute("SELECT id, event_time_us FROM alerts"))
    assert times == {f"al-{n:05d}": _us(n) for n in range(60)}


async def test_migration_13_copies_each_alerts_event_time_from_its_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fraudwatch.db"
    await _as_schema_9(path)
    with raw(path) as conn:
        # What a damaged file, or another tool, can leave: an alert's transaction gone, an
        # event time that is text, a BLOB, a REAL. The join compared them as stored.
        conn.execute("DELETE FROM transactions WHERE id = 'tx-00020'")
        conn.execute("UPDATE transactions SET event_time_us = 'late' WHERE id = 'tx-00030'")
        conn.execute("UPDATE transactions SET event_time_us = x'00' WHERE id = 'tx-00031'")
        conn.execute(
            "UPDATE transactions SET event_time_us = event_time_us + 0.5 WHERE id = 'tx-00032'"
        )
    store = SqliteStore(path)
    await store.start(_ignore)  # migrates: none of those must fail it, and so the start
    try:
        with raw(path) as conn:
            assert schema_version(conn) == LATEST_VERSION
            times = dict(conn.execute("SELECT id, event_time_us FROM alerts"))
        assert times == {
            **{f"al-{n:05d}": _us(n) for n in range(60)},
            "al-00020": None,
            "al-00030": "late",
            "al-00031": b"\x00",
            "al-00032": _us(32) + 0.5,
        }
        cases = [
            (
                statuses,
                msgspec.structs.replace(
                    where, event_from_us=w.event_from_us, event_to_us=w.event_to_us
                ),
                limit,
            )
            for w, (statuses, where), limit in itertools.product(
                _ranged(((15, 50), (None, 40), (10, None), (31, 33))), ALONGSIDE[:3], (3, 100)
            )
        ]
        for chosen in (True, False):
            monkeypatch.setattr(reads, "read_by_event_time", lambda _c, _w, c=chosen: c)
            now, was = await _listed(store, monkeypatch, cases)
            assert now == was
        listed = await pages(store, None, _ranged([(10, None)])[0], 100)
        assert "al-00030" in listed[0][0] and "al-00020" not in listed[0][0]
    finally:
        await store.close()


async def test_an_owner_with_a_rule_reads_the_shorter_of_their_two_ranges(
    store: SqliteStore, tmp_path: Path
) -> None:
    # A rare rule and an owner of thousands: the owner's range, each alert's rule checked,
    # read thousands of keys for one alert; the rule's, each alert's owner checked, a few.
    path = tmp_path / "fraudwatch.db"
    for n in range(1, 60, 4):  # dave takes 15 open alerts; alice has 7, velocity 40
        await store.acknowledge(f"al-{n:05d}", "dave")

    def rule_first(owner: str, rule: str) -> bool:
        with closing(reads.connect(path)) as conn:
            return reads.rule_before_owner(conn, AlertFilter(owner=owner, rule=rule))

    assert not rule_first("alice", "velocity")
    assert rule_first("dave", "never_fires")
    with raw(path) as conn:  # a rule rarer than dave's alerts
        conn.execute("DELETE FROM alert_reasons WHERE code = 'velocity' AND alert_id > 'al-00020'")
    assert rule_first("dave", "velocity")  # 14 alerts, dave 15
    assert not rule_first("alice", "velocity")  # 14: more than alice's 7
    with closing(reads.connect(path)) as conn:
        assert not reads.rule_before_owner(conn, AlertFilter(unowned=True, rule="velocity"))
        assert not reads.rule_before_owner(conn, AlertFilter(owner="dave", query="acct-0"))
    narrowed = AlertFilter(owner="dave", rule="velocity")
    for statuses in (None, frozenset({"acknowledged"})):
        assert _plan(path, statuses, narrowed, rule_first=True)[:2] == [
            "SEARCH r USING PRIMARY KEY (code=? AND (created_at,alert_id)<(?,?))",
            "SEARCH a USING INDEX sqlite_autoindex_alerts_1 (id=?)",
        ]


# Two statuses (all three are no filter) with what else narrows a listing that has no search,
# rule or owner: a severity, unowned, an event-time range walked newest first, together.
SEVERAL_WITH: tuple[AlertFilter, ...] = (
    AlertFilter(severities=frozenset({"critical"})),
    AlertFilter(severities=frozenset({"high", "critical"})),
    AlertFilter(severities=frozenset({"low"})),  # one alert (below), or none
    AlertFilter(unowned=True),
    AlertFilter(unowned=True, severities=frozenset({"medium", "critical"})),
    AlertFilter(event_from_us=_us(15), event_to_us=_us(50)),
    AlertFilter(severities=frozenset({"high"}), event_to_us=_us(40)),
    AlertFilter(unowned=True, event_from_us=_us(5)),
)
SEVERAL: tuple[frozenset[AlertStatus], ...] = tuple(
    frozenset(pair) for pair in itertools.combinations(("open", "acknowledged", "resolved"), 2)
)


@pytest.mark.parametrize("read", ["per status", "as counted"])
async def test_several_statuses_with_a_filter_list_what_the_one_query_listed(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, read: str
) -> None:
    # One arm per status (per status and severity, unowned) merged in the listing's order,
    # or as counted (a severity with at most 4 alerts among the statuses: one query, sorted):
    # with one, two, three and all alerts a page, the alerts the one query listed, in its
    # order, with its cursors. Some acknowledged and resolved alerts without an owner, one
    # of them low (a file another tool wrote), so that every arm of an unowned listing has
    # alerts.
    await _move_owners(store)
    with raw(tmp_path / "fraudwatch.db") as conn:
        conn.execute(
            "UPDATE alerts SET owner = NULL WHERE id IN "
            "('al-00016', 'al-00020', 'al-00040', 'al-00048', 'al-00052', 'al-00056')"
        )
        conn.execute("UPDATE alerts SET severity = 'low' WHERE id = 'al-00052'")
    monkeypatch.setattr(reads, "read_by_event_time", lambda _conn, _where: False)
    if read == "per status":
        monkeypatch.setattr(reads, "few_of_severity", lambda _conn, _statuses, _where: False)
    else:
        monkeypatch.setattr(reads, "FEW_OF_SEVERITY", 4)
    cases: list[Listing] = [
        (sorted(statuses), where, limit)
        for statuses, where, limit in itertools.product(SEVERAL, SEVERAL_WITH, (1, 2, 3, 100))
    ]
    now, was = await _listed(store, monkeypatch, cases)
    for case, got, expected in zip(cases, now, was, strict=True):
        assert got == expected, case
    assert sum(len(got) > 2 for got in now) >= 20  # not agreement on nothing
    unowned = AlertFilter(unowned=True)
    found = [
        i for ids, _ in await pages(store, ["acknowledged", "resolved"], unowned, 2) for i in ids
    ]
    assert found == ["al-00056", "al-00052", "al-00048", "al-00040", "al-00020", "al-00016"]


async def test_several_statuses_with_a_filter_read_an_index_range_per_status(
    store: SqliteStore, tmp_path: Path
) -> None:
    # `status IN (...)` with a severity read every alert of those statuses the severity
    # matched and sorted them for a page; unowned, it walked every unowned alert for an
    # owned status's few. Now each status is its own range in the listing's order (each
    # status and severity, unowned), merged: no sort, no scan, the cursor in each range.
    for statuses, where in itertools.product(SEVERAL, SEVERAL_WITH):
        plan = _plan(tmp_path / "fraudwatch.db", statuses, where)
        assert plan[0] == "MERGE (UNION ALL)", plan
        assert not [step for step in plan if "SCAN" in step or "TEMP B-TREE" in step], plan
        searches = [step for step in plan if step.startswith("SEARCH")]
        if where.unowned:
            severities = where.severities or frozenset(get_args(Severity))
            range_read = (
                "alerts_unowned (status=? AND owner=? AND severity=? AND (created_at,id)<(?,?))"
            )
            assert searches == [f"SEARCH a USING INDEX {range_read}"] * (2 * len(severities))
        else:
            range_read = "alerts_by_status (status=? AND (created_at,id)<(?,?))"
            assert searches == [f"SEARCH a USING INDEX {range_read}"] * 2, plan


async def test_several_statuses_with_few_of_a_severity_are_read_in_one_query_sorted(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Along each status's range a severity is checked on each alert's row: one that none of
    # them has walked them all, where the one query checks alerts_unowned's entries alone
    # and sorts the few it finds. Counted along that index, stopped past FEW_OF_SEVERITY.
    path = tmp_path / "fraudwatch.db"
    monkeypatch.setattr(reads, "FEW_OF_SEVERITY", 5)

    def few(statuses: Collection[AlertStatus] | None, **where: object) -> bool:
        wanted = None if statuses is None else frozenset(statuses)
        with closing(reads.connect(path)) as conn:
            return reads.few_of_severity(conn, wanted, AlertFilter(**where))  # type: ignore[arg-type]

    open_ack: list[AlertStatus] = ["open", "acknowledged"]
    critical = frozenset({"critical"})
    assert not few(open_ack, severities=critical)  # 17 of them
    assert few(open_ack, severities=frozenset({"low"}))  # none
    assert few(["acknowledged", "resolved"], severities=critical)  # 5: al-00008, 20, 32, 44, 56
    # Not a question for one status or all three, without a severity, or with what is read
    # along its own index (a search, a rule, an owner; unowned: status and severity).
    assert not few(["acknowledged"], severities=frozenset({"low"}))
    assert not few(None, severities=frozenset({"low"}))
    assert not few(open_ack)
    for other in ({"query": "acct-0"}, {"rule": "velocity"}, {"owner": "bob"}, {"unowned": True}):
        assert not few(open_ack, severities=frozenset({"low"}), **other)
    sql, params = reads._filtered_query(
        frozenset(open_ack), AlertFilter(severities=critical), 51, None, few_of_severity=True
    )
    with raw(path) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan == [
        "SEARCH a USING INDEX alerts_unowned (status=?)",
        "USE TEMP B-TREE FOR ORDER BY",
    ]
