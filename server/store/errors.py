"""Store failures that come from the store's surroundings (locks, disk, permissions), not from
the request: the caller keeps its data and retries, and the service reports itself unhealthy."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The store cannot take reads or writes right now; `cause` says why, for people
    ("database is locked (SQLITE_BUSY)"). The call that raised it may be retried as it was."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause
