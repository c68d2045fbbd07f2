"""Admin endpoints: users and the running settings. Only an admin's session reaches them.

No API key can: key scopes (`ingest`, `read`, `labels`) never include `admin`, so changing
who may do what always takes a person logged in, with the session's CSRF token.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import cast, get_args

from aiohttp import web

from server import messages
from server.auth import Principal, create_user
from server.state import HUB, SETTINGS, STORE
from server.store.base import Role
from server.views.api import permitted
from server.views.bodies import json_object
from server.views.responses import json_error, json_response

log = logging.getLogger(__name__)
ROLES = get_args(Role)
# Settings never shown, even to an admin: they are credentials.
SECRET_SETTINGS = frozenset({"api_key"})


async def _admin(request: web.Request, changes: bool) -> Principal | web.Response:
    return await permitted(
        request, "admin", "Only admins manage users and settings", changes=changes
    )


async def list_users(request: web.Request) -> web.Response:
    who = await _admin(request, changes=False)
    if isinstance(who, web.Response):
        return who
    return json_response({"users": await request.app[STORE].list_users()})


async def put_user(request: web.Request) -> web.Response:
    """Create a user, change their role, or set their password (`{"role", "password"?}`)."""
    who = await _admin(request, changes=True)
    if isinstance(who, web.Response):
        return who
    name = request.match_info["name"]
    body = await json_object(request, ("role", "password"))
    if isinstance(body, web.Response):
        return body
    role, password = body.get("role"), body.get("password")
    if role not in ROLES:
        return json_error(400, "invalid_field", f"'role' must be one of {', '.join(ROLES)}", "role")
    if password is not None and not isinstance(password, str):
        return json_error(400, "invalid_field", "'password' must be a string", "password")
    if name == who.name and role != "admin":
        return json_error(409, "own_role", "An admin cannot take away their own admin role")
    store = request.app[STORE]
    existing = await store.get_user(name)
    try:
        if password is not None:
            await create_user(store, name, password, cast(Role, role))
        elif existing is None:
            return json_error(400, "missing_field", "A new user needs a 'password'", "password")
        else:
            await store.add_user(name, existing.password_hash, cast(Role, role))
    except ValueError as exc:
        field = "password" if "password" in str(exc) else "name"
        return json_error(400, "invalid_field", str(exc), field)
    if existing is not None and existing.role != role:
        # A socket keeps the role it connected with: make it reconnect under the new one.
        request.app[HUB].close_user(name, messages.CLOSE_UNAUTHORIZED, b"role changed")
    log.info("%s %s user %s (%s)", who.name, "updated" if existing else "created", name, role)
    users = {user.name: user for user in await store.list_users()}
    return json_response({"user": users.get(name)}, status=200 if existing else 201)


async def delete_user(request: web.Request) -> web.Response:
    who = await _admin(request, changes=True)
    if isinstance(who, web.Response):
        return who
    name = request.match_info["name"]
    if name == who.name:
        return json_error(409, "own_account", "An admin cannot delete their own account")
    if not await request.app[STORE].delete_user(name):
        return json_error(404, "not_found", f"No user {name}")
    request.app[HUB].close_user(name, messages.CLOSE_UNAUTHORIZED, b"user removed")
    log.info("%s deleted user %s", who.name, name)
    return json_response({"deleted": name})


async def settings(request: web.Request) -> web.Response:
    """The settings this process runs with (credentials left out)."""
    who = await _admin(request, changes=False)
    if isinstance(who, web.Response):
        return who
    values = dataclasses.asdict(request.app[SETTINGS])
    shown = {
        name: str(value) if isinstance(value, Path) else value
        for name, value in values.items()
        if name not in SECRET_SETTINGS
    }
    return json_response({"settings": shown, "hidden": sorted(SECRET_SETTINGS)})
