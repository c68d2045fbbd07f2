"""Data retention: transactions that raised no alert are deleted once they are older than
`retention_days`, with their labels and model inputs; alerts and their transactions stay.

Runs on the event loop as one task (the store does the deleting on its writer thread, a
chunk a commit), at start and then every `interval` seconds. Age is the server's clock at
receipt (`received_at`), not the transaction's own timestamp: a replayed 2018 file must not
be deleted as soon as it is stored.
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


async def prune_once(store: Store, days: float, now: float | None = None) -> int:
    """Delete what is older than `days` as of `now` (POSIX seconds; the clock if None)."""
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
    return deleted


async def run_retention(store: Store, days: float, interval: float = RETENTION_INTERVAL_S) -> None:
    """Prune now, then every `interval` seconds, until cancelled; a store that is unavailable
    is tried again at the next round (the detection loop reports the outage)."""
    while True:
        try:
            await prune_once(store, days)
        except StoreUnavailable as exc:
            log.warning("retention: store unavailable (%s); next try in %.0f s", exc, interval)
        await asyncio.sleep(interval)
