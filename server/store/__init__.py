"""Durable state: transactions and verdicts, alerts and their event log, users, audit."""

from server.store.base import (
    Alert,
    AlertConflict,
    AlertEvent,
    AlertNotFound,
    AlertPage,
    AuditEntry,
    Store,
    StoredRecord,
    User,
)

__all__ = [
    "Alert",
    "AlertConflict",
    "AlertEvent",
    "AlertNotFound",
    "AlertPage",
    "AuditEntry",
    "Store",
    "StoredRecord",
    "User",
]
