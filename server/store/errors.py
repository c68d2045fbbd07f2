"""Store failures that are not the request's fault: its surroundings (locks, disk,
permissions), after which the caller keeps its data and retries; or a damaged row, which no
retry can read."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The store cannot take reads or writes right now; `cause` says why, for people
    ("database is locked (SQLITE_BUSY)"). The call that raised it may be retried as it was."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class StoredRowDamaged(Exception):
    """A row asked for by itself (an alert) is stored but cannot be read back: edited by
    hand, written by a faulty build or another tool, text that is not UTF-8. A read of many
    rows leaves such a row out; this one has nothing else to give. `what` names the row for
    the caller ("alert al-1"), `problem` says what is wrong with it, for the operator. Final:
    a retry reads the same row."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem


class DatabaseUnusable(Exception):
    """The database file cannot be opened as fraudwatch's at all: not a SQLite database
    (another file under its name), or damaged in its header. Said with the file's path, at
    start, rather than as a traceback."""
