"""GET /alerts narrowed on a long history: how long the store's own listing read takes for a
search (`q`), a rule, an owner, an event-time range, two statuses with another filter, and
which indexes SQLite uses.

Builds DB (if it does not exist) through the store's migrations up to BUILT_AT, then writes N
alerts and their transactions straight into the tables (the detection loop would take hours):
created over 90 days, 200,000 accounts, 20,000 merchants, reason codes from a few common rules
and two rare ones, owners from 20 analysts and a rare one. The file is then migrated by
whatever fraudwatch runs the script (PYTHONPATH), and the migration and the file's growth are
timed: run main's code first, then this branch's on a copy, to measure the upgrade's
back-fill and both sides' reads on the same rows. Each read is
`sqlite_reads.alert_page` (the query, the snapshot, decoding the alerts), its median of
--repeat runs; the ids of the first two pages are kept in the results file, so that two
runs can be compared row for row.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import platform
import random
import sqlite3
import statistics
import subprocess
import time
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
from results_file import write_results

import server
from server.store import sqlite_reads as reads
from server.store import sqlite_writer
from server.store.base import AlertEvent, AlertFilter, AlertStatus
from server.store.migrations import LATEST_VERSION, MIGRATIONS, migrate, schema_version
from server.store.sqlite import SqliteStore

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 90
ACCOUNTS = 200_000
MERCHANTS = 20_000
COMMON_RULES = ("velocity", "amount_spike", "new_device", "impossible_travel", "card_testing")
RARE_RULE = "night_travel"  # ~1 alert in 50,000
ABSENT_RULE = "never_fires"
USERS = tuple(f"analyst-{i}" for i in range(20))
RARE_USER = "analyst-rare"  # owns ~1 alert in 100,000
LIMIT = 50  # the dashboard's page
OPEN_ACK: list[AlertStatus] = ["open", "acknowledged"]
# The rows are written as fraudwatch left them at this schema (no merchant_id, reason codes,
# event time beside the alert): every later step, and its back-fill, runs when the file is
# opened by the code measured, and is timed, whichever version that is.
BUILT_AT = 9


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def _stamp(at: dt.datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(path: Path, n: int, seed: int) -> None:
    async def create() -> None:
        store = SqliteStore(path)
        older = [m for m in MIGRATIONS if m.version <= BUILT_AT]
        with mock.patch.object(sqlite_writer, "migrate", partial(migrate, migrations=older)):
            await store.start(_ignore)
        await store.close()

    asyncio.run(create())
    rng = random.Random(seed)
    step = dt.timedelta(days=DAYS) / n
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        txs: list[tuple[Any, ...]] = []
        alerts: list[tuple[Any, ...]] = []
        for i in range(n):
            created = START + step * i
            event = created - dt.timedelta(seconds=rng.randrange(1, 30))
            account = f"acct-{rng.randrange(ACCOUNTS):06d}"
            merchant = f"m-{rng.randrange(MERCHANTS):05d}"
            tx_id = f"tx-{i:08d}"
            alert_id = f"al-{i:08d}"
            tx = {
                "id": tx_id,
                "timestamp": _stamp(event),
                "account_id": account,
                "merchant_id": merchant,
                "amount": f"{rng.lognormvariate(3.5, 0.8):.2f}",
                "currency": "USD",
                "country": "US",
            }
            codes = rng.sample(COMMON_RULES, rng.randrange(1, 3))
            if rng.random() < 1 / 50_000:
                codes.append(RARE_RULE)
            status: AlertStatus = rng.choice(("open", "acknowledged", "resolved", "resolved"))
            owner = None if status == "open" else rng.choice(USERS)
            if owner is not None and rng.random() < 1 / 100_000:
                owner = RARE_USER
            severity = rng.choice(("medium", "high", "high", "critical"))
            stamp = _stamp(created)
            alert = {
                "id": alert_id,
                "status": status,
                "severity": severity,
                "score": 0.9,
                "decision": "review",
                "reasons": [
                    {"code": c, "message": f"{c} fired", "observed": 6, "threshold": 5}
                    for c in codes
                ],
                "transaction": tx,
                "transaction_id": tx_id,
                "account_id": account,
                "rules_version": "rules-1",
                "owner": owner,
                "disposition": None,
                "note": None,
                "created_at": stamp,
                "updated_at": stamp,
                "received_at": stamp,
            }
            tx_json = msgspec.json.encode(tx).decode()
            event_us = (event - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
                microseconds=1
            )
            txs.append((tx_id, account, event_us, tx["amount"], "USD", tx_json, "[]", alert_id))
            alerts.append((alert_id, tx_id, account, status, severity, owner, stamp, stamp, alert))
            if len(alerts) == 10_000 or i == n - 1:
                conn.executemany(
                    "INSERT INTO transactions (id, account_id, event_time_us, amount, currency, "
                    "transaction_json, verdict_json, alert_id, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, '2026-01-01T00:00:00.000Z')",
                    txs,
                )
                conn.executemany(
                    "INSERT INTO alerts (id, transaction_id, account_id, status, severity, "
                    "owner, created_at, updated_at, alert_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row[:8], msgspec.json.encode(row[8]).decode()) for row in alerts],
                )
                txs.clear()
                alerts.clear()
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _some(conn: sqlite3.Connection, sql: str) -> str:
    (value,) = conn.execute(sql).fetchone()
    return str(value)


def cases(conn: sqlite3.Connection) -> list[tuple[str, list[AlertStatus] | None, AlertFilter]]:
    """What an analyst asks for, with ids taken from the file (an old alert's: its account
    and merchant have alerts all along the history)."""
    account = _some(conn, "SELECT account_id FROM alerts WHERE id = 'al-00000100'")
    tx_id = _some(conn, "SELECT transaction_id FROM alerts WHERE id = 'al-00000100'")
    merchant = _some(
        conn, "SELECT json_extract(alert_json, '$.transaction.merchant_id') FROM alerts "
        "WHERE id = 'al-00000100'",
    )  # fmt: skip
    first = "SELECT min(event_time_us) FROM transactions"
    old = int(_some(conn, first))
    hour = 3600 * 1_000_000
    day = 24 * hour
    last = int(_some(conn, "SELECT max(event_time_us) FROM transactions"))
    common_owner = USERS[3]
    critical = AlertFilter(severities=frozenset({"critical"}))
    low = frozenset({"low"})  # no alert has it
    return [
        ("q=account", None, AlertFilter(query=account)),
        ("q=merchant", None, AlertFilter(query=merchant)),
        ("q=transaction", None, AlertFilter(query=tx_id)),
        ("q=no such id", None, AlertFilter(query="nothing-like-it")),
        ("q=merchant status=open", ["open"], AlertFilter(query=merchant)),
        (
            "q=merchant severity=critical,high owner=unowned",
            None,
            AlertFilter(query=merchant, severities=frozenset({"critical", "high"}), unowned=True),
        ),
        ("q=merchant rule=velocity", None, AlertFilter(query=merchant, rule="velocity")),
        ("rule=common", None, AlertFilter(rule="velocity")),
        ("rule=rare", None, AlertFilter(rule=RARE_RULE)),
        ("rule=absent", None, AlertFilter(rule=ABSENT_RULE)),
        ("rule=rare status=open", ["open"], AlertFilter(rule=RARE_RULE)),
        ("rule=common status=open", ["open"], AlertFilter(rule="velocity")),
        ("rule=common owner=rare", None, AlertFilter(rule="velocity", owner=RARE_USER)),
        ("severity=critical", None, AlertFilter(severities=frozenset({"critical"}))),
        ("owner=rare", None, AlertFilter(owner=RARE_USER)),
        ("owner=rare status=acknowledged", ["acknowledged"], AlertFilter(owner=RARE_USER)),
        ("owner=common", None, AlertFilter(owner=common_owner)),
        ("owner=common rule=rare", None, AlertFilter(owner=common_owner, rule=RARE_RULE)),
        ("owner=unowned", None, AlertFilter(unowned=True)),
        ("event time: first hour", None, AlertFilter(event_from_us=old, event_to_us=old + hour)),
        ("event time: first day", None, AlertFilter(event_from_us=old, event_to_us=old + day)),
        (
            "event time: first day status=open",
            ["open"],
            AlertFilter(event_from_us=old, event_to_us=old + day),
        ),
        (
            "event time: first hour owner=common",
            None,
            AlertFilter(owner=common_owner, event_from_us=old, event_to_us=old + hour),
        ),
        ("event time: first week", None, AlertFilter(event_from_us=old, event_to_us=old + 7 * day)),
        ("event time: first 60 days", None, AlertFilter(event_to_us=old + 60 * day)),
        (
            "event time: all but the last 3 days",
            None,
            AlertFilter(event_from_us=old, event_to_us=last - 3 * day),
        ),
        ("event time: last hour", None, AlertFilter(event_from_us=last - hour)),
        ("event time: last day", None, AlertFilter(event_from_us=last - day)),
        ("event time: last 30 days", None, AlertFilter(event_from_us=last - 30 * day)),
        # Two statuses (the dashboard's "open and acknowledged") with another filter.
        ("status=open,acknowledged severity=critical", OPEN_ACK, critical),
        ("status=acknowledged,resolved severity=critical", ["acknowledged", "resolved"], critical),
        ("status=open,acknowledged owner=unowned", OPEN_ACK, AlertFilter(unowned=True)),
        (
            "status=open,acknowledged severity=critical,high owner=unowned",
            OPEN_ACK,
            AlertFilter(severities=frozenset({"critical", "high"}), unowned=True),
        ),
        (
            "status=acknowledged,resolved owner=unowned",
            ["acknowledged", "resolved"],
            AlertFilter(unowned=True),
        ),
        ("status=open,acknowledged severity=low (none)", OPEN_ACK, AlertFilter(severities=low)),
        (
            "status=open,acknowledged event time: first 60 days",
            OPEN_ACK,
            AlertFilter(event_to_us=old + 60 * day),
        ),
    ]


def _time(conn: sqlite3.Connection, repeat: int, *args: Any) -> tuple[float, Any]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = reads.alert_page(conn, *args)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), page


def measure(path: Path, repeat: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    figures["db_bytes_before_migration"] = path.stat().st_size
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        before = schema_version(conn)
        started = time.perf_counter()
        applied = migrate(conn)
        figures["migration"] = {
            "from": before,
            "to": LATEST_VERSION,
            "applied": applied,
            "seconds": round(time.perf_counter() - started, 2),
        }
        (figures["alerts"],) = conn.execute("SELECT count(*) FROM alerts").fetchone()
        # The file before the steps (checkpointed when built or last closed), and the WAL
        # their one transaction left: the disk an upgrade needs on top.
        wal = path.with_name(f"{path.name}-wal")
        figures["wal_bytes_after_migration"] = wal.stat().st_size if wal.exists() else 0
    conn = reads.connect(path)
    try:
        results = {}
        for name, statuses, where in cases(conn):
            wanted = None if statuses is None else frozenset(statuses)
            # The reads of an event-time range, of an owner with a rule, and of several
            # statuses with a severity are chosen by counts (where the version has them).
            chosen = {
                name: choose(conn, where)
                for name, choose in (
                    ("by_event_time", getattr(reads, "read_by_event_time", None)),
                    ("rule_first", getattr(reads, "rule_before_owner", None)),
                )
                if choose is not None
            }
            few = getattr(reads, "few_of_severity", None)
            if few is not None:
                chosen["few_of_severity"] = not chosen["by_event_time"] and few(conn, wanted, where)
            sql, params = reads._filtered_query(wanted, where, LIMIT + 1, None, **chosen)
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            ms, page = _time(conn, repeat, statuses, LIMIT, None, where)
            ids = [a.id for a in page.alerts]
            second: list[str] = []
            ms_next = None
            if page.next_cursor is not None:
                ms_next, rest = _time(conn, repeat, statuses, LIMIT, page.next_cursor, where)
                second = [a.id for a in rest.alerts]
            digest = hashlib.sha256(" ".join([*ids, "|", *second]).encode()).hexdigest()[:16]
            results[name] = {
                "ms": round(ms, 2),
                "ms_page_2": None if ms_next is None else round(ms_next, 2),
                "found": len(ids),
                "plan": plan,
                "pages_digest": digest,
                "page_1": ids,
                "page_2": second,
            }
            shown = "; ".join(plan)
            print(f"{name:50} {ms:9.1f} ms  {len(ids):3} found  {digest}  {shown}", flush=True)
        figures["reads"] = results
    finally:
        conn.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path, help="built here if it does not exist")
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    built = None
    if not args.db.exists():
        started = time.perf_counter()
        build(args.db, args.alerts, args.seed)
        built = round(time.perf_counter() - started, 1)
        print(f"built {args.db} ({args.alerts:,} alerts) in {built} s", flush=True)
    figures = measure(args.db, args.repeat)
    print(f"migration: {figures['migration']}")
    # The code measured may be another checkout's (PYTHONPATH): name that one.
    code = Path(server.__file__).resolve().parents[1]
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=code, capture_output=True, text=True
    )
    saved = write_results(
        "alert-search",
        {
            "commit": f"{described.stdout.strip()} ({code})",
            "db": str(args.db),
            "db_bytes": args.db.stat().st_size,
            "built_seconds": built,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            **figures,
        },
    )
    print(f"results: {saved}")


if __name__ == "__main__":
    main()
