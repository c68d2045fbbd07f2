"""The store interface: what the pipeline, the API and the hub need from persistence.

SQLite implements it for one box; a PostgreSQL implementation can replace it for several
workers without touching the callers. Every method is async and must never block the event
loop. Alert events carry a `seq` that is strictly increasing in commit order: it is what
dashboards resume from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Generic, Literal, NamedTuple, Protocol, TypeVar

import msgspec

from server.detection.verdict import Reason, Severity, Verdict
from server.transactions import Transaction

AlertStatus = Literal["open", "acknowledged", "resolved"]
# Which dispositions exist is a setting (`dispositions`), checked by the API; the store keeps
# whatever non-empty name it is given, so a disposition retired later still reads back.
Disposition = str
# What a label says about a transaction; the only dispositions that are labels too.
LabelValue = Literal["fraud", "legitimate"]
LABELS: frozenset[str] = frozenset(("fraud", "legitimate"))
DEFAULT_DISPOSITIONS: tuple[str, ...] = ("fraud", "legitimate", "duplicate")
Role = Literal["analyst", "admin", "viewer"]


class Alert(msgspec.Struct, kw_only=True):
    """An alert as the API and the WebSocket show it (the contract)."""

    id: str
    status: AlertStatus
    severity: Severity
    score: float
    decision: str
    reasons: list[Reason]
    transaction: msgspec.Raw  # the validated transaction, JSON as stored
    transaction_id: str
    account_id: str
    rules_version: str
    owner: str | None
    disposition: Disposition | None
    note: str | None
    created_at: str  # RFC 3339, UTC, wall clock of the server
    updated_at: str
    # When the server received the transaction (RFC 3339, UTC, ms): what a screen measures
    # ingest -> screen latency from. None for alerts stored before it was recorded.
    received_at: str | None = None


class AlertEvent(msgspec.Struct, kw_only=True):
    """One change to one alert, numbered by `seq` in commit order."""

    seq: int
    type: Literal["alert", "alert_updated"]
    alert: Alert


class AlertPage(msgspec.Struct, kw_only=True):
    """A page of alerts and the last event seq at the moment it was read: a client that
    loads this page and then connects to /ws?since=seq misses nothing."""

    alerts: list[Alert]
    next_cursor: str | None
    seq: int


class AlertFilter(msgspec.Struct, kw_only=True, frozen=True):
    """What GET /api/v1/alerts narrows a listing to, beyond status. Every field given must
    match; event times are the transaction's own (µs since the Unix epoch, inclusive)."""

    severities: frozenset[str] | None = None
    rule: str | None = None  # a reason code the alert carries
    owner: str | None = None  # a user name
    unowned: bool = False
    query: str | None = None  # an account, merchant or transaction id, exactly
    event_from_us: int | None = None
    event_to_us: int | None = None

    @property
    def active(self) -> bool:
        return self != AlertFilter()


class AccountTransaction(msgspec.Struct, kw_only=True):
    """One transaction of an account's history, with the verdict it got."""

    transaction: msgspec.Raw  # as accepted
    verdict: Verdict
    received_at: str  # when the server stored it


class AccountPage(msgspec.Struct, kw_only=True):
    """An account's transactions, newest event time first."""

    account_id: str
    transactions: list[AccountTransaction]
    next_cursor: str | None


ModelInputs = tuple[str, bytes]
"""A transaction's model inputs as stored: the layout that says how to read them
(`model.RAW_LAYOUT` when written) and the packed bytes."""

T = TypeVar("T")


class Found(NamedTuple, Generic[T]):
    """What a read by transaction ids found: the `rows` it could read, by id, and those it
    could not (`damaged`: id -> what is wrong, e.g. a column edited by hand or written by a
    faulty build), which are left out of `rows`. One damaged row costs only itself; each
    caller decides what a damaged one means for it."""

    rows: dict[str, T]
    damaged: dict[str, str]


class StoredRecord(NamedTuple):
    """One scored transaction as the detection loop hands it to the store."""

    transaction: Transaction
    verdict: Verdict
    severity: Severity
    received_at: str | None = None  # RFC 3339 UTC, when the server received it
    # What the model keeps of it until its label comes: (layout, packed bytes), as
    # `Detector.kept_inputs` gives them; None when the model reads nothing of it.
    model_inputs: ModelInputs | None = None


class StoredTransaction(NamedTuple):
    """A stored transaction where it stands in the store's order (`Store.transactions_after`)."""

    position: int
    transaction: bytes  # the JSON as stored


class FreePages(NamedTuple):
    """One step of giving a database's free pages back to the file system."""

    released: int  # pages this step took off the end of the file
    left: int  # pages still free inside the file


class User(msgspec.Struct, kw_only=True):
    name: str
    password_hash: str
    role: Role


class UserInfo(msgspec.Struct, kw_only=True):
    """A user as an admin sees one: never the password hash."""

    name: str
    role: Role
    created_at: str
    updated_at: str


class ApiKey(msgspec.Struct, kw_only=True):
    """A machine client's key: only its SHA-256 is stored, never the key itself."""

    name: str
    key_hash: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None


class SessionRecord(msgspec.Struct, kw_only=True):
    """An analyst's login, with the user's current role (a role change applies at once)."""

    user: str
    role: Role
    expires_at: int  # Unix seconds
    revoked: bool


class AuditEntry(msgspec.Struct, kw_only=True):
    at: str
    actor: str
    action: str
    alert_id: str | None
    detail: dict[str, object] | None  # None: its stored row is damaged (logged when read)


class Label(msgspec.Struct, kw_only=True):
    """Whether a transaction was fraud, who says so and since when."""

    transaction_id: str
    label: LabelValue
    source: str
    labelled_at: str  # RFC 3339
    scenario: str | None = None  # the simulator's ground truth only


LabelStatus = Literal["created", "unchanged", "updated", "not_found"]


class LabelOutcome(NamedTuple):
    """What storing one label did; `account_id` is the transaction's (None if not found).
    An `updated` one names the label it `replaced` and when that one was known (its
    `labelled_at`), so what was learnt from it can be taken back."""

    status: LabelStatus
    account_id: str | None
    replaced: tuple[LabelValue, str] | None = None


class LabelChange(NamedTuple):
    """One change of a transaction's label, as stored (`Store.label_changes_after`): its
    place in the order changes were committed (`seq`), the label it set (None with its
    `labelled_at`: a withdrawal, which left the transaction without a label), and the label
    it replaced with that one's `labelled_at` (None: the transaction had none).
    `transaction` is the stored transaction's JSON, None if it is no longer stored (pruned
    since). `replaced_seq`: the seq of the change that set the replaced label (None: not
    known, as for a change stored before fraudwatch kept it)."""

    seq: int
    transaction_id: str
    label: LabelValue | None
    labelled_at: str | None
    replaced: tuple[LabelValue, str] | None
    transaction: bytes | None
    replaced_seq: int | None = None


class LabelWithdrawal(NamedTuple):
    """What reopening an alert did to its transaction's label (`Store.reopen_labelled`): it
    took back the label the alert's resolution gave (`withdrawn`: that label and its
    `labelled_at`, as `LabelOutcome.replaced` names one), and put back the label that
    resolution had replaced (`restored`, as it was stored: source, `labelled_at`,
    scenario), or left the transaction with none (None)."""

    transaction_id: str
    withdrawn: tuple[LabelValue, str]
    restored: Label | None


class Note(msgspec.Struct, kw_only=True):
    """An analyst's note on an alert; notes are never edited or deleted."""

    id: int
    alert_id: str
    author: str
    at: str
    text: str


class AlertNotFound(LookupError):
    pass


class InvalidCursor(ValueError):
    """A page cursor this store did not give out."""


class InvalidAssignee(ValueError):
    """The user an alert was to be assigned to does not exist or may not triage."""


class NameTaken(ValueError):
    """An API key of that name exists (revoked keys keep their names)."""


class AlertConflict(Exception):
    """The alert's state forbids the change; `alert` is the state that won."""

    def __init__(self, message: str, alert: Alert) -> None:
        super().__init__(message)
        self.alert = alert


EventListener = Callable[[list[AlertEvent]], None]


class Store(Protocol):
    async def start(self, on_events: EventListener) -> None:
        """Open, migrate, and from now on call `on_events` (on the event loop, in commit order)
        with every committed alert event."""

    async def close(self) -> None: ...

    async def known_verdicts(self, transaction_ids: Collection[str]) -> dict[str, Verdict]:
        """The stored verdicts of those ids that were already accepted."""

    async def known_transactions(
        self, transaction_ids: Collection[str]
    ) -> Found[tuple[Verdict, bytes]]:
        """For those ids already accepted: the stored verdict and transaction JSON (to tell a
        resend from a different transaction reusing an id), and the ids whose row cannot be
        read back (`damaged`)."""

    async def event_times(self, transaction_ids: Collection[str]) -> dict[str, int]:
        """For those ids already accepted: the transaction's timestamp, in microseconds since
        the Unix epoch (its own column: read even where its JSON could not be)."""

    async def write_batch(self, records: Sequence[StoredRecord]) -> list[AlertEvent]:
        """Persist a batch in one transaction: every transaction with its verdict (and model
        inputs, if any), and an alert (with its `alert` event) for every verdict that has an
        `alert_id`."""

    async def transaction_positions(self, transaction_ids: Collection[str]) -> dict[str, int]:
        """For those ids stored: where each stands in the order transactions were committed
        (its position; SQLite's rowid). A later commit's transactions stand after an earlier
        one's, and within one commit they stand in the order given: the order in which the
        detection loop scored them. What a restarted detector's state is told apart by."""

    async def last_position(self) -> tuple[int, str] | None:
        """The position and id of the transaction stored last; None while there is none."""

    async def position_since(self, received_since: str, at_most: int) -> int:
        """The position after which stand the transactions received at or after
        `received_since` (RFC 3339 UTC, as `utc_stamp` writes), but no more than the
        `at_most` stored last: where a bounded replay of recent history starts."""

    async def transactions_after(
        self, position: int, until: int, limit: int
    ) -> list[StoredTransaction]:
        """Up to `limit` transactions after `position` and up to `until` (inclusive), in
        the order they were stored: a restarted detector replays them a chunk at a time."""

    async def prune_transactions(self, received_before: str) -> int:
        """Delete the transactions received before `received_before` (RFC 3339 UTC, as
        `utc_stamp` writes) that raised no alert, with their labels and model inputs, a
        chunk a commit so other writes go on in between; how many were deleted. An alert's
        transaction is part of its case and is kept."""

    async def release_free_pages(self) -> FreePages | None:
        """Give a step's worth of free pages (left by deletions) back to the file system, in
        one write of a few milliseconds; None when this store cannot shrink its file while
        running (a database created before fraudwatch set incremental auto-vacuum), where
        they stay for reuse."""

    async def model_inputs(self, transaction_ids: Collection[str]) -> Found[ModelInputs]:
        """The stored model inputs of those ids that have them: what a label that comes after
        the detector let go of its own copy is learnt from, so exactly the layout and bytes
        `write_batch` was given, however the store keeps them; and the ids whose inputs
        cannot be read back (`damaged`)."""

    async def acknowledge(self, alert_id: str, user: str) -> AlertEvent | None:
        """Make `user` the owner of an open alert; None if they already own it.
        Raises AlertNotFound, or AlertConflict naming the current owner. Durable on return."""

    async def resolve(
        self, alert_id: str, user: str, disposition: Disposition, note: str | None
    ) -> AlertEvent:
        """Close an open alert, or one acknowledged by `user`, and record the disposition as
        the transaction's label (source `analyst:<user>`). Durable on return."""

    async def resolve_labelled(
        self, alert_id: str, user: str, disposition: Disposition, note: str | None
    ) -> tuple[AlertEvent, LabelOutcome | None]:
        """`resolve`, and what storing the label did (None: the disposition is no label):
        `unchanged` when the transaction already had that label."""

    async def unacknowledge(
        self, alert_id: str, user: str, *, force: bool = False
    ) -> AlertEvent | None:
        """Give an acknowledged alert back to the queue (open, no owner); None if it already is
        open. Only its owner may, unless `force` (an admin). Raises AlertConflict otherwise, or
        for a resolved alert. Durable on return."""

    async def assign(
        self, alert_id: str, user: str, owner: str, *, force: bool = False
    ) -> AlertEvent | None:
        """Make `owner` hold an unresolved alert (acknowledged); None if they already do. An
        open alert may be assigned by anyone, a held one only by its owner, or with `force`.
        Raises InvalidAssignee, AlertNotFound or AlertConflict. Durable on return."""

    async def reopen(self, alert_id: str, user: str, note: str | None) -> AlertEvent:
        """Put a resolved alert back in the queue (open, no owner, no disposition), and
        withdraw the label its resolution gave (`reopen_labelled`). Raises AlertConflict
        when it is not resolved. Durable on return."""

    async def reopen_labelled(
        self, alert_id: str, user: str, note: str | None
    ) -> tuple[AlertEvent, LabelWithdrawal | None]:
        """`reopen`, and in the same commit the withdrawal of the label the resolution gave,
        if the transaction's label is still that one: the label the resolution replaced is
        put back as it was stored (or the transaction is left with none), and the change is
        in the log of label changes (`label_changes_after`), as a correction's is. None:
        no label withdrawn (the resolution gave none: a `duplicate`, or the transaction had
        that label already; or a label sent for the transaction since, `add_labels`, the
        same one or another, is the transaction's own now; or the alert was resolved before
        the store kept what a resolution labelled)."""

    async def add_note(self, alert_id: str, user: str, text: str) -> tuple[Note, AlertEvent]:
        """Append a note (any status); the alert's updated_at moves, as an alert_updated
        event, so every screen learns of it. Durable on return."""

    async def claim_next(self, user: str) -> AlertEvent | None:
        """Atomically make `user` the owner of the most urgent open alert nobody holds
        (severity, then oldest); None when there is none. Durable on return."""

    async def account_transactions(
        self, account_id: str, limit: int, cursor: str | None
    ) -> AccountPage:
        """The account's transactions, newest event time first; `cursor` from the previous
        page. Raises InvalidCursor (a ValueError) for a malformed cursor."""

    async def notes(self, alert_id: str) -> list[Note]:
        """Oldest first."""

    async def open_summary(self) -> dict[str, object]:
        """Unresolved alerts by severity, and the created_at of the oldest open (not yet
        acknowledged) one, or None."""

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def add_labels(self, labels: Sequence[Label]) -> list[LabelOutcome]:
        """Store labels in one durable transaction, one outcome each, in order: `created`,
        `unchanged` (the same label was already there: a re-send), `updated` (the label
        changed: the latest wins), or `not_found` (no such transaction; nothing stored).
        A label for a transaction whose label an analyst's resolution gave, `unchanged` or
        `updated`, makes the label the sender's: `reopen_labelled` no longer withdraws it."""

    async def get_labels(self, transaction_ids: Collection[str]) -> dict[str, Label]: ...

    async def label_changes_after(self, seq: int, limit: int) -> list[LabelChange]:
        """Up to `limit` label changes after `seq`, in the order they were committed: every
        `created` or `updated` outcome of `add_labels` and `resolve_labelled`, and every
        withdrawal of `reopen_labelled`, is one, in the same commit as the label. A later
        commit's changes come after an earlier one's."""

    async def last_label_change(self) -> int:
        """The seq of the newest label change stored; 0 when there has been none."""

    async def prune_label_changes(self, through: int) -> int:
        """Delete the label changes up to `through` (no snapshot needs them any more) but
        the newest, which `last_label_change` reads; how many. Later changes keep their
        seqs, and a seq is never handed out again."""

    async def recent_labels(self, limit: int) -> list[Label]:
        """The `limit` labels stored last (by receipt), oldest first: what a restarted
        server's scorecard is rebuilt from."""

    async def list_alerts(
        self,
        statuses: Collection[AlertStatus] | None,
        limit: int,
        cursor: str | None,
        where: AlertFilter | None = None,
    ) -> AlertPage:
        """Newest first (by created_at, then id), filtered to `statuses` when given; `cursor`
        is opaque and comes from the previous page's next_cursor. Read in one snapshot."""

    async def events_since(self, seq: int, limit: int) -> list[AlertEvent]:
        """Events with seq > `seq`, oldest first, at most `limit` and fewer only when there
        are no more: an event that cannot be read back is left out, and the page reads on."""

    async def last_seq(self) -> int: ...

    async def audit_log(self, alert_id: str) -> list[AuditEntry]: ...

    async def add_user(self, name: str, password_hash: str, role: Role) -> None:
        """Create or replace a user."""

    async def get_user(self, name: str) -> User | None: ...

    async def list_users(self) -> list[UserInfo]: ...

    async def delete_user(self, name: str) -> bool:
        """Remove a user and end their sessions; False if there was no such user."""

    async def add_api_key(self, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        """Store a new key; raises NameTaken if the name was ever used."""

    async def revoke_api_key(self, name: str) -> bool:
        """Mark a key revoked; False if no live key has that name."""

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with that hash, revoked or not."""

    async def touch_api_key(self, name: str) -> None:
        """Record that the key was just used."""

    async def add_session(self, id_hash: str, user: str, expires_at: int) -> None:
        """Record a login; expired sessions are pruned on the way."""

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        """The session with that id hash and its user's current role; None if unknown or its
        user is gone."""

    async def revoke_session(self, id_hash: str) -> None: ...


__all__ = [
    "DEFAULT_DISPOSITIONS",
    "LABELS",
    "AccountPage",
    "AccountTransaction",
    "Alert",
    "AlertConflict",
    "AlertEvent",
    "AlertFilter",
    "AlertNotFound",
    "AlertPage",
    "AlertStatus",
    "ApiKey",
    "AuditEntry",
    "Disposition",
    "EventListener",
    "Found",
    "InvalidAssignee",
    "Label",
    "LabelOutcome",
    "LabelStatus",
    "LabelValue",
    "LabelWithdrawal",
    "ModelInputs",
    "NameTaken",
    "Note",
    "Role",
    "SessionRecord",
    "Store",
    "StoredRecord",
    "StoredTransaction",
    "User",
    "UserInfo",
]


def utc_stamp(unix: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, now or at POSIX time `unix`: the form of every time
    the store writes; fixed width, so text order is time order."""
    at = dt.datetime.now(dt.UTC) if unix is None else dt.datetime.fromtimestamp(unix, dt.UTC)
    return at.isoformat(timespec="milliseconds")[:-6] + "Z"
