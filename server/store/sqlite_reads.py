"""SQLite read queries (plain functions of a connection), and what the writer shares with them."""

from __future__ import annotations

import base64
import itertools
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any, get_args

import msgspec

from server.detection.verdict import Severity, Verdict
from server.store.base import (
    AccountPage,
    AccountTransaction,
    Alert,
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertStatus,
    ApiKey,
    AuditEntry,
    Found,
    InvalidCursor,
    Label,
    LabelChange,
    ModelInputs,
    Note,
    SessionRecord,
    StoredTransaction,
    User,
    UserInfo,
)
from server.store.errors import StoredRowDamaged
from server.store.sqlite_rows import decode_verdict, unpack_inputs

BUSY_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)

encoder = msgspec.json.Encoder()
_alert_decoder = msgspec.json.Decoder(Alert)
_detail_decoder = msgspec.json.Decoder(dict[str, object])
_STATUSES: frozenset[str] = frozenset(get_args(AlertStatus))
_SEVERITIES: frozenset[str] = frozenset(get_args(Severity))

_LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
# One bound JSON array instead of IN (?, ?, ...): no limit on the number of ids, and a single
# prepared statement whatever the batch size.
_STORED = "SELECT id, verdict_json FROM transactions WHERE id IN (SELECT value FROM json_each(?))"
_STORED_VERDICTS = (
    "SELECT id, alert_id, verdict_json FROM transactions "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_STORED_BOTH = (
    "SELECT id, alert_id, verdict_json, transaction_json FROM transactions "
    "WHERE id IN (SELECT value FROM json_each(?))"
)

_MODEL_INPUTS = (
    "SELECT t.id, l.layout, t.model_packing, t.model_inputs FROM transactions t "
    "JOIN input_layouts l ON l.id = t.model_layout "
    "WHERE t.id IN (SELECT value FROM json_each(?)) AND t.model_inputs IS NOT NULL"
)


class DamagedRows:
    """The damaged rows a store has logged, by table and id: each is logged at WARNING the
    first time it is met and at DEBUG after that. A damaged alert is met by every list read
    that reaches it (each dashboard's, each refresh); logged each time, it buried the log.
    The `cap` rows met last are remembered (~100 bytes each): one met before those is
    logged at WARNING again."""

    def __init__(self, cap: int = 4096) -> None:
        self.cap = cap
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()  # every reader thread and the writer's log through it

    def first(self, what: str, ident: object) -> bool:
        """Whether damaged row `ident` of `what` (a table, or a table and its key column)
        is met for the first time (among the `cap` met last); it is remembered."""
        key = (what, str(ident))
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self.cap:
                self._seen.popitem(last=False)
        return True


class Connection(sqlite3.Connection):
    """A store's connection, which knows the store's `DamagedRows` (None: log every time)."""

    damaged: DamagedRows | None = None


def connect(path: Path, damaged: DamagedRows | None = None) -> sqlite3.Connection:
    # isolation_level=None: the sqlite3 module issues no implicit BEGIN/COMMIT; we do.
    # check_same_thread=False only so that close() may run on another thread once the owning
    # thread has finished.
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
        factory=Connection,
    )
    conn.damaged = damaged
    return conn


def damaged_level(conn: sqlite3.Connection, what: str, ident: object, first: int) -> int:
    """`first` the first time `conn`'s store meets damaged row `ident` of `what`, DEBUG
    after that (`DamagedRows`); always `first` on a connection of no store."""
    damaged = conn.damaged if isinstance(conn, Connection) else None
    return first if damaged is None or damaged.first(what, ident) else logging.DEBUG


def log_damaged(
    conn: sqlite3.Connection,
    what: str,
    ident: object,
    problem: object,
    message: str = "damaged row left out",
) -> None:
    """Log a damaged row as `message: what ident: problem`, at WARNING the first time the
    store meets it and at DEBUG after that."""
    level = damaged_level(conn, what, ident, logging.WARNING)
    log.log(level, "%s: %s %s: %s", message, what, ident, problem)


class NotText:
    """A TEXT value whose bytes are not UTF-8 (a damaged file, another tool's write), as
    `text_or_not` reads it: sqlite3's own decoding raises on it, failing the whole query."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"not UTF-8 ({self.raw[:40]!r})"


def text_or_not(raw: bytes) -> str | NotText:
    """The text factory of a read that met a value not UTF-8 (`SqliteStore._run_query`)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return NotText(raw)


def not_utf8(exc: sqlite3.OperationalError) -> bool:
    """Whether sqlite3 raised `exc` decoding a TEXT value (its text factory is str's)."""
    return str(exc).startswith("Could not decode to UTF-8")


def _as_text(value: str | NotText) -> str:
    return value if isinstance(value, str) else value.raw.decode(errors="backslashreplace")


def readable(
    cursor: sqlite3.Cursor,
    what: str,
    key: int = 0,
    *,
    rows: list[Any] | None = None,
    damaged: dict[str, str] | None = None,
    keep: Collection[str] = (),
) -> list[Any]:
    """The rows of `cursor` (or `rows`, read from it) less those holding a TEXT value that
    is not UTF-8 (other than in `keep`, which the caller checks), each named by its `key`
    column in `damaged` or, without one, logged. One damaged row costs only itself, as a
    known_transactions row whose JSON is unreadable does. Free on a connection with str's
    text factory: no NotText there, the query raised instead and runs again with ours."""
    found: list[Any] = cursor.fetchall() if rows is None else rows
    if cursor.connection.text_factory is not text_or_not:
        return found
    names = [column[0] for column in cursor.description]
    kept: list[Any] = []
    for row in found:
        bad = [
            f"{name} {value!r}"
            for name, value in zip(names, row, strict=True)
            if isinstance(value, NotText) and name not in keep
        ]
        if not bad:
            kept.append(row)
            continue
        ident = _as_text(row[key]) if isinstance(row[key], str | NotText) else str(row[key])
        if damaged is not None:
            damaged[ident] = "; ".join(bad)
        else:
            log_damaged(cursor.connection, what, ident, "; ".join(bad))
    return kept


def last_seq(conn: sqlite3.Connection) -> int:
    # sqlite_sequence, not max(seq): the last seq ever given, even if events were pruned.
    return int(conn.execute(_LAST_SEQ).fetchone()[0])


def stored_verdicts(conn: sqlite3.Connection, transaction_ids: Collection[str]) -> dict[str, str]:
    """The verdict JSON of those ids that are stored."""
    ids = encoder.encode(list(transaction_ids)).decode()
    return dict(readable(conn.execute(_STORED, (ids,)), "transactions"))


def known_verdicts(
    conn: sqlite3.Connection, transaction_ids: Collection[str]
) -> dict[str, Verdict]:
    ids = encoder.encode(list(transaction_ids)).decode()
    return {
        tx_id: decode_verdict(tx_id, alert_id, verdict)
        for tx_id, alert_id, verdict in readable(
            conn.execute(_STORED_VERDICTS, (ids,)), "transactions"
        )
    }


def known_transactions(
    conn: sqlite3.Connection, transaction_ids: Collection[str]
) -> Found[tuple[Verdict, bytes]]:
    """Row by row: one that cannot be read is named in `damaged`, the others are read."""
    ids = encoder.encode(list(transaction_ids)).decode()
    rows: dict[str, tuple[Verdict, bytes]] = {}
    damaged: dict[str, str] = {}
    found = readable(conn.execute(_STORED_BOTH, (ids,)), "transactions", damaged=damaged)
    for tx_id, alert_id, verdict, transaction in found:
        try:
            decoded = decode_verdict(tx_id, alert_id, verdict)
        except (msgspec.DecodeError, TypeError) as exc:  # not a verdict's JSON; not text
            damaged[tx_id] = f"verdict_json unreadable: {exc}"
            continue
        if not isinstance(transaction, str):
            damaged[tx_id] = f"transaction_json unreadable: {type(transaction).__name__}"
            continue
        rows[tx_id] = (decoded, transaction.encode())
    return Found(rows, damaged)


def event_times(conn: sqlite3.Connection, transaction_ids: Collection[str]) -> dict[str, int]:
    ids = encoder.encode(list(transaction_ids)).decode()
    return dict(
        conn.execute(
            "SELECT id, event_time_us FROM transactions "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        ).fetchall()
    )


def model_inputs(conn: sqlite3.Connection, transaction_ids: Collection[str]) -> Found[ModelInputs]:
    """Row by row, as known_transactions: inputs that are not bytes, or not what their
    packing says, are named in `damaged`. The bytes come back as they were written, however
    the row keeps them (sqlite_rows.pack_inputs)."""
    ids = encoder.encode(list(transaction_ids)).decode()
    rows: dict[str, ModelInputs] = {}
    damaged: dict[str, str] = {}
    found = readable(conn.execute(_MODEL_INPUTS, (ids,)), "transactions", damaged=damaged)
    for tx_id, layout, packing, inputs in found:
        if not isinstance(inputs, bytes):
            damaged[tx_id] = f"model_inputs unreadable: {type(inputs).__name__}, not bytes"
            continue
        try:
            rows[tx_id] = (layout, unpack_inputs(packing, inputs))
        except ValueError as exc:
            damaged[tx_id] = f"model_inputs unreadable: {exc}"
    return Found(rows, damaged)


def prunable_rowids(conn: sqlite3.Connection, received_before: str) -> tuple[int, int]:
    """[first rowid, first rowid of a transaction received at or after `received_before`):
    rowids follow the order rows were stored in, and so their `received_at`, so a binary
    search over rowids finds the end in ~25 indexed lookups, without scanning the table."""
    # Two subqueries: SQLite answers a lone min() or max() from one end of the rowid
    # order, but both in one SELECT read every row (20.8 ms at 200,000 rows).
    first, high = conn.execute(
        "SELECT (SELECT min(rowid) FROM transactions), (SELECT max(rowid) FROM transactions)"
    ).fetchone()
    if first is None:
        return 0, 0
    low, high = first, high + 1
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(
            "SELECT received_at FROM transactions WHERE rowid >= ? ORDER BY rowid LIMIT 1",
            (middle,),
        ).fetchone()
        if row is None or row[0] >= received_before:
            high = middle
        else:
            low = middle + 1
    return int(first), int(low)


def transaction_positions(
    conn: sqlite3.Connection, transaction_ids: Collection[str]
) -> dict[str, int]:
    ids = encoder.encode(list(transaction_ids)).decode()
    return dict(
        conn.execute(
            "SELECT id, rowid FROM transactions WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        ).fetchall()
    )


def last_position(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute("SELECT rowid, id FROM transactions ORDER BY rowid DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def position_since(conn: sqlite3.Connection, received_since: str, at_most: int) -> int:
    """Rowids follow the order rows were stored in (`prunable_rowids`): the rowid before the
    first received at or after `received_since`, or before the `at_most` newest if later."""
    _, first_recent = prunable_rowids(conn, received_since)
    if at_most <= 0:
        return _max_rowid(conn)
    # OFFSET walks the rowid b-tree's leaves, not the rows: ~50 ms a million.
    row = conn.execute(
        "SELECT rowid FROM transactions ORDER BY rowid DESC LIMIT 1 OFFSET ?", (at_most - 1,)
    ).fetchone()
    start = first_recent if row is None else max(first_recent, int(row[0]))
    return max(start - 1, 0)


def _max_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM transactions").fetchone()[0])


def transactions_after(
    conn: sqlite3.Connection, position: int, until: int, limit: int
) -> list[StoredTransaction]:
    rows = conn.execute(
        "SELECT rowid, transaction_json FROM transactions WHERE rowid > ? AND rowid <= ? "
        "ORDER BY rowid LIMIT ?",
        (position, until, limit),
    )
    # Anything but text (a column edited by hand, bytes not UTF-8) comes back empty:
    # unreadable, and said so.
    return [
        StoredTransaction(rowid, raw.encode() if isinstance(raw, str) else b"")
        for rowid, raw in rows
    ]


def one_alert(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...], what: str
) -> Alert | None:
    """The alert of the one row (id, alert_json) that `sql` selects, or None. Raises
    StoredRowDamaged when that row cannot be read back, named `what` until its id is read:
    a read of one alert (the drawer, a write that starts from the alert as stored) has
    nothing else to give."""
    try:
        row = conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError as exc:
        if not not_utf8(exc):
            raise
        raise StoredRowDamaged(what, str(exc)) from None
    if row is None:
        return None
    try:
        return _alert_decoder.decode(row[1])
    except (msgspec.DecodeError, TypeError) as exc:  # not an alert's JSON; not text
        raise StoredRowDamaged(f"alert {row[0]}", f"alert_json unreadable: {exc}") from None


def alert(conn: sqlite3.Connection, alert_id: str) -> Alert | None:
    sql = "SELECT id, alert_json FROM alerts WHERE id = ?"
    return one_alert(conn, sql, (alert_id,), f"alert {alert_id}")


def alert_page(
    conn: sqlite3.Connection,
    statuses: Collection[AlertStatus] | None,
    limit: int,
    cursor: str | None,
    where: AlertFilter | None = None,
) -> AlertPage:
    """Raises ValueError for a limit below 1 or an unknown status, InvalidCursor for a
    malformed cursor."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    wanted = None if statuses is None else frozenset(statuses)
    if wanted is not None and not wanted <= _STATUSES:
        raise ValueError(f"Unknown alert status in {sorted(wanted)}")
    after = None if cursor is None else decode_cursor(cursor)
    if where is not None and where.active:
        # Outside the snapshot: the count only chooses how the page is read.
        short = read_by_event_time(conn, where)
        rule_first = rule_before_owner(conn, where)
        few = not short and few_of_severity(conn, wanted, where)
        sql, params = _filtered_query(
            wanted,
            where,
            limit + 1,
            after,
            by_event_time=short,
            rule_first=rule_first,
            few_of_severity=few,
        )
    else:
        sql, params = _page_query(wanted, limit + 1, after)
    # One read transaction: the seq and the alerts come from the same snapshot, so a client
    # that loads this page and then resumes from seq misses nothing and sees nothing twice.
    conn.execute("BEGIN")
    try:
        seq = last_seq(conn)
        result = conn.execute(sql, params)
        rows = result.fetchall()
    finally:
        conn.execute("COMMIT")
    # `more` and the cursor from the rows as read: a damaged row left out of the page
    # neither ends the listing early nor moves the next page.
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    alerts: list[Alert] = []
    for _, alert_id, snapshot in readable(result, "alerts", 1, rows=rows[:limit]):
        try:
            alerts.append(_alert_decoder.decode(snapshot))
        except (msgspec.DecodeError, TypeError) as exc:  # not an alert's JSON; not text
            _left_out(conn, "alerts", alert_id, exc)
    return AlertPage(
        alerts=alerts,
        next_cursor=None if last is None else encode_cursor(_as_text(last[0]), _as_text(last[1])),
        seq=seq,
    )


def _left_out(conn: sqlite3.Connection, what: str, ident: object, exc: Exception) -> None:
    """Log a row whose alert_json is text but not an alert's JSON (truncated, another
    shape), as `readable` logs one that is not UTF-8: the read goes on without it."""
    log_damaged(conn, what, ident, f"alert_json unreadable: {exc}")


def _page_query(
    statuses: frozenset[str] | None, limit: int, after: tuple[str, str] | None
) -> tuple[str, tuple[object, ...]]:
    """SQL for alerts newest first, after the cursor position.

    Several statuses become one index range per status, merged under a final sort: a single
    `status IN (...)` either sorts every match or walks the whole history looking for them.
    """
    order = " ORDER BY created_at DESC, id DESC LIMIT ?"
    columns = "SELECT created_at, id, alert_json FROM alerts"
    position = tuple(after or ())
    if statuses is None or statuses == _STATUSES:
        where = " WHERE (created_at, id) < (?, ?)" if after else ""
        return f"{columns}{where}{order}", (*position, limit)
    if not statuses:
        return f"{columns} WHERE 0", ()
    keyset = " AND (created_at, id) < (?, ?)" if after else ""
    arm = f"{columns} WHERE status = ?{keyset}{order}"
    params: list[object] = []
    for status in sorted(statuses):
        params += [status, *position, limit]
    if len(statuses) == 1:
        return arm, tuple(params)
    union = " UNION ALL ".join(f"SELECT * FROM ({arm})" for _ in statuses)
    return f"{union}{order}", (*params, limit)


def _filtered_query(
    statuses: frozenset[str] | None,
    where: AlertFilter,
    limit: int,
    after: tuple[str, str] | None,
    *,
    by_event_time: bool = False,
    rule_first: bool = False,
    few_of_severity: bool = False,
) -> tuple[str, tuple[object, ...]]:
    """SQL for a narrowed listing, newest first. A search (`q`) reads one index per kind of
    id; an event-time range `by_event_time` (`read_by_event_time`) its range of
    alerts_by_event, sorted; an owner their range of alerts_by_owner (a rule's range of
    alert_reasons first when `rule_first`: `rule_before_owner`), a rule its range, a status
    its index, several statuses one range each (`_per_status_query`; unless they have
    `few_of_severity`: then one query, their few sorted); the other filters are checked
    row by row along that order (or created_at's), which is fine for a page but not free
    on a huge history when they match little. No JSON function: a row whose alert_json is
    not JSON is read, and left out when decoded, as in a listing with no filter."""
    conds: list[str] = []
    params: list[object] = []

    def any_of(column: str, values: Collection[str]) -> None:
        conds.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(sorted(values))

    if statuses is not None and statuses != _STATUSES:
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
    by_event_time = by_event_time and where.query is None
    # Unary +: checked on each row read some other way, never a reason for SQLite to read
    # alerts_by_event instead (a wide range's sort would read most of the history).
    column = "a.event_time_us" if by_event_time else "+a.event_time_us"
    bounds, event_params = _event_bounds(where, column)
    conds += bounds
    params += event_params
    position = tuple(after or ())
    owner = None if where.unowned else where.owner
    by_rule = owner is None or rule_first
    if where.query is None and not by_event_time and by_rule and where.rule is not None:
        return _rule_query(where.rule, conds, params, position, limit)
    if where.rule is not None:
        conds.append(
            "EXISTS (SELECT 1 FROM alert_reasons r "
            "WHERE r.code = ? AND r.created_at = a.created_at AND r.alert_id = a.id)"
        )
        params.append(where.rule)
    if after is not None:
        conds.append("(a.created_at, a.id) < (?, ?)")
        params += position
    if where.query is not None:
        return _search_query(where.query, conds, params, limit)
    if by_event_time:
        return _event_query(conds, params, limit)
    if owner is not None:
        # An owner's alerts are one range of alerts_by_owner in the listing's order, bounded
        # by the cursor. INDEXED BY: left to itself, SQLite reads alerts_by_status for a
        # status, or the rule's alert_reasons, and walks them for the owner's few.
        return (
            f"{_COLUMNS} FROM alerts a INDEXED BY alerts_by_owner "
            f"WHERE {' AND '.join(conds)}{_ORDER}",
            (*params, limit),
        )
    if statuses is not None and 1 < len(statuses) < len(_STATUSES) and not few_of_severity:
        # Each arm states its status, severity and owner; the range and the cursor remain.
        cursor_cond = ["(a.created_at, a.id) < (?, ?)"] if after is not None else []
        return _per_status_query(
            sorted(statuses), where, [*bounds, *cursor_cond], [*event_params, *position], limit
        )
    where_sql = f" WHERE {' AND '.join(conds)}" if conds else ""
    return f"{_COLUMNS} FROM alerts a{where_sql}{_ORDER}", (*params, limit)


# Several statuses' alerts of a severity that has at most this many among them are read in
# one query and sorted (its alerts_unowned entries checked, no row read for the others),
# not walked per status (each alert's row read for its severity): a severity that none of
# them has walked them all, 2.9 s on 300,000 alerts where the one query took 0.3-0.5 s.
FEW_OF_SEVERITY = 1_000


def few_of_severity(
    conn: sqlite3.Connection, statuses: frozenset[str] | None, where: AlertFilter
) -> bool:
    """Whether a listing of several statuses narrowed by a severity (no search, rule,
    owner or unowned) finds at most FEW_OF_SEVERITY alerts, counted along alerts_unowned
    (status, severity: the index alone), stopped once past it. The answer chooses the
    read, never what it lists."""
    if statuses is None or not 1 < len(statuses) < len(_STATUSES) or where.severities is None:
        return False
    if where.query is not None or where.rule is not None or where.owner is not None:
        return False
    if where.unowned:
        return False  # one range per status and severity: each entry read is one listed
    conds = [
        f"status IN ({', '.join('?' * len(statuses))})",
        f"severity IN ({', '.join('?' * len(where.severities))})",
    ]
    params: list[object] = [*sorted(statuses), *sorted(where.severities)]
    rows = "alerts INDEXED BY alerts_unowned"
    return _count_to(conn, conds, params, FEW_OF_SEVERITY, rows) <= FEW_OF_SEVERITY


def _per_status_query(
    statuses: list[str],
    where: AlertFilter,
    conds: list[str],
    params: list[object],
    limit: int,
) -> tuple[str, tuple[object, ...]]:
    """Several statuses with a severity, unowned or an event-time range to walk: one arm
    per status, along alerts_by_status newest first with the severity checked on each
    alert (as a status alone is read); unowned, one arm per status and severity, along
    alerts_unowned, whose every entry read is one that matches. Each arm is checked against
    `conds` (the range, the cursor), and the arms are merged in the listing's order: a
    compound's ORDER BY merges arms read in that order, so each is read only as far as
    the page takes it. One `status IN (...)` read every alert of those statuses that the
    severity matched and sorted them all for a page (or, unowned, walked every unowned
    alert for an owned status's few)."""
    rest = "".join(f" AND {cond}" for cond in conds)
    arms: list[str] = []
    arm_params: list[object] = []
    if where.unowned:
        # INDEXED BY: (status, owner, severity) equal, it gives (created_at, id) in order.
        severities = sorted(_SEVERITIES if where.severities is None else where.severities)
        for status, severity in itertools.product(statuses, severities):
            arms.append(
                f"{_COLUMNS} FROM alerts a INDEXED BY alerts_unowned WHERE a.status = ? "
                f"AND a.owner IS NULL AND a.severity = ?{rest}"
            )
            arm_params += [status, severity, *params]
    else:
        checked = ""
        severity_params: list[object] = []
        if where.severities is not None:
            checked = f" AND a.severity IN ({', '.join('?' * len(where.severities))})"
            severity_params = [*sorted(where.severities)]
        for status in statuses:
            arms.append(f"{_COLUMNS} FROM alerts a WHERE a.status = ?{checked}{rest}")
            arm_params += [status, *severity_params, *params]
    if not arms:  # no severity asked for
        return "SELECT created_at, id, alert_json FROM alerts WHERE 0", ()
    merged = " ORDER BY created_at DESC, id DESC LIMIT ?"
    return f"{' UNION ALL '.join(arms)}{merged}", (*arm_params, limit)


_COLUMNS = "SELECT a.created_at, a.id, a.alert_json"
_ORDER = " ORDER BY a.created_at DESC, a.id DESC LIMIT ?"


def _event_bounds(where: AlertFilter, column: str) -> tuple[list[str], list[object]]:
    """The conditions of `where`'s event-time range on `column`, and their parameters."""
    conds: list[str] = []
    params: list[object] = []
    if where.event_from_us is not None:
        conds.append(f"{column} >= ?")
        params.append(where.event_from_us)
    if where.event_to_us is not None:
        conds.append(f"{column} <= ?")
        params.append(where.event_to_us)
    return conds, params


# A range of event times that holds at most this many alerts is read along alerts_by_event
# and sorted, whatever else: 4-15 ms for the 11,000 of a day on a million alerts, where the
# walk from the newest read the whole history for an old one (1.8-3.2 s).
SHORT_EVENT_RANGE = 20_000


def read_by_event_time(conn: sqlite3.Connection, where: AlertFilter) -> bool:
    """Whether the listing is best read along `where`'s event-time range, sorted, rather
    than newest first checking each alert's: when the range holds few alerts, or more than
    twice as many as have a later event time (a row the walk passes costs about twice an
    entry of the range sorted: 2.3-2.6 us against 1.2-1.8 on a million alerts). Alerts are
    stored about as their transactions happen (a replay aside), so those later than the
    range are about those the walk passes first. A search's ids' ranges, or an owner's,
    are walked instead of a range that is not short. Counted along alerts_by_event, each
    count stopped as soon as it decides (a tenth of either read's cost a row, or less).
    The answer chooses the read, never what it lists."""
    bounds, params = _event_bounds(where, "event_time_us")
    if where.query is not None or not bounds:
        return False
    if _count_to(conn, bounds, params, SHORT_EVENT_RANGE) <= SHORT_EVENT_RANGE:
        return True
    if where.event_to_us is None or (where.owner is not None and not where.unowned):
        return False  # the walk starts in the range, or goes along the owner's alerts
    later: tuple[list[str], list[object]] = (["event_time_us > ?"], [where.event_to_us])
    cap = SHORT_EVENT_RANGE
    while True:
        passed = _count_to(conn, *later, cap)
        inside = _count_to(conn, bounds, params, 2 * cap)
        if passed <= cap or inside <= 2 * cap:  # one of them exact: that decides
            return inside <= 2 * passed
        cap *= 2


def _count_to(
    conn: sqlite3.Connection,
    conds: list[str],
    params: list[object],
    cap: int,
    rows: str = "alerts INDEXED BY alerts_by_event",
) -> int:
    """How many of `rows` match `conds`, or `cap` + 1 if more."""
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {rows} WHERE {' AND '.join(conds)} LIMIT ?)"
    return int(conn.execute(sql, (*params, cap + 1)).fetchone()[0])


def rule_before_owner(conn: sqlite3.Connection, where: AlertFilter) -> bool:
    """Whether an owner's listing narrowed to a rule is best read along the rule's range
    of alert_reasons (each alert's owner checked) rather than the owner's (each alert's
    rule checked by key): when the rule's is the shorter. Both counted along their index,
    with caps that double from 64 until one count is exact: about the shorter's length."""
    if where.query is not None or where.rule is None or where.owner is None or where.unowned:
        return False
    cap = 64
    while True:
        rule = _count_to(conn, ["code = ?"], [where.rule], cap, "alert_reasons")
        owner = _count_to(
            conn, ["owner = ?"], [where.owner], cap, "alerts INDEXED BY alerts_by_owner"
        )
        if rule <= cap or owner <= cap:
            return rule < owner
        cap *= 2


def _event_query(
    conds: list[str], params: list[object], limit: int
) -> tuple[str, tuple[object, ...]]:
    """Along the range of alerts_by_event, the page's keys sorted, then its alerts read by
    id. The index holds created_at and id: with no filter but the range and the cursor,
    the sort reads no alert's row, and only the page's are read (their JSON is most of an
    alert's row, and the sorter would carry it for every alert in the range)."""
    keys = (
        "SELECT a.created_at, a.id FROM alerts a INDEXED BY alerts_by_event "
        f"WHERE {' AND '.join(conds)}{_ORDER}"
    )
    sql = (
        f"{_COLUMNS} FROM ({keys}) k CROSS JOIN alerts a ON a.id = k.id "
        "ORDER BY k.created_at DESC, k.id DESC"
    )
    return sql, (*params, limit)


def _rule_query(
    rule: str,
    conds: list[str],
    params: list[object],
    position: tuple[str, ...],
    limit: int,
) -> tuple[str, tuple[object, ...]]:
    """Along the rule's range of alert_reasons, newest first (it is keyed so), each alert
    then read by its id and checked against `conds`."""
    # CROSS JOIN keeps that order of the two: left to itself, SQLite reads alerts_by_status
    # for a status, and walks every open alert looking for the rule's.
    keyset = ["(r.created_at, r.alert_id) < (?, ?)"] if position else []
    sql = (
        f"{_COLUMNS} FROM alert_reasons r CROSS JOIN alerts a "
        f"WHERE {' AND '.join(['r.code = ?', 'a.id = r.alert_id', *conds, *keyset])} "
        "ORDER BY r.created_at DESC, r.alert_id DESC LIMIT ?"
    )
    return sql, (rule, *params, *position, limit)


def _search_query(
    query: str, conds: list[str], params: list[object], limit: int
) -> tuple[str, tuple[object, ...]]:
    """One arm per kind of id, each along its own index (account, merchant, transaction) in
    the listing's order, checked against `conds` (the cursor's among them) and cut at the
    page, merged under a final sort."""
    # One `account_id = ? OR ...` walked the whole history by created_at (3-5 s a million
    # alerts) whenever the id was rare or absent. INDEXED BY: left to itself, SQLite reads
    # an arm with a status or an owner along alerts_by_status or alerts_unowned, which
    # already give the page's order, and walks every open alert for one transaction id.
    # UNION, not UNION ALL: an alert whose account and merchant ids are the same is found
    # by two arms and listed once.
    arms: list[str] = []
    arm_params: list[object] = []
    for column, index in _SEARCHED:
        arm = (
            f"{_COLUMNS} FROM alerts a INDEXED BY {index} "
            f"WHERE {' AND '.join([f'a.{column} = ?', *conds])}{_ORDER}"
        )
        arms.append(f"SELECT * FROM ({arm})")
        arm_params += [query, *params, limit]
    merged = " ORDER BY created_at DESC, id DESC LIMIT ?"
    return f"{' UNION '.join(arms)}{merged}", (*arm_params, limit)


# What a search (`q`) matches, exactly, and the index each is read along: all but the
# transaction id's go on with (created_at, id); a transaction has one alert at most.
_SEARCHED = (
    ("account_id", "alerts_by_account"),
    ("merchant_id", "alerts_by_merchant"),
    ("transaction_id", "alerts_by_transaction"),
)


_raw_json = msgspec.json.Decoder(msgspec.Raw)


def account_transactions(
    conn: sqlite3.Connection, account_id: str, limit: int, cursor: str | None
) -> AccountPage:
    """Raises ValueError for a limit below 1 or InvalidCursor for a malformed one."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    sql = (
        "SELECT event_time_us, id, transaction_json, alert_id, verdict_json, received_at "
        "FROM transactions WHERE account_id = ?"
    )
    params: list[object] = [account_id]
    if cursor is not None:
        position, tx_id = decode_cursor(cursor)
        try:
            params += [int(position), tx_id]
        except ValueError:
            raise InvalidCursor("Invalid cursor") from None
        sql += " AND (event_time_us, id) < (?, ?)"
    sql += " ORDER BY event_time_us DESC, id DESC LIMIT ?"
    result = conn.execute(sql, (*params, limit + 1))
    rows = result.fetchall()
    more = len(rows) > limit  # from the rows as read, as alert_page's
    transactions: list[AccountTransaction] = []
    for _, tx_id, tx, alert_id, verdict, received_at in readable(
        result, "transactions", 1, rows=rows[:limit]
    ):
        try:
            # The transaction goes out as stored, not decoded and encoded again: one that is
            # not JSON would make the whole answer something else. Read as msgspec.Raw, it
            # is checked for JSON without building any of it (~0.15 us a row, a fifth of
            # SQLite's json_valid in the query).
            column = "transaction_json"
            if not isinstance(tx, str):
                raise TypeError(f"{type(tx).__name__}, not text")  # a BLOB
            transaction = _raw_json.decode(tx.encode())
            column = "verdict_json"
            decoded = decode_verdict(tx_id, alert_id, verdict)
        except (msgspec.DecodeError, TypeError) as exc:  # not JSON, not a verdict's; not text
            log_damaged(conn, "transactions", tx_id, f"{column} unreadable: {exc}")
            continue
        transactions.append(
            AccountTransaction(transaction=transaction, verdict=decoded, received_at=received_at)
        )
    return AccountPage(
        account_id=account_id,
        transactions=transactions,
        next_cursor=(
            encode_cursor(str(rows[limit - 1][0]), _as_text(rows[limit - 1][1])) if more else None
        ),
    )


def encode_cursor(created_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{alert_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        raise InvalidCursor("Invalid cursor") from None
    created_at, bar, alert_id = text.partition("|")
    if not bar:
        raise InvalidCursor("Invalid cursor")
    return created_at, alert_id


def events_since(conn: sqlite3.Connection, seq: int, limit: int) -> list[AlertEvent]:
    """`limit` events after `seq`, or fewer only when there are no more: a page that left a
    damaged row out reads on past it, so a caller that stops at a short page (the socket's
    resume) does not stop early."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    events: list[AlertEvent] = []
    while True:
        wanted = limit - len(events)
        result = conn.execute(
            "SELECT seq, type, alert_json FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, wanted),
        )
        rows = result.fetchall()
        for s, kind, snapshot in readable(result, "events seq", rows=rows):
            try:
                events.append(AlertEvent(seq=s, type=kind, alert=_alert_decoder.decode(snapshot)))
            except (msgspec.DecodeError, TypeError) as exc:  # not an alert's JSON; not text
                _left_out(conn, "events seq", s, exc)
        if len(rows) < wanted or len(events) == limit:
            return events
        seq = rows[-1][0]


def notes(conn: sqlite3.Connection, alert_id: str) -> list[Note]:
    result = conn.execute(
        "SELECT id, alert_id, author, at, text FROM notes WHERE alert_id = ? ORDER BY id",
        (alert_id,),
    )
    # SQLite keeps a BLOB in a TEXT column as it is given (another tool's write); the API
    # would show its bytes as base64, which reads as a note nobody wrote.
    found: list[Note] = []
    for i, subject, *values in readable(result, "notes id"):
        author, at, text = values
        if type(author) is type(at) is type(text) is str:
            found.append(Note(id=i, alert_id=subject, author=author, at=at, text=text))
            continue
        not_text = [
            f"{name} {type(value).__name__}, not text"
            for name, value in zip(("author", "at", "text"), values, strict=True)
            if type(value) is not str
        ]
        log_damaged(conn, "notes id", i, "; ".join(not_text))
    return found


def open_summary(conn: sqlite3.Connection) -> dict[str, object]:
    by_severity = dict(
        conn.execute(
            "SELECT severity, count(*) FROM alerts WHERE status IN ('open', 'acknowledged') "
            "GROUP BY severity"
        ).fetchall()
    )
    (oldest,) = conn.execute("SELECT min(created_at) FROM alerts WHERE status = 'open'").fetchone()
    return {"by_severity": by_severity, "oldest_open_created_at": oldest}


def audit_log(conn: sqlite3.Connection, alert_id: str) -> list[AuditEntry]:
    """Each entry as stored; one whose detail cannot be read (not JSON, another shape, not
    UTF-8) with `detail` None, logged with its id: left out, it would hide who did what."""
    result = conn.execute(
        "SELECT at, actor, action, alert_id, detail_json, id FROM audit WHERE alert_id = ? "
        "ORDER BY id",
        (alert_id,),
    )
    entries: list[AuditEntry] = []
    for at, actor, action, subject, detail, ident in readable(
        result, "audit id", 5, keep=("detail_json",)
    ):
        try:
            decoded: dict[str, object] | None = _detail_decoder.decode(detail)
        except (msgspec.DecodeError, TypeError) as exc:  # not a detail's JSON; not text
            why = repr(detail) if isinstance(detail, NotText) else f"unreadable: {exc}"
            log_damaged(
                conn,
                "audit id",
                ident,
                f"detail_json {why}",
                "damaged row shown without its detail",
            )
            decoded = None
        entries.append(
            AuditEntry(at=at, actor=actor, action=action, alert_id=subject, detail=decoded)
        )
    return entries


def user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(
        "SELECT name, password_hash, role FROM users WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else User(name=row[0], password_hash=row[1], role=row[2])


def users(conn: sqlite3.Connection) -> list[UserInfo]:
    rows = conn.execute("SELECT name, role, created_at, updated_at FROM users ORDER BY name")
    return [UserInfo(name=n, role=r, created_at=c, updated_at=u) for n, r, c, u in rows]


_API_KEY_COLUMNS = (
    "SELECT name, key_hash, scopes, created_at, revoked_at, last_used_at FROM api_keys"
)


def _api_key(row: tuple[str, str, str, str, str | None, str | None]) -> ApiKey:
    name, key_hash, scopes, created_at, revoked_at, last_used_at = row
    return ApiKey(
        name=name,
        key_hash=key_hash,
        scopes=scopes.split(","),
        created_at=created_at,
        revoked_at=revoked_at,
        last_used_at=last_used_at,
    )


def api_key_by_hash(conn: sqlite3.Connection, key_hash: str) -> ApiKey | None:
    row = conn.execute(f"{_API_KEY_COLUMNS} WHERE key_hash = ?", (key_hash,)).fetchone()
    return None if row is None else _api_key(row)


def api_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    return [_api_key(row) for row in conn.execute(f"{_API_KEY_COLUMNS} ORDER BY name")]


def session(conn: sqlite3.Connection, id_hash: str) -> SessionRecord | None:
    row = conn.execute(
        "SELECT s.user, u.role, s.expires_at, s.revoked_at IS NOT NULL FROM sessions s "
        "JOIN users u ON u.name = s.user WHERE s.id_hash = ?",
        (id_hash,),
    ).fetchone()
    if row is None:
        return None
    return SessionRecord(user=row[0], role=row[1], expires_at=row[2], revoked=bool(row[3]))


def labels(conn: sqlite3.Connection, transaction_ids: Collection[str]) -> dict[str, Label]:
    ids = encoder.encode(list(transaction_ids)).decode()
    rows = conn.execute(
        "SELECT transaction_id, label, source, labelled_at, scenario FROM labels "
        "WHERE transaction_id IN (SELECT value FROM json_each(?))",
        (ids,),
    )
    return {
        tx_id: Label(
            transaction_id=tx_id, label=label, source=source, labelled_at=at, scenario=scenario
        )
        for tx_id, label, source, at, scenario in readable(rows, "labels")
    }


def recent_labels(conn: sqlite3.Connection, limit: int) -> list[Label]:
    """The `limit` labels stored last, oldest first."""
    rows = conn.execute(
        "SELECT transaction_id, label, source, labelled_at, scenario FROM labels "
        "ORDER BY received_at DESC, transaction_id DESC LIMIT ?",
        (limit,),
    )
    return [
        Label(transaction_id=tx_id, label=label, source=source, labelled_at=at, scenario=scenario)
        for tx_id, label, source, at, scenario in reversed(readable(rows, "labels"))
    ]


def label_changes_after(conn: sqlite3.Connection, seq: int, limit: int) -> list[LabelChange]:
    rows = conn.execute(
        "SELECT c.seq, c.transaction_id, c.label, c.labelled_at, c.replaced_label, "
        "c.replaced_at, c.replaced_seq, t.transaction_json FROM label_changes c "
        "LEFT JOIN transactions t ON t.id = c.transaction_id "
        "WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
        (seq, limit),
    )
    # A transaction_json that is not text (edited by hand, or not UTF-8) comes back empty:
    # unreadable, and said so by the caller.
    readable_rows = readable(rows, "label_changes seq", keep=("transaction_json",))
    return [
        LabelChange(
            seq,
            tx_id,
            label,
            at,
            None if was is None else (was, was_at),
            None if raw is None else raw.encode() if isinstance(raw, str) else b"",
            was_seq,
        )
        for seq, tx_id, label, at, was, was_at, was_seq, raw in readable_rows
    ]


def last_label_change(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM label_changes").fetchone()[0])
