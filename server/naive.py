"""The naive design, kept only as the benchmark's baseline: one task per transaction, each
verdict awaited to every client in turn. Same endpoints, same detector, same store."""

from __future__ import annotations

import asyncio
import time

import msgspec

from server import messages
from server.detection.detector import Detector
from server.detection.verdict import Verdict
from server.hub import Hub
from server.pipeline import new_alert_id
from server.store.base import Store, StoredRecord
from server.transactions import Transaction


async def _one(tx: Transaction, detector: Detector, store: Store, hub: Hub) -> Verdict:
    started = time.monotonic()
    known = await store.known_verdicts([tx.id])
    if tx.id in known:
        return known[tx.id]
    scored = detector.score(tx)
    verdict = Verdict(
        transaction_id=tx.id,
        score=scored.score,
        decision=scored.decision,
        reasons=list(scored.reasons),
        alert_id=new_alert_id() if scored.decision != "allow" else None,
        rules_version=scored.rules_version,
        latency_ms=round((time.monotonic() - started) * 1000, 3),
    )
    events = await store.write_batch([StoredRecord(tx, verdict, scored.severity)])
    verdict_message = {"type": "verdicts", "items": [msgspec.to_builtins(verdict)]}
    # Back to plain dicts so that, as in the naive design, each client serialises its own copy.
    alert_messages = [msgspec.json.decode(messages.alert_event(event)) for event in events]
    for sub in list(hub.subscribers):
        try:
            # Serialised per client and awaited client after client: the pattern under test.
            if sub.wants_verdicts:
                await sub.ws.send_json(verdict_message)
            for message in alert_messages:
                await sub.ws.send_json(message)
        except ConnectionError:
            pass
    return verdict


async def submit(
    transactions: list[Transaction], detector: Detector, store: Store, hub: Hub
) -> list[Verdict]:
    tasks = [asyncio.create_task(_one(tx, detector, store, hub)) for tx in transactions]
    return list(await asyncio.gather(*tasks))
