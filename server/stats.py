"""Live counters: what the dashboard's header and /metrics show."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 2)


class Stats:
    """Counters since start plus a per-tick window for rates and latency percentiles."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.transactions_total = 0
        self.alerts_total = 0
        self.batches_total = 0
        self.rejected_total = 0
        # Re-sent ids whose stored row could not be read back: the store's fault, not the
        # input's, so not counted as rejected.
        self.stored_rows_damaged = 0
        self.ws_slow_disconnects = 0
        self.ws_verdicts_dropped = 0
        # Labels stored whose learning (model, scorecard, merchant risk) then failed.
        self.labels_not_learnt = 0
        self._tick_started = self.started
        self._tick_tx = 0
        self._tick_alerts = 0
        self._tick_latencies: list[float] = []
        self.last: dict[str, Any] = {
            "tx_per_s": 0.0,
            "alerts_per_s": 0.0,
            "latency_ms": {"p50": None, "p99": None},
        }

    def record_batch(
        self, transactions: int, alerts: int, latencies: Sequence[float], weights: Sequence[int]
    ) -> None:
        self.batches_total += 1
        self.transactions_total += transactions
        self.alerts_total += alerts
        self._tick_tx += transactions
        self._tick_alerts += alerts
        # One sample per submission, weighted by its size, capped to keep the tick cheap.
        for latency, weight in zip(latencies, weights, strict=True):
            self._tick_latencies.extend([latency] * min(weight, 100))

    def record_rejected(self, count: int) -> None:
        self.rejected_total += count

    def record_damaged(self, count: int) -> None:
        self.stored_rows_damaged += count

    def tick(self) -> dict[str, Any]:
        """Close the current window and return rates and latency percentiles over it."""
        now = time.monotonic()
        elapsed = max(now - self._tick_started, 1e-6)
        latencies = sorted(self._tick_latencies)
        self.last = {
            "tx_per_s": round(self._tick_tx / elapsed, 1),
            "alerts_per_s": round(self._tick_alerts / elapsed, 2),
            # The count itself, so a client summing a minute of ticks is exact, whatever the
            # spacing at which the messages reach it.
            "alerts": self._tick_alerts,
            "latency_ms": {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)},
        }
        self._tick_started = now
        self._tick_tx = 0
        self._tick_alerts = 0
        self._tick_latencies = []
        return self.last
