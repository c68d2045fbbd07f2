"""Data retention: transactions that raised no alert are deleted once they are older than
`retention_days`, with their labels and model inputs; alerts and their transactions stay.

Runs on the event loop as one task (the store does the deleting on its writer thread, a
chunk a commit), at start and then every `interval` seconds. Age is the server's clock at
receipt (`received_at`), not the transaction's own timestamp: a replayed 2018 file must not
be deleted as soon as it is stored.

The pages the deletions free are then given back to the file system, a few hundred a commit
(`Store.release_free_pages`), so the database file shrinks while the server runs and the
detection loop's batches are written in between. A file created before fraudwatch set
incremental auto-vacuum cannot do that: it keeps its size (SQLite reuses the pages) until
it is converted offline once (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import time

from server.store.base import Store, utc_stamp
from server.store.errors import StoreUnavailable

log = logging.getLogger(__name__)
RETENTION_INTERVAL_S = 3600.0
DAY_S = 86_400.0
PAGE_BYTES = 4096  # SQLite's default page size, which fraudwatch keeps
CONVERT_HINT = (
    "the database file was created without incremental auto-vacuum, so it cannot shrink "
    "while the server runs (freed pages are reused); to convert it once: stop fraudwatch, "
    "run `sqlite3 DATA_DIR/fraudwatch.db 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'` "
    "(it needs free disk space about the file's size), and start it again; "
    "see docs/operations.md"
)


async def prune_once(store: Store, days: float, now: float | None = None) -> int:
    """Delete what is older than `days` as of `now` (POSIX seconds; the clock if None), then
    give the freed pages back to the file system."""
    cutoff = utc_stamp((time.time() if now is None else now) - days * DAY_S)
    started = time.monotonic()
    deleted = await store.prune_transactions(cutoff)
    if deleted:
        log.info(
            "retention: deleted %d transactions received before %s (no alert) in %.1f s",
            deleted,
            cutoff,
            time.monotonic() - started,
        )
    if await release_space(store) is None and deleted:
        log.warning("retention: %s", CONVERT_HINT)
    return deleted


async def release_space(store: Store) -> int | None:
    """Give every free page back to the file system, one short commit a step (other writes
    go in between); how many pages, or None when the file cannot (`CONVERT_HINT`)."""
    started = time.monotonic()
    released = steps = 0
    while True:
        step = await store.release_free_pages()
        if step is None:
            return None
        released += step.released
        steps += 1
        # Nothing released: the rest is reused by new rows faster than it is given back.
        if not step.left or not step.released:
            break
    if released:
        log.info(
            "retention: gave %d free pages (%.1f MiB) back to the file system in %d steps "
            "in %.1f s",
            released,
            released * PAGE_BYTES / 2**20,
            steps,
            time.monotonic() - started,
        )
    return released


async def run_retention(store: Store, days: float, interval: float = RETENTION_INTERVAL_S) -> None:
    """Prune now, then every `interval` seconds, until cancelled; a store that is unavailable
    is tried again at the next round (the detection loop reports the outage)."""
    while True:
        try:
            await prune_once(store, days)
        except StoreUnavailable as exc:
            log.warning("retention: store unavailable (%s); next try in %.0f s", exc, interval)
        await asyncio.sleep(interval)
