"""Card testing posted through the ingest API: the alert load of the soak benchmarks.

Each account gets `PER_ACCOUNT` charges of $1.00, 45 s apart in event time, at four
merchants; the default rule pack's `card_testing` fires from the third on, so an account
raises ten alerts. `inject` posts about `per_second` alerts a second, every account new,
as NDJSON, until `stop` is set (or the task is cancelled). Used by
benchmarks/dashboard_soak.py, benchmarks/server_memory.py and (one account, as a template)
benchmarks/dashboard_flood.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time

import aiohttp

PER_ACCOUNT = 12  # card testing fires from the third charge on: ten alerts an account


def card_testing(account: str, merchants: str, base: dt.datetime) -> list[dict[str, str]]:
    """`account`'s `PER_ACCOUNT` charges from `base`, at merchants `m-{merchants}-0..3`."""
    return [
        {
            "id": f"{account}-{i}",
            "timestamp": (base + dt.timedelta(seconds=45 * i)).isoformat(),
            "account_id": account,
            "merchant_id": f"m-{merchants}-{i % 4}",
            "merchant_name": "Soak Donate",
            "amount": "1.00",
            "currency": "USD",
        }
        for i in range(PER_ACCOUNT)
    ]


async def inject(
    url: str,
    api_key: str,
    per_second: float,
    *,
    prefix: str,
    stop: asyncio.Event | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """About `per_second` alerts a second into the server at `url`: accounts
    `{prefix}-0000000`, `{prefix}-0000001`, ... `counts` (if given) gets `alerts` raised
    and `errors` (requests that failed)."""
    if per_second <= 0:
        return
    accounts = max(1, round(per_second / (PER_ACCOUNT - 2)))
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson"}
    stop = stop or asyncio.Event()
    k = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        next_at = time.monotonic()
        while not stop.is_set():
            base = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
            lines = []
            for _ in range(accounts):
                charges = card_testing(f"{prefix}-{k:07d}", prefix, base)
                lines.extend(json.dumps(charge) for charge in charges)
                k += 1
            try:
                async with http.post(
                    f"{url}/api/v1/transactions", data="\n".join(lines) + "\n"
                ) as r:
                    body = await r.json()
                if counts is not None:
                    results = body.get("results", [])
                    counts["alerts"] += sum(1 for res in results if res.get("alert_id"))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                if counts is not None:
                    counts["errors"] += 1
            next_at += 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
