"""Schema migrations for the SQLite store: ordered steps, applied in one transaction at start."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


class SchemaError(RuntimeError):
    """The database was written by a fraudwatch that knows a newer schema than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step. Statements run one by one (not executescript, which would commit
    the surrounding transaction), so a failing step leaves the database as it was."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append new steps; never edit one that has shipped. JSON columns are TEXT, not BLOB: SQLite's
# json_* functions read a BLOB as JSONB, and TEXT stays readable in the sqlite3 shell.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "transactions, alerts, events, audit, users",
        (
            """
            CREATE TABLE transactions (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL,
                -- The transaction's timestamp in µs since the Unix epoch: exact, ordered, and
                -- 20x cheaper to compute than RFC 3339 text at 20k rows/s.
                event_time_us INTEGER NOT NULL,
                amount TEXT NOT NULL,            -- exact decimal: never through float
                currency TEXT NOT NULL,
                transaction_json TEXT NOT NULL,
                verdict_json TEXT NOT NULL,
                alert_id TEXT,
                received_at TEXT NOT NULL        -- server wall clock when stored
            )
            """,
            """
            CREATE TABLE alerts (
                id TEXT PRIMARY KEY,
                transaction_id TEXT NOT NULL REFERENCES transactions (id),
                account_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
                severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
                owner TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                alert_json TEXT NOT NULL         -- the Alert as the API shows it
            )
            """,
            # Newest-first listing, unfiltered and per status (keyset pagination on both).
            "CREATE INDEX alerts_by_time ON alerts (created_at, id)",
            "CREATE INDEX alerts_by_status ON alerts (status, created_at, id)",
            # AUTOINCREMENT: a seq is never reused, even if old events are pruned down to
            # nothing; dashboards resume from seq, so reuse would silently skip events.
            """
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                type TEXT NOT NULL CHECK (type IN ('alert', 'alert_updated')),
                alert_id TEXT NOT NULL REFERENCES alerts (id),
                alert_json TEXT NOT NULL         -- the alert as it was after this event
            )
            """,
            """
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY,
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                alert_id TEXT REFERENCES alerts (id),
                detail_json TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_by_alert ON audit (alert_id, id)",
            """
            CREATE TABLE users (
                name TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('analyst', 'admin', 'viewer')),
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        2,
        "api keys and analyst sessions",
        (
            # Only a SHA-256 of each key is kept: keys are 192-bit random, so a fast hash is
            # as safe as a slow KDF and keeps per-request authentication cheap. A revoked key
            # keeps its row (and name) so `keys list` can show when it was revoked.
            """
            CREATE TABLE api_keys (
                name TEXT PRIMARY KEY,
                key_hash TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the whole key
                scopes TEXT NOT NULL,            -- comma-separated: ingest, read, labels
                created_at TEXT NOT NULL,
                revoked_at TEXT,
                last_used_at TEXT                -- refreshed about once a minute, not per use
            )
            """,
            # One row per login. The cookie carries the session id; only its hash is stored.
            # Logout sets revoked_at, so a copy of the cookie is worthless afterwards.
            """
            CREATE TABLE sessions (
                id_hash TEXT PRIMARY KEY,        -- hex SHA-256 of the session id
                user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                created_at TEXT NOT NULL,
                expires_at INTEGER NOT NULL,     -- Unix seconds
                revoked_at TEXT
            )
            """,
            "CREATE INDEX sessions_by_expiry ON sessions (expires_at)",
        ),
    ),
    Migration(
        3,
        "analyst notes, and the index behind 'next'",
        (
            # Notes are append-only: a note is part of the case record, like the audit rows
            # (each note also gets one, so the timeline shows it in order with the rest).
            """
            CREATE TABLE notes (
                id INTEGER PRIMARY KEY,
                alert_id TEXT NOT NULL REFERENCES alerts (id),
                author TEXT NOT NULL,
                at TEXT NOT NULL,
                text TEXT NOT NULL
            )
            """,
            "CREATE INDEX notes_by_alert ON notes (alert_id, id)",
            # POST /alerts/next reads the unowned open alerts by severity, oldest first; this
            # keeps it to that range however long the history is.
            "CREATE INDEX alerts_unowned ON alerts (status, owner, severity, created_at, id)",
            # GET /alerts?q=<account id>: the account's alerts without walking the history.
            "CREATE INDEX alerts_by_account ON alerts (account_id, created_at, id)",
            # GET /accounts/{id}/transactions: an account's history, newest first. One more
            # index entry per ingested transaction: the price of the details drawer's history.
            "CREATE INDEX transactions_by_account ON transactions (account_id, event_time_us, id)",
        ),
    ),
    Migration(
        4,
        "labels: fraud or legitimate, per transaction, from analysts, the API or the simulator",
        (
            # One row per transaction: the latest label wins (a chargeback overrides an
            # earlier "legitimate"). `scenario` is the simulator's ground truth, else NULL.
            """
            CREATE TABLE labels (
                transaction_id TEXT PRIMARY KEY REFERENCES transactions (id),
                label TEXT NOT NULL CHECK (label IN ('fraud', 'legitimate')),
                source TEXT NOT NULL,
                labelled_at TEXT NOT NULL,       -- when it became known, as the sender says
                received_at TEXT NOT NULL,       -- server wall clock when stored
                scenario TEXT
            )
            """,
            "CREATE INDEX labels_by_receipt ON labels (received_at)",
        ),
    ),
    Migration(
        5,
        "the model's inputs of each scored transaction, for its label whenever it comes",
        (
            # What the model reads of a transaction (model.capture's packed bytes, ~120) is
            # kept with it: a chargeback weeks later is learnt from the transaction as it
            # was scored, by whichever process gets the label. `model_layout` names how to
            # read the bytes (one row per feature set and packing, not ~50 bytes per row).
            """
            CREATE TABLE input_layouts (
                id INTEGER PRIMARY KEY,
                layout TEXT NOT NULL UNIQUE
            )
            """,
            "ALTER TABLE transactions "
            "ADD COLUMN model_layout INTEGER REFERENCES input_layouts (id)",
            "ALTER TABLE transactions ADD COLUMN model_inputs BLOB",
        ),
    ),
    Migration(
        6,
        "the index that lets old transactions be deleted",
        (
            # Deleting a transaction makes SQLite look for alerts that reference it (the
            # foreign key): without this index, a scan of every alert per deleted row.
            "CREATE INDEX alerts_by_transaction ON alerts (transaction_id)",
        ),
    ),
    Migration(
        7,
        "every change of a transaction's label, in the order stored",
        (
            # The labels table keeps a transaction's latest label; merchant risk and the
            # amount's fraud rate took in each change as it came (and took back what it
            # replaced), in this order. A restart after a crash applies the changes its
            # snapshot had not taken in (server/label_replay.py). AUTOINCREMENT: a seq is
            # never handed out twice, even once the rows before it are pruned.
            """
            CREATE TABLE label_changes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                transaction_id TEXT NOT NULL,
                label TEXT NOT NULL CHECK (label IN ('fraud', 'legitimate')),
                labelled_at TEXT NOT NULL,
                replaced_label TEXT CHECK (replaced_label IN ('fraud', 'legitimate')),
                replaced_at TEXT                 -- the replaced label's labelled_at
            )
            """,
            # Retention deletes a transaction's changes with it: without this, a scan of
            # the log per chunk deleted (short once snapshots prune it, long without them).
            "CREATE INDEX label_changes_by_transaction ON label_changes (transaction_id)",
        ),
    ),
    Migration(
        8,
        "model inputs kept sparse, verdicts kept as arrays without the ids their row holds",
        (
            # How a row keeps its model_inputs (server/store/sqlite_rows.py): NULL as the
            # model packed them (every row before this step), 1 sparse (~61 bytes of ~134).
            # Rows written from this step on also keep verdict_json as a JSON array without
            # the ids (~45 bytes of ~150): the id and alert_id columns hold those. An older
            # fraudwatch would fail on such rows: the version this step adds keeps it off the
            # file. Rows written before are left as they are and read as before (no rewrite).
            "ALTER TABLE transactions ADD COLUMN model_packing INTEGER",
        ),
    ),
    Migration(
        9,
        "each label change names the change it replaced",
        (
            # A correction takes back the label it replaced only from a state that took
            # that label in (server/label_changes.py): its change's seq says so. The labels
            # row keeps the seq of the change that set it, so the next change can name it
            # even once the log's older rows are pruned. NULL where the log no longer has it.
            "ALTER TABLE labels ADD COLUMN change_seq INTEGER",
            "ALTER TABLE label_changes ADD COLUMN replaced_seq INTEGER",
            # Only the labels the log still names (at most two snapshots' worth, where every
            # label would rewrite the whole table, millions of rows where every transaction
            # is labelled).
            "UPDATE labels SET change_seq = (SELECT max(c.seq) FROM label_changes c "
            "WHERE c.transaction_id = labels.transaction_id) "
            "WHERE transaction_id IN (SELECT transaction_id FROM label_changes)",
            "UPDATE label_changes SET replaced_seq = (SELECT max(p.seq) FROM label_changes p "
            "WHERE p.transaction_id = label_changes.transaction_id "
            "AND p.seq < label_changes.seq) WHERE replaced_label IS NOT NULL",
        ),
    ),
    Migration(
        10,
        "each alert's merchant id in a column of its own, and the index behind searching it",
        (
            # GET /alerts?q=<id> matches an account, merchant or transaction id. The merchant
            # id was read out of alert_json row by row, so a search walked the whole history
            # (3-5 s a million alerts); as a column it has an index like the other two. The
            # writer sets it with the alert; the transaction (and so the merchant) of an alert
            # never changes afterwards.
            "ALTER TABLE alerts ADD COLUMN merchant_id TEXT",
            # Only text: a number compares unequal to the text a search gives, as before. A
            # row whose alert_json is not JSON (a damaged file, another tool's write) gets
            # NULL, where json_extract would fail the whole step and so the start.
            "UPDATE alerts SET merchant_id = CASE WHEN json_valid(alert_json) "
            "AND json_type(alert_json, '$.transaction.merchant_id') = 'text' "
            "THEN json_extract(alert_json, '$.transaction.merchant_id') END",
            "CREATE INDEX alerts_by_merchant ON alerts (merchant_id, created_at, id)",
        ),
    ),
    Migration(
        11,
        "each alert's reason codes in a table of their own, in the listing's order",
        (
            # GET /alerts?rule=<code>: the codes were read out of alert_json row by row, so a
            # rule that fires rarely (or never) walked the whole history (3-7 s a million
            # alerts). One row per code an alert carries, written with the alert (its reasons
            # never change), keyed in the listing's order: a rule's alerts, newest first, are
            # one range of the key, and an alert found another way is checked by key too.
            """
            CREATE TABLE alert_reasons (
                code TEXT NOT NULL,
                created_at TEXT NOT NULL,        -- the alert's
                alert_id TEXT NOT NULL REFERENCES alerts (id),
                PRIMARY KEY (code, created_at, alert_id)
            ) WITHOUT ROWID
            """,
            # Only text codes of object reasons: what the JSON filter matched. A row whose
            # alert_json is not JSON gets none (json_each would fail the step, and the start).
            "INSERT OR IGNORE INTO alert_reasons (code, created_at, alert_id) "
            "SELECT json_extract(r.value, '$.code'), a.created_at, a.id FROM alerts a, "
            "json_each(CASE WHEN json_valid(a.alert_json) THEN a.alert_json ELSE '[]' END, "
            "'$.reasons') r "
            "WHERE CASE WHEN r.type = 'object' THEN json_type(r.value, '$.code') END = 'text'",
        ),
    ),
    Migration(
        12,
        "the index behind an owner's alerts, newest first",
        (
            # GET /alerts?owner=<name> ("assigned to me") checked each alert's owner along
            # the newest-first walk: an owner with few alerts walked the whole history
            # (0.7-0.9 s a million alerts). The owner changes over an alert's life (claim,
            # assign, resolve, unacknowledge: the writer's one UPDATE of alerts), and the
            # index follows it as any index does. Unowned alerts (NULL) are one range too.
            "CREATE INDEX alerts_by_owner ON alerts (owner, created_at, id)",
        ),
    ),
    Migration(
        13,
        "each alert's event time in a column of its own, and the index behind a range of it",
        (
            # GET /alerts?from=&to= (the transaction's own clock) joined each alert to its
            # transaction along the newest-first walk: an old, narrow range walked the whole
            # history (1.5-1.9 s a million alerts). As a column of the alert it has an index;
            # the writer sets it with the alert, and a transaction's event time never changes.
            "ALTER TABLE alerts ADD COLUMN event_time_us INTEGER",
            # Copied as stored, whatever it is: the join compared the transaction's value,
            # and the column compares the same. An alert's transaction is never pruned (only
            # those without an alert are); one missing all the same (a damaged file) gives
            # NULL, in no range, as the join found none.
            "UPDATE alerts SET event_time_us = (SELECT t.event_time_us FROM transactions t "
            "WHERE t.id = alerts.transaction_id)",
            "CREATE INDEX alerts_by_event ON alerts (event_time_us, created_at, id)",
        ),
    ),
    Migration(
        14,
        "a reopened alert's label withdrawn: the label each resolution gave, and a change to none",
        (
            # Reopening an alert takes back the label its resolution gave, if that is still
            # the transaction's (server/store/sqlite_writer.py, `reopen`). What it needs is
            # kept from the resolution on: which change of the log set the label, and the
            # label it replaced, whole, to be put back (NULL was_label: it had none). One
            # row per resolution that changed a label; gone once the alert is reopened, or
            # once a label sent for the transaction makes the label its own.
            """
            CREATE TABLE resolution_labels (
                alert_id TEXT PRIMARY KEY REFERENCES alerts (id),
                transaction_id TEXT NOT NULL,
                change_seq INTEGER NOT NULL,
                was_label TEXT CHECK (was_label IN ('fraud', 'legitimate')),
                was_source TEXT,
                was_labelled_at TEXT,
                was_received_at TEXT,
                was_scenario TEXT
            )
            """,
            "CREATE INDEX resolution_labels_by_transaction ON resolution_labels (transaction_id)",
            # A withdrawal that leaves the transaction without a label is a change to none:
            # `label` and `labelled_at` NULL. SQLite cannot drop a NOT NULL, so the log is
            # copied into a table without it (at most two snapshots' worth: pruned after
            # each), keeping each seq and the last one handed out (sqlite_sequence), which
            # may be past the newest row if retention deleted it: a seq is never reused.
            """
            CREATE TABLE label_changes_new (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                transaction_id TEXT NOT NULL,
                label TEXT CHECK (label IN ('fraud', 'legitimate')),
                labelled_at TEXT,
                replaced_label TEXT CHECK (replaced_label IN ('fraud', 'legitimate')),
                replaced_at TEXT,
                replaced_seq INTEGER,
                CHECK ((label IS NULL) = (labelled_at IS NULL))
            )
            """,
            "INSERT INTO label_changes_new (seq, transaction_id, label, labelled_at, "
            "replaced_label, replaced_at, replaced_seq) SELECT seq, transaction_id, label, "
            "labelled_at, replaced_label, replaced_at, replaced_seq FROM label_changes",
            "DELETE FROM sqlite_sequence WHERE name = 'label_changes_new'",
            "INSERT INTO sqlite_sequence (name, seq) "
            "SELECT 'label_changes_new', seq FROM sqlite_sequence WHERE name = 'label_changes'",
            "DROP TABLE label_changes",
            "ALTER TABLE label_changes_new RENAME TO label_changes",
            "CREATE INDEX label_changes_by_transaction ON label_changes (transaction_id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration applied to this database; 0 for a new one."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending steps in one transaction and return their versions.

    `conn` must be in autocommit mode (isolation_level=None). Raises SchemaError when the
    database is newer than `migrations`: running old code on it could corrupt it.
    """
    latest = migrations[-1].version if migrations else 0
    # IMMEDIATE: two processes starting at once must not both apply the same step.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = schema_version(conn)
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        if current > latest:
            raise SchemaError(
                f"Database {_filename(conn)} has schema version {current}, but this fraudwatch "
                f"only knows versions up to {latest}: upgrade fraudwatch, or point "
                "'data_dir' at another directory"
            )
        applied: list[int] = []
        # By membership, not "above the newest": a step merged in from another branch with a
        # lower number than one already applied still runs, once.
        pending = [m for m in migrations if m.version not in done]
        # An upgrade says what it is doing: a step that fills in a column from every stored
        # alert takes seconds to a minute on a long history, before the server listens. A
        # new database's steps are said only at DEBUG.
        level = logging.INFO if current else logging.DEBUG
        if pending:
            log.log(
                level,
                "Database %s: schema version %d -> %d, %d step(s), in one transaction",
                _filename(conn),
                current,
                pending[-1].version,
                len(pending),
            )
        began = time.perf_counter()
        for migration in pending:
            started = time.perf_counter()
            for statement in migration.statements:
                conn.execute(statement)
            log.log(
                level,
                "Schema step %d (%s) done in %.1f s",
                migration.version,
                migration.description,
                time.perf_counter() - started,
            )
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (migration.version, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
            )
            applied.append(migration.version)
        conn.execute("COMMIT")
        if pending:
            log.log(level, "Schema upgrade committed: %.1f s in all", time.perf_counter() - began)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def _filename(conn: sqlite3.Connection) -> str:
    for _, name, path in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(path) or ":memory:"
    return "?"
