"""In-memory rate limits: failed logins per user name and per address, and a token bucket.

Both live in one server process's memory: a restart forgets them, and several processes
behind one balancer would each count their own. That fits fraudwatch's one-process design.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each message takes one."""

    __slots__ = ("_at", "_clock", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class LoginThrottle:
    """Failed logins in a sliding window, counted per user name and per client address.

    A name is locked once it has `per_name` failures in the window (guessing one password);
    an address once it has `per_address` (spraying one guess over many names). Success
    clears the name's count but not the address's: otherwise logging in to one's own account
    between guesses would reset the spraying count.
    """

    # Every unknown name an attacker tries is an entry: past this many, forget the oldest.
    MAX_TRACKED = 50_000

    def __init__(
        self, per_name: int, per_address: int, window: float, clock: Clock = time.monotonic
    ) -> None:
        self.per_name = per_name
        self.per_address = per_address
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _keys(self, name: str, address: str) -> tuple[tuple[tuple[str, str], int], ...]:
        # casefold: "Alice" and "alice" must not get five guesses each.
        return (("name", name.casefold()), self.per_name), (("addr", address), self.per_address)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, name: str, address: str) -> float | None:
        """Seconds until this name and address may try again; None if they may now."""
        now = self._clock()
        waits: list[float] = []
        for key, limit in self._keys(name, address):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= limit:
                # Allowed again once enough of the oldest failures leave the window.
                waits.append(failures[len(failures) - limit] + self.window - now)
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= self.MAX_TRACKED:
            self._forget_oldest(now)
        for key, _ in self._keys(name, address):
            failures = self._recent(key, now)
            if failures is None:
                failures = self._failures[key] = deque()
            failures.append(now)

    def succeeded(self, name: str) -> None:
        self._failures.pop(("name", name.casefold()), None)

    def _forget_oldest(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        # Still full of live entries: drop the oldest half (dicts keep insertion order).
        if len(self._failures) >= self.MAX_TRACKED:
            for key in list(self._failures)[: self.MAX_TRACKED // 2]:
                del self._failures[key]
