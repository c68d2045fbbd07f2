"""The server-rendered pages: login, logout, and the dashboard shell."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server import __version__
from server.auth import authenticate, csrf_ok, log_in, log_out, principal
from server.state import SETTINGS, STORE


async def _who(request: web.Request) -> Any:
    settings = request.app[SETTINGS]
    who = await principal(request, settings.api_key, settings.session_max_age)
    return who if who is not None and not who.is_machine else None


async def index(request: web.Request) -> web.Response:
    who = await _who(request)
    if who is None:
        raise web.HTTPSeeOther("/login")
    settings = request.app[SETTINGS]
    return aiohttp_jinja2.render_template(
        "dashboard.html",
        request,
        {
            "user": {"name": who.name, "role": who.role},
            "csrf_token": who.csrf,
            "simulated": settings.simulator,
            "version": __version__,
        },
    )


async def login_form(request: web.Request) -> web.Response:
    if await _who(request) is not None:
        raise web.HTTPSeeOther("/")
    return aiohttp_jinja2.render_template("login.html", request, {"error": None, "username": None})


async def login(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="Cross-site login refused")
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    role = await authenticate(request.app[STORE], username, password) if username else None
    if role is None:
        return aiohttp_jinja2.render_template(
            "login.html",
            request,
            {"error": "Wrong user name or password.", "username": username},
            status=401,
        )
    await log_in(request, username, role)
    raise web.HTTPSeeOther("/")


async def logout(request: web.Request) -> web.Response:
    who = await _who(request)
    if who is not None:
        form = await request.post()
        if not csrf_ok(request, who, str(form.get("csrf_token", ""))):
            raise web.HTTPForbidden(text="Missing or wrong CSRF token")
        await log_out(request)
    raise web.HTTPSeeOther("/login")
