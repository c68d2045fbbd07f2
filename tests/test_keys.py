"""API keys: `fraudwatch keys` in its own process, hashed storage, scopes, revocation bounds."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from server import api_keys
from server.api_keys import KeyRing
from server.app import create_app
from server.state import AUTH
from server.store.base import ApiKey
from tests.conftest import AUTH as BOOTSTRAP
from tests.conftest import make_settings, tx
from tests.test_auth import UPGRADE, FakeClock, closed
from tests.test_cli import fraudwatch
from tests.test_ws import receive


def create_key(data_dir: Path, name: str, scopes: str) -> str:
    done = fraudwatch("keys", "create", name, "--scopes", scopes, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert "shown only this once" in done.stderr
    key = done.stdout.strip()
    assert "\n" not in key
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def server(aiohttp_client: Any, data_dir: Path, **overrides: Any) -> TestClient:
    return await aiohttp_client(create_app(make_settings(data_dir, **overrides)))  # type: ignore[no-any-return]


# --- the command --------------------------------------------------------------------------


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    key = create_key(tmp_path, "ci-ingest", "read,ingest")
    assert key.startswith("fw_") and len(key) >= 35
    create_key(tmp_path, "dashboards", "read")
    # Only the hash is stored.
    with sqlite3.connect(tmp_path / "fraudwatch.db") as conn:
        rows = dict(conn.execute("SELECT name, key_hash FROM api_keys").fetchall())
        dump = "\n".join(conn.iterdump())
    assert rows["ci-ingest"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in dump

    listed = fraudwatch("keys", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and rows["ci-ingest"] not in listed.stdout
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "ingest,read" in lines["ci-ingest"] and lines["ci-ingest"].endswith("active")
    assert "bootstrap key" in listed.stdout

    revoked = fraudwatch("keys", "revoke", "dashboards", "--data-dir", str(tmp_path))
    assert revoked.returncode == 0, revoked.stderr
    assert "within 5 s" in revoked.stdout
    listed = fraudwatch("keys", "list", "--data-dir", str(tmp_path)).stdout
    assert "revoked 20" in next(line for line in listed.splitlines() if "dashboards" in line)


def test_keys_command_errors(tmp_path: Path) -> None:
    create_key(tmp_path, "taken", "read")
    for args, code, message in (
        (("create", "ci", "--scopes", "ingest,root"), 2, "unknown scope 'root'"),
        (("create", "ci", "--scopes", ","), 2, "at least one scope"),
        (("create", "c i", "--scopes", "read"), 2, "key name must be"),
        (("create", "ci"), 2, "--scopes"),
        (("create", "taken", "--scopes", "read"), 2, "already exists"),
        (("revoke", "nobody"), 1, "no live API key named 'nobody': no such key"),
        (("revoke", "taken"), 0, ""),
        (("revoke", "taken"), 1, "no live API key named 'taken': already revoked at 20"),
        # Names are not reused; "already exists" contradicted `keys list`'s "revoked".
        (("create", "taken", "--scopes", "read"), 2, "belongs to a key revoked at 20"),
    ):
        done = fraudwatch("keys", *args, "--data-dir", str(tmp_path))
        assert done.returncode == code, (args, done.stderr)
        assert message in done.stderr, args
        assert "Traceback" not in done.stderr


def test_keys_list_and_revoke_need_an_existing_database(tmp_path: Path) -> None:
    create_key(tmp_path / "data", "feeder", "ingest")
    typo = tmp_path / "dat"
    for args in (("list",), ("revoke", "feeder")):
        done = fraudwatch("keys", *args, "--data-dir", str(typo))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"no database at {typo / 'fraudwatch.db'}" in done.stderr, args
    # Nothing was made in the mistyped directory, and the real key is still live.
    assert not typo.exists()
    listed = fraudwatch("keys", "list", "--data-dir", str(tmp_path / "data"))
    assert listed.stdout.splitlines()[1].endswith("active")


# --- scopes in a running server -----------------------------------------------------------


async def test_scopes_are_enforced(aiohttp_client: Any, tmp_path: Path) -> None:
    ingest = create_key(tmp_path, "ingest-only", "ingest")
    read = create_key(tmp_path, "read-only", "read")
    labels = create_key(tmp_path, "labels-only", "labels")
    client = await server(aiohttp_client, tmp_path)

    async def statuses(key: dict[str, str]) -> tuple[int, int, int]:
        ingested = await client.post(
            "/api/v1/transactions", json=tx(f"s-{time.time()}"), headers=key
        )
        listed = await client.get("/api/v1/alerts", headers=key)
        socket = await client.get("/ws", headers={**key, **UPGRADE})
        socket.close()
        return ingested.status, listed.status, socket.status

    assert await statuses(bearer(ingest)) == (200, 403, 403)
    assert await statuses(bearer(read)) == (403, 200, 101)
    assert await statuses(bearer(labels)) == (403, 403, 403)
    assert await statuses(BOOTSTRAP) == (200, 200, 101)  # the `api_key` setting: all scopes
    assert await statuses(bearer(read + "x")) == (401, 401, 401)
    refused = await client.get("/api/v1/alerts", headers=bearer(ingest))
    assert (await refused.json())["error"]["code"] == "forbidden"
    async with client.ws_connect("/ws", headers=bearer(read)) as ws:
        assert (await receive(ws, "hello"))["user"] == "read-only"
    # No key can triage: a decision belongs to a person.
    alert = await client.post(f"/api/v1/alerts/{'x' * 8}/ack", headers=BOOTSTRAP)
    assert alert.status == 403


async def test_last_use_is_recorded(aiohttp_client: Any, tmp_path: Path) -> None:
    key = create_key(tmp_path, "reader", "read")
    client = await server(aiohttp_client, tmp_path)
    assert (await client.get("/api/v1/alerts", headers=bearer(key))).status == 200
    # Recorded beside the request (never holding it up): wait for the write to land.
    async with asyncio.timeout(5):
        while True:
            [stored] = await client.app[AUTH].store.list_api_keys()  # type: ignore[index]
            if stored.last_used_at is not None:
                break
            await asyncio.sleep(0.01)
    assert stored.last_used_at.startswith("20")


# --- revocation ---------------------------------------------------------------------------


async def test_revoked_in_another_process_within_the_cache_ttl(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    key = create_key(tmp_path, "ci", "ingest,read")
    client = await server(aiohttp_client, tmp_path, api_key_cache_ttl=0.5)
    assert (await client.get("/api/v1/alerts", headers=bearer(key))).status == 200
    async with client.ws_connect("/ws", headers=bearer(key)) as ws:
        await receive(ws, "hello")
        revoke = await asyncio.create_subprocess_exec(
            *fraudwatch_argv("keys", "revoke", "ci", "--data-dir", str(tmp_path))
        )
        assert await revoke.wait() == 0
        revoked_at = time.monotonic()
        while (await client.get("/api/v1/alerts", headers=bearer(key))).status == 200:
            assert time.monotonic() - revoked_at < 0.5 + 1.0, "still accepted past the TTL"
            await asyncio.sleep(0.05)
        # An open socket re-checks its key too (at least every second) and is closed.
        assert await closed(ws, within=3) == (4401, "api key revoked")
    resp = await client.post("/api/v1/transactions", json=tx("late"), headers=bearer(key))
    assert resp.status == 401


async def test_revoked_in_process_is_refused_at_once(aiohttp_client: Any, tmp_path: Path) -> None:
    key = create_key(tmp_path, "ci", "read")
    client = await server(aiohttp_client, tmp_path, api_key_cache_ttl=3600)
    assert (await client.get("/api/v1/alerts", headers=bearer(key))).status == 200
    assert await client.app[AUTH].keys.revoke("ci")  # type: ignore[index]
    assert (await client.get("/api/v1/alerts", headers=bearer(key))).status == 401


async def test_a_401_says_what_was_wrong_with_the_credentials(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # A feed whose key was revoked was told "send 'Authorization: Bearer <api key>'", which
    # it was doing: the answer now says the key itself is not accepted.
    key = create_key(tmp_path, "ci", "ingest")
    client = await server(aiohttp_client, tmp_path, api_key_cache_ttl=0)
    assert await client.app[AUTH].keys.revoke("ci")  # type: ignore[index]

    async def refusal(headers: dict[str, str]) -> str:
        resp = await client.post("/api/v1/transactions", json=tx("t-1"), headers=headers)
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert error["code"] == "unauthorized"
        return str(error["message"])

    for sent in (key, "fw_never-issued"):
        assert "API key not accepted: unknown or revoked" in await refusal(bearer(sent))
    assert "'Basic' scheme" in await refusal({"Authorization": "Basic YWxpY2U6cHc="})
    # A bare key (no "Bearer ") is not echoed back.
    bare = await refusal({"Authorization": key})
    assert "(no scheme)" in bare
    assert key not in bare
    assert await refusal({}) == "Log in, or send 'Authorization: Bearer <api key>'"
    ws = await client.get("/ws", headers=bearer(key))
    assert ws.status == 401
    assert "unknown or revoked" in (await ws.json())["error"]["message"]


def fraudwatch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "server", *args]


# --- the key ring on its own --------------------------------------------------------------


class CountingStore:
    """Just what a KeyRing asks of the store, counting the lookups."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.lookups = 0
        self.touches = 0

    async def add_api_key(self, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        self.keys[key_hash] = ApiKey(
            name=name, key_hash=key_hash, scopes=list(scopes), created_at="now"
        )

    async def revoke_api_key(self, name: str) -> bool:
        for digest, key in self.keys.items():
            if key.name == name:
                self.keys[digest] = msgspec.structs.replace(key, revoked_at="now")
                return True
        return False

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        self.lookups += 1
        return self.keys.get(key_hash)

    async def touch_api_key(self, name: str) -> None:
        self.touches += 1


async def test_key_ring_caches_hits_and_misses_for_the_ttl() -> None:
    store, clock = CountingStore(), FakeClock()
    ring = KeyRing(store, "boot-key", ttl=5.0, clock=clock)  # type: ignore[arg-type]
    key = await ring.create("ci", ["read", "ingest"])
    grant = await ring.lookup(key)
    assert grant is not None
    assert (grant.name, grant.scopes) == ("ci", frozenset({"ingest", "read"}))
    for _ in range(50):
        assert await ring.lookup(key) is not None
        assert await ring.lookup("fw_not-a-key") is None
    assert store.lookups == 2  # one per distinct key, not per request
    await asyncio.sleep(0)  # the use is recorded beside the request, not in it
    assert store.touches == 1
    boot = await ring.lookup("boot-key")
    assert boot is not None and boot.scopes == frozenset(api_keys.SCOPES)
    assert store.lookups == 2  # the bootstrap key never reaches the store

    # Revoked elsewhere (straight in the store): honoured once the TTL runs out.
    digest = api_keys.key_hash(key)
    store.keys[digest] = msgspec.structs.replace(store.keys[digest], revoked_at="now")
    clock.now += 4.9
    assert await ring.lookup(key) is not None
    clock.now += 0.2
    assert await ring.lookup(key) is None


def test_generated_keys_and_scopes() -> None:
    keys = {api_keys.generate() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("fw_") and len(k) == 3 + 32 for k in keys)  # 24 bytes, base64url
    assert api_keys.parse_scopes("read, ingest,read") == ["ingest", "read"]
    with pytest.raises(ValueError, match="unknown scope 'admin'"):
        api_keys.parse_scopes("read,admin")


async def test_socket_of_a_key_without_read_is_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    key = create_key(tmp_path, "feeder", "ingest")
    client = await server(aiohttp_client, tmp_path)
    resp = await client.get("/ws", headers={**bearer(key), **UPGRADE})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    assert resp.headers.get("Upgrade") is None  # never upgraded
