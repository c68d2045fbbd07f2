"""Admin endpoints: users and settings, for an admin's session only."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY, AUTH, Login
from tests.test_auth import closed
from tests.test_ws import receive


async def test_only_an_admin_session_reaches_the_admin_endpoints(
    client: TestClient, aiohttp_client: Any, login: Login
) -> None:
    for path in ("/api/v1/users", "/api/v1/settings"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers=AUTH)).status == 403  # no key is ever admin
    analyst = await aiohttp_client(client.server)
    await login("alice", "analyst", session=analyst)
    assert (await analyst.get("/api/v1/users")).status == 403
    csrf = await login("root", "admin")
    listed = await (await client.get("/api/v1/users")).json()
    assert [(u["name"], u["role"]) for u in listed["users"]] == [
        ("alice", "analyst"),
        ("root", "admin"),
    ]
    assert all("password_hash" not in u for u in listed["users"])
    # Changes need the session's CSRF token.
    refused = await client.put("/api/v1/users/bob", json={"role": "viewer", "password": "x" * 12})
    assert (await refused.json())["error"]["code"] == "csrf"
    made = await client.put(
        "/api/v1/users/bob",
        json={"role": "viewer", "password": "long enough pw"},
        headers={"X-CSRF-Token": csrf},
    )
    assert made.status == 201
    assert (await made.json())["user"]["role"] == "viewer"


async def test_users_are_created_changed_and_removed_with_clear_errors(
    client: TestClient, aiohttp_client: Any, login: Login
) -> None:
    csrf = {"X-CSRF-Token": await login("root", "admin")}

    async def put(name: str, body: Any) -> tuple[int, Any]:
        resp = await client.put(f"/api/v1/users/{name}", json=body, headers=csrf)
        return resp.status, await resp.json()

    status, body = await put("bob", {"role": "superuser", "password": "long enough pw"})
    assert (status, body["error"]["field"]) == (400, "role")
    status, body = await put("bob", {"role": "analyst"})
    assert (status, body["error"]["field"]) == (400, "password")  # a new user needs one
    status, body = await put("bob", {"role": "analyst", "password": "short"})
    assert (status, body["error"]["field"]) == (400, "password")
    status, body = await put("bad name!", {"role": "analyst", "password": "long enough pw"})
    assert (status, body["error"]["field"]) == (400, "name")
    status, body = await put("root", {"role": "viewer"})
    assert (status, body["error"]["code"]) == (409, "own_role")
    assert (await put("bob", {"role": "analyst", "password": "long enough pw"}))[0] == 201
    # A misspelt password is refused, not dropped: the role changed and the old password
    # kept, answered 200, while the admin believed it reset.
    status, body = await put("bob", {"role": "analyst", "pasword": "a new long one"})
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "unknown_field",
        "pasword",
    )

    # bob logs in and opens the live feed; a role change makes his socket reconnect.
    bob = await aiohttp_client(client.server)
    login_form = {"username": "bob", "password": "long enough pw"}
    assert (await bob.post("/login", data=login_form)).status == 200
    async with bob.ws_connect("/ws") as ws:
        await receive(ws, "hello")
        status, body = await put("bob", {"role": "viewer"})  # the password is kept
        assert (status, body["user"]["role"]) == (200, "viewer")
        assert await closed(ws) == (4401, "role changed")
    ack = await bob.post("/api/v1/alerts/x/ack", headers={"X-CSRF-Token": "whatever"})
    assert ack.status == 403  # a viewer now, at once
    async with bob.ws_connect("/ws") as ws:
        await receive(ws, "hello")
        resp = await client.delete("/api/v1/users/bob", headers=csrf)
        assert (resp.status, await resp.json()) == (200, {"deleted": "bob"})
        assert await closed(ws) == (4401, "user removed")
    assert (await bob.get("/api/v1/alerts")).status == 401  # the session is gone too
    assert (await client.delete("/api/v1/users/bob", headers=csrf)).status == 404
    assert (await client.delete("/api/v1/users/root", headers=csrf)).status == 409


async def test_settings_are_shown_to_an_admin_without_credentials(
    client: TestClient, login: Login
) -> None:
    await login("root", "admin")
    body = await (await client.get("/api/v1/settings")).json()
    assert body["hidden"] == ["api_key"]
    assert "api_key" not in body["settings"]
    assert body["settings"]["review_threshold"] == 0.5
    assert API_KEY not in str(body)
