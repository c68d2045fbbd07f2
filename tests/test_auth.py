"""Who gets in and what they may do: sessions, throttling, roles, CSRF, origins, headers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import create_user
from server.ratelimit import LoginThrottle, TokenBucket
from server.state import STORE
from server.views import ws as ws_view
from tests.conftest import AUTH, Login, make_settings
from tests.test_api import raise_alert
from tests.test_ws import receive

PASSWORD = "correct horse battery"
COOKIE = "fraudwatch_session"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def app_client(aiohttp_client: Any, tmp_path: Path, **overrides: Any) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, **overrides)))  # type: ignore[no-any-return]


async def add_user(client: TestClient, name: str, role: str = "analyst") -> None:
    await create_user(client.app[STORE], name, PASSWORD, role)  # type: ignore[arg-type,index]


async def post_login(
    client: TestClient, name: str, password: str = PASSWORD, **headers: str
) -> aiohttp.ClientResponse:
    return await client.post(
        "/login",
        data={"username": name, "password": password},
        headers=headers,
        allow_redirects=False,
    )


def own_origin(client: TestClient) -> str:
    return str(client.make_url("/")).rstrip("/")


def session_cookie(client: TestClient) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value


async def closed(ws: aiohttp.ClientWebSocketResponse, within: float = 5) -> tuple[int | None, str]:
    """Read until the server closes the socket; the code and reason of its close frame.

    That code is what a browser reports (CloseEvent.code is the code of the first close
    frame received). aiohttp's client may instead report 1006 in `close_code` when the
    server, closing from outside the socket's handler, drops the connection before the
    client's close reply is written."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                return msg.data, str(msg.extra or "")
            if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
                return ws.close_code, ""


async def answers_ping(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await ws.send_json({"type": "ping"})
    return (await receive(ws, "pong"))["type"] == "pong"


# --- the session cookie, expiry, logout ------------------------------------------------------


@pytest.mark.parametrize("secure", [False, True])
async def test_session_cookie_is_encrypted_httponly_strict(
    aiohttp_client: Any, tmp_path: Path, secure: bool
) -> None:
    client = await app_client(aiohttp_client, tmp_path, cookie_secure=secure)
    await add_user(client, "alice")
    resp = await post_login(client, "alice")
    assert resp.status == 303
    cookies = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie"):
        cookies.load(header)
    morsel = cookies[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert bool(morsel["secure"]) is secure
    assert morsel["path"] == "/"
    assert int(morsel["max-age"]) == 12 * 3600
    # Encrypted: nothing in it can be read, or changed, by the browser.
    assert "alice" not in morsel.value and "analyst" not in morsel.value


async def test_logout_needs_its_csrf_token_then_ends_the_session_for_good(
    client: TestClient, login: Login
) -> None:
    csrf = await login("alice")
    stolen = session_cookie(client)
    for form in ({}, {"csrf_token": "wrong"}):
        resp = await client.post("/logout", data=form, allow_redirects=False)
        assert resp.status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200  # still logged in
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    assert (await client.get("/", allow_redirects=False)).status == 303
    # The session is revoked on the server: a copy of the cookie taken before is worthless.
    client.session.cookie_jar.clear()
    replay = {"Cookie": f"{COOKIE}={stolen}"}
    assert (await client.get("/", headers=replay, allow_redirects=False)).status == 303
    assert (await client.get("/api/v1/alerts", headers=replay)).status == 401


async def test_logout_closes_that_sessions_sockets_only(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    csrf = await login("alice")
    bob: TestClient = await aiohttp_client(client.server)
    await login("bob", session=bob)
    async with (
        client.ws_connect("/ws") as alice_ws,
        bob.ws_connect("/ws") as bob_ws,
        client.ws_connect("/ws", headers=AUTH) as machine_ws,
    ):
        for ws in (alice_ws, bob_ws, machine_ws):
            await receive(ws, "hello")
        resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
        assert resp.status == 303
        assert await closed(alice_ws) == (4401, "logged out")
        assert await answers_ping(bob_ws)
        assert await answers_ping(machine_ws)


async def test_a_role_changed_by_another_process_closes_the_users_sockets(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, api_key_cache_ttl=0.5)
    await add_user(client, "alice")
    assert (await post_login(client, "alice")).status == 303
    async with client.ws_connect("/ws") as ws:
        await receive(ws, "hello")
        # The operator demotes alice with the CLI, in its own process, on the same database.
        demote = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "server", "users", "add", "alice", "--role", "viewer"),
            *("--password-stdin", "--data-dir", str(tmp_path)),
            stdin=asyncio.subprocess.PIPE,
        )
        await demote.communicate(PASSWORD.encode() + b"\n")
        assert demote.returncode == 0
        assert await closed(ws, within=10) == (4401, "role changed")
    async with client.ws_connect("/ws") as ws:  # the same login, now as a viewer
        assert (await receive(ws, "hello"))["user"] == "alice"
    refused = await client.post("/api/v1/alerts/x/ack", headers={"X-CSRF-Token": "x"})
    assert refused.status == 403


async def test_expired_session_is_refused_and_its_sockets_closed(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, session_max_age=3)
    await add_user(client, "alice")
    assert (await post_login(client, "alice")).status == 303
    cookie = session_cookie(client)
    started = time.monotonic()
    async with client.ws_connect("/ws") as ws:
        await receive(ws, "hello")
        assert await closed(ws, within=6) == (4401, "session expired")
    assert time.monotonic() - started <= 4.5
    # The cookie itself is refused now, whether the browser still sends it or not.
    client.session.cookie_jar.clear()
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    assert (await client.get("/", headers=headers, allow_redirects=False)).status == 303
    assert (await client.get("/api/v1/alerts", headers=headers)).status == 401
    assert (await client.get("/ws", headers={**headers, **UPGRADE})).status == 401


# --- login throttling ---------------------------------------------------------------------


async def test_failed_logins_lock_the_name_then_the_address(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(
        aiohttp_client, tmp_path, login_max_failures=3, login_max_failures_per_ip=6
    )
    await add_user(client, "alice")
    await add_user(client, "bob")
    for _ in range(3):
        assert (await post_login(client, "alice", "wrong password")).status == 401
    # Locked: even the right password is not checked now.
    locked = await post_login(client, "Alice")
    assert locked.status == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert "Too many failed sign-ins" in await locked.text()
    assert locked.headers["Content-Security-Policy"]
    # Another name from the same address is not locked by alice's failures...
    assert (await post_login(client, "bob")).status == 303
    # ...until the address itself has failed too often (spraying one guess over many names).
    for name in ("carol", "dave", "erin"):
        assert (await post_login(client, name, "guess")).status == 401
    assert (await post_login(client, "bob")).status == 429


async def test_a_browsers_failed_sign_in_is_a_page_a_scripts_a_401(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, login_max_failures=4)
    await add_user(client, "alice")
    navigate = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html,application/xhtml+xml"}
    # A browser's form post: the form again with its message, as a 200, so the analyst's
    # console logs no failed load for an expected outcome.
    page = await post_login(client, "alice", "typo", **navigate)
    assert page.status == 200
    assert "Wrong user name or password." in await page.text()
    assert "Sec-Fetch-Mode" in page.headers["Vary"]
    # Over plain HTTP to another host a browser sends no Sec-Fetch headers: Accept tells.
    plain = await post_login(client, "alice", "typo", Accept="text/html,*/*;q=0.8")
    assert plain.status == 200
    # A script, and a fetch() from a page, keep the 401.
    assert (await post_login(client, "alice", "typo")).status == 401
    fetched = await post_login(client, "alice", "typo", **{**navigate, "Sec-Fetch-Mode": "cors"})
    assert fetched.status == 401
    # Locked out: the browser gets the page with the wait; a script the 429; both Retry-After.
    locked = await post_login(client, "alice", "typo", **navigate)
    assert locked.status == 200
    assert "Too many failed sign-ins" in await locked.text()
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert (await post_login(client, "alice")).status == 429


async def test_a_successful_login_resets_the_names_count(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, login_max_failures=3)
    await add_user(client, "alice")
    for _ in range(2):
        for _ in range(2):
            assert (await post_login(client, "alice", "typo")).status == 401
        assert (await post_login(client, "alice")).status == 303


def test_throttle_window_slides_and_names_fold_case() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(per_name=3, per_address=10, window=300, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") is None
        throttle.failed("ALICE", "10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("alice", "10.0.0.9") == pytest.approx(270)
    clock.now += 271
    assert throttle.retry_after("alice", "10.0.0.9") is None  # the oldest failure left
    throttle.failed("alice", "10.0.0.9")
    assert throttle.retry_after("alice", "10.0.0.9") == pytest.approx(9)  # 2nd one leaves
    throttle.succeeded("Alice")
    assert throttle.retry_after("alice", "10.0.0.9") is None
    # Success does not clear the address: a valid account must not launder spraying.
    for i in range(8):
        throttle.failed(f"user{i}", "10.0.0.9")
    assert throttle.retry_after("nobody", "10.0.0.9") is None
    throttle.failed("user9", "10.0.0.9")  # the address's 10th, counting the one before
    assert throttle.retry_after("nobody", "10.0.0.9") == pytest.approx(300)


def test_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 100
    assert sum(bucket.take() for _ in range(10)) == 3


# --- roles --------------------------------------------------------------------------------


async def test_viewer_reads_but_cannot_triage(client: TestClient, login: Login) -> None:
    alert_id = await raise_alert(client)
    csrf = await login("vera", role="viewer")
    page = await client.get("/")
    assert page.status == 200
    assert '<meta name="fw-role" content="viewer">' in await page.text()
    assert (await client.get("/api/v1/alerts")).status == 200
    assert (await client.get(f"/api/v1/alerts/{alert_id}")).status == 200
    headers = {"X-CSRF-Token": csrf}
    for action, body in (("ack", None), ("resolve", {"disposition": "fraud"})):
        resp = await client.post(f"/api/v1/alerts/{alert_id}/{action}", json=body, headers=headers)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    async with client.ws_connect("/ws") as ws:
        assert (await receive(ws, "hello"))["user"] == "vera"
        await ws.send_json({"type": "subscribe", "verdicts": True})
        assert (await receive(ws, "subscribed"))["verdicts"] is True
    alert = (await (await client.get(f"/api/v1/alerts/{alert_id}")).json())["alert"]
    assert alert["status"] == "open"


async def test_admin_can_do_what_an_analyst_can(client: TestClient, login: Login) -> None:
    alert_id = await raise_alert(client)
    csrf = await login("ada", role="admin")
    headers = {"X-CSRF-Token": csrf}
    assert (await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=headers)).status == 200
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"disposition": "legitimate"}, headers=headers
    )
    assert resp.status == 200


async def test_a_role_change_applies_to_a_live_session(client: TestClient, login: Login) -> None:
    alert_id = await raise_alert(client)
    csrf = await login("alice")
    await add_user(client, "alice", "viewer")
    resp = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf})
    assert resp.status == 403


async def test_sessions_cannot_ingest(client: TestClient, login: Login) -> None:
    csrf = await login("ada", role="admin")
    resp = await client.post("/api/v1/transactions", json={}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"


# --- CSRF and origins ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_every_state_change_needs_the_csrf_token(
    client: TestClient, login: Login, token: str | None
) -> None:
    await login("alice")
    alert_id = await raise_alert(client)
    headers = {} if token is None else {"X-CSRF-Token": token}
    for action, body in (("ack", None), ("resolve", {"disposition": "fraud"})):
        resp = await client.post(f"/api/v1/alerts/{alert_id}/{action}", json=body, headers=headers)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "csrf"
    form = {} if token is None else {"csrf_token": token}
    assert (await client.post("/logout", data=form, allow_redirects=False)).status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200
    alert = (await (await client.get(f"/api/v1/alerts/{alert_id}")).json())["alert"]
    assert alert["status"] == "open"


async def test_login_form_refuses_foreign_origins(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, allowed_origins="https://fw.example.com")
    await add_user(client, "alice")
    resp = await post_login(client, "alice", Origin="https://evil.example")
    assert resp.status == 403
    assert COOKIE not in resp.cookies
    for origin in (own_origin(client), "https://fw.example.com"):
        assert (await post_login(client, "alice", Origin=origin)).status == 303
    assert (await post_login(client, "alice")).status == 303  # no Origin: not a browser


async def test_ws_origin_allowlist_is_checked_before_the_upgrade(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, allowed_origins="https://fw.example.com")
    for credentials in ({}, AUTH):  # refused before the caller is even looked at
        resp = await client.get(
            "/ws", headers={**UPGRADE, **credentials, "Origin": "https://evil.example"}
        )
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "bad_origin"
    for origin in ("https://fw.example.com", own_origin(client)):
        async with client.ws_connect("/ws", headers=AUTH, origin=origin) as ws:
            await receive(ws, "hello")


# --- the WebSocket after the upgrade ------------------------------------------------------


async def test_ws_client_messages_are_authorized_by_type(
    client: TestClient, login: Login, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No client message changes state today; this stands in for one that would.
    done: list[str] = []
    acknowledge = ws_view.Command("triage", lambda _hub, _sub, who, _msg: done.append(who.name))
    monkeypatch.setitem(ws_view.COMMANDS, "acknowledge", acknowledge)
    await login("vera", role="viewer")
    analyst: TestClient = await aiohttp_client(client.server)
    await login("alice", session=analyst)
    async with (
        client.ws_connect("/ws") as viewer_ws,
        client.ws_connect("/ws", headers=AUTH) as machine_ws,
        analyst.ws_connect("/ws") as analyst_ws,
    ):
        for ws in (viewer_ws, machine_ws):
            await receive(ws, "hello")
            await ws.send_json({"type": "acknowledge", "alert_id": "a-1"})
            assert (await receive(ws, "error"))["code"] == "forbidden"
            assert await answers_ping(ws)  # refused, not disconnected
        await receive(analyst_ws, "hello")
        await analyst_ws.send_json({"type": "acknowledge", "alert_id": "a-1"})
        assert await answers_ping(analyst_ws)
    assert done == ["alice"]


async def test_ws_messages_are_validated(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        for bad in ([1, 2], {"type": 5}, {"type": "subscribe", "verdicts": "yes"}):
            await ws.send_json(bad)
            assert (await receive(ws, "error"))["code"] == "bad_message"
        await ws.send_bytes(b"\x00")
        assert (await receive(ws, "error"))["code"] == "bad_message"


async def test_ws_rate_limit_then_flood_close(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, ws_rate_limit=1.0, ws_rate_burst=5)
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        for _ in range(15):
            await ws.send_json({"type": "ping"})
        pongs, errors = 0, []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while True:
                    data = (await ws.receive()).json()
                    pongs += data["type"] == "pong"
                    if data["type"] == "error":
                        errors.append(data["code"])
        assert 5 <= pongs <= 7
        assert errors == ["rate_limited"]  # one error for the run of refusals, not ten
        with contextlib.suppress(ConnectionError):
            for _ in range(ws_view.FLOOD_LIMIT + 20):
                await ws.send_json({"type": "ping"})
        assert await closed(ws) == (1008, "message flood")


async def test_ws_compression_is_never_negotiated(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH, compress=15) as ws:
        await receive(ws, "hello")
        assert ws.compress == 0
    resp = await client.get(
        "/ws", headers={**AUTH, **UPGRADE, "Sec-WebSocket-Extensions": "permessage-deflate"}
    )
    assert resp.status == 101
    assert "Sec-WebSocket-Extensions" not in resp.headers
    resp.close()


# --- security headers ---------------------------------------------------------------------


def assert_secure_headers(resp: aiohttp.ClientResponse) -> None:
    where = f"{resp.method} {resp.url.path} ({resp.status})"
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in resp.headers["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert csp["script-src"] == ["'self'"], where
    assert csp["frame-ancestors"] == ["'none'"], where
    assert csp["default-src"] == ["'self'"], where
    assert "'unsafe-inline'" not in csp.get("style-src", []), where
    assert resp.headers["X-Content-Type-Options"] == "nosniff", where
    assert resp.headers["Referrer-Policy"] == "same-origin", where
    assert resp.headers["X-Frame-Options"] == "DENY", where


async def test_security_headers_on_every_kind_of_answer(client: TestClient, login: Login) -> None:
    answers = [
        await client.get("/login"),
        await client.get("/", allow_redirects=False),
        await client.get("/api/v1/alerts", headers=AUTH),
        await client.get("/api/v1/alerts"),
        await client.get("/api/v1/nothing-here"),
        await client.get("/static/js/app.js"),
        await client.get("/static/css/app.css"),
        await client.get("/healthz"),
        await client.get("/ws", headers={**UPGRADE, "Origin": "https://evil.example"}),
    ]
    await login("alice")
    answers.append(await client.get("/"))
    assert [r.status for r in answers] == [200, 303, 200, 401, 404, 200, 200, 200, 403, 200]
    for resp in answers:
        assert_secure_headers(resp)
