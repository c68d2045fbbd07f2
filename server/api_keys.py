"""API keys for machine clients: generated, stored as SHA-256, scoped, looked up through a cache.

Why SHA-256 and not Argon2 as for passwords: a key is 192 random bits, so there is nothing
to brute-force and a slow hash would add no safety, only cost on every request. Keys are
found by their hash (an index lookup), so the lookup's timing can tell an attacker only about
hashes, which reveal nothing about keys; the one key compared directly, the bootstrap key
from the `api_key` setting, is compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import NamedTuple

from server.ratelimit import Clock
from server.store.base import ApiKey, Store

log = logging.getLogger(__name__)

# backup: `POST /api/v1/admin/snapshot`, which `fraudwatch backup` sends before it copies.
SCOPES = ("ingest", "read", "labels", "backup")
PREFIX = "fw_"
KEY_BYTES = 24  # 192 bits
BOOTSTRAP_NAME = "api"
# last_used_at is for humans reading `keys list`: a minute's precision spares the writer.
TOUCH_EVERY_S = 60.0
# Each unknown key tried is cached too (so a flood of bad keys is not a flood of reads);
# past this many entries the cache starts afresh.
MAX_CACHED = 10_000
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyGrant(NamedTuple):
    """What a valid key may do. `key_hash` is None for the bootstrap key."""

    name: str
    scopes: frozenset[str]
    key_hash: str | None


class _Cached(NamedTuple):
    key: ApiKey | None  # None: no live key has this hash
    at: float


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    """Scopes from 'ingest,read' (or a list), checked, in canonical order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = {s.strip() for s in items if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"give at least one scope: {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in wanted]


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError("key name must be 1-64 letters, digits, '-' or '_'")


class KeyRing:
    """The keys a running server accepts.

    A lookup is trusted for `ttl` seconds: `fraudwatch keys revoke` runs in another process,
    so a revoked key keeps working here for at most that long. A revocation made through
    this KeyRing applies from the next request.
    """

    def __init__(
        self, store: Store, bootstrap: str | None, ttl: float, clock: Clock = time.monotonic
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap.encode() if bootstrap else None
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._touching: set[asyncio.Task[None]] = set()

    async def lookup(self, key: str) -> KeyGrant | None:
        if self._bootstrap is not None and hmac.compare_digest(key.encode(), self._bootstrap):
            return KeyGrant(BOOTSTRAP_NAME, frozenset(SCOPES), None)
        return await self.check(key_hash(key))

    async def check(self, digest: str) -> KeyGrant | None:
        """The grant of the live key with this hash, if there is one."""
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is None or now - cached.at >= self.ttl:
            found = await self._store.api_key_by_hash(digest)
            live = found if found is not None and found.revoked_at is None else None
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            cached = self._cache[digest] = _Cached(live, now)
        if cached.key is None:
            return None
        self._touch(cached.key.name, now)
        return KeyGrant(cached.key.name, frozenset(cached.key.scopes), digest)

    def _touch(self, name: str, now: float) -> None:
        """Record that a key was used (at most every TOUCH_EVERY_S), beside the request: a
        slow or locked store must not hold up a request over bookkeeping."""
        if now - self._touched.get(name, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[name] = now
        task = asyncio.create_task(self._record_use(name), name=f"touch-key-{name}")
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def _record_use(self, name: str) -> None:
        try:
            await self._store.touch_api_key(name)
        except Exception:
            # Bookkeeping only: never fail anything over it.
            log.warning("could not record the use of API key %s", name, exc_info=True)

    async def create(self, name: str, scopes: Iterable[str]) -> str:
        """A new key (shown to its owner once; only its hash is kept). Raises ValueError."""
        check_name(name)
        key = generate()
        await self._store.add_api_key(name, key_hash(key), parse_scopes(scopes))
        return key

    async def revoke(self, name: str) -> bool:
        revoked = await self._store.revoke_api_key(name)
        for digest, cached in list(self._cache.items()):
            if cached.key is not None and cached.key.name == name:
                del self._cache[digest]
        return revoked
