"""The server-rendered pages: login (throttled), logout, the dashboard shell, admin."""

from __future__ import annotations

import math

import aiohttp_jinja2
from aiohttp import web

from server import __version__
from server.auth import Principal, authenticate, csrf_ok
from server.state import AUTH, SETTINGS, STORE


async def _who(request: web.Request) -> Principal | None:
    who = await request.app[AUTH].principal(request)
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


async def admin(request: web.Request) -> web.Response:
    """Users and settings, for admins; the page calls the admin API with its CSRF token."""
    who = await _who(request)
    if who is None:
        raise web.HTTPSeeOther("/login")
    if not who.can("admin"):
        # A page, not a line of plain text: an analyst who follows a link here gets the
        # way back, in the console's own look (a bare text answer also sent the browser
        # after /favicon.ico).
        return aiohttp_jinja2.render_template(
            "forbidden.html",
            request,
            {
                "user": {"name": who.name, "role": who.role},
                "message": "Only admins can open the admin page: it manages users, keys "
                "and the rules.",
            },
            status=403,
        )
    return aiohttp_jinja2.render_template(
        "admin.html",
        request,
        {"user": {"name": who.name, "role": who.role}, "csrf_token": who.csrf},
    )


async def favicon(request: web.Request) -> web.Response:
    """/favicon.ico, which a browser asks for where a page names no icon (a JSON or text
    answer opened in a tab): the console's icon, not a 404 in its console."""
    raise web.HTTPMovedPermanently("/static/favicon.svg")


async def login_form(request: web.Request) -> web.Response:
    if await _who(request) is not None:
        raise web.HTTPSeeOther("/")
    return aiohttp_jinja2.render_template("login.html", request, {"error": None, "username": None})


def _browser_navigation(request: web.Request) -> bool:
    """The sign-in form posted by a browser (it shows the answer as the page), not a script.

    `Sec-Fetch-Mode: navigate` says so; a browser sends no Sec-Fetch headers to a plain-HTTP
    origin other than localhost, where its `Accept` naming HTML does."""
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def _login_page(request: web.Request, error: str, username: str, status: int) -> web.Response:
    """The form again with `error`. A browser's form post gets it as a 200: a wrong password
    is an expected outcome, and a 401 or 429 document is logged as a console error in the
    analyst's browser ("Failed to load resource"). A script keeps the status that says what
    happened; both answers vary on the headers that tell them apart."""
    shown = 200 if _browser_navigation(request) else status
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"error": error, "username": username}, status=shown
    )
    response.headers["Vary"] = "Sec-Fetch-Mode, Accept"
    return response


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    # Login CSRF: a foreign page must not sign the analyst in as someone else.
    if not auth.origin_allowed(request):
        raise web.HTTPForbidden(text="Cross-site login refused")
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    address = request.remote or "unknown"
    # Checked before the password is: a locked-out guess learns nothing.
    wait = auth.throttle.retry_after(username, address)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        response = _login_page(
            request,
            f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes > 1)}.",
            username,
            429,
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    role = await authenticate(request.app[STORE], username, password) if username else None
    if role is None:
        auth.throttle.failed(username, address)
        return _login_page(request, "Wrong user name or password.", username, 401)
    auth.throttle.succeeded(username)
    await auth.log_in(request, username)
    raise web.HTTPSeeOther("/")


async def logout(request: web.Request) -> web.Response:
    who = await _who(request)
    if who is not None:
        form = await request.post()
        if not csrf_ok(request, who, str(form.get("csrf_token", ""))):
            raise web.HTTPForbidden(text="Missing or wrong CSRF token")
        await request.app[AUTH].log_out(request, who)
    raise web.HTTPSeeOther("/login")
