"""Shared pieces of the dashboard's browser tests: the real app, Chromium, signed-in analysts.

Its fixtures (`server`, `http`, `ingest`, `browser`) are registered for every test module by
tests/conftest.py, which imports them; modules import the helpers they use from here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

from server.app import create_app
from server.auth import create_user
from server.config import Settings
from server.state import STORE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API_KEY = "test-key"
PASSWORD = "correct horse battery"
VIEWPORT = {"width": 1440, "height": 900}
T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
XSS = '<img src=x onerror="window.__xss=1">'
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# Set to refresh docs/screenshots/; otherwise the shots go to the test's tmp_path.
UPDATE_SCREENSHOTS = os.environ.get("FRAUDWATCH_UPDATE_SCREENSHOTS") == "1"

NEW_YORK = {"lat": 40.7128, "lon": -74.0060, "country": "US"}
LONDON = {"lat": 51.5072, "lon": -0.1276, "country": "GB"}
PARIS = {"lat": 48.8566, "lon": 2.3522, "country": "FR"}

# Columns of the alert table, as `td` indices.
ACCOUNT, MERCHANT, REASONS, STATUS, OWNER = 1, 2, 6, 7, 8


def tx(
    id: str,
    account: str,
    at: dt.datetime,
    amount: float | str = 25.0,
    merchant: str = "m-1",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "timestamp": at.isoformat(),
        "account_id": account,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "USD",
        **extra,
    }


def impossible_travel(
    account: str,
    merchant_name: str,
    at: dt.datetime = T0,
    amount: float | str = 1299.0,
    **extra: Any,
) -> list[dict[str, Any]]:
    """New York, then London ten minutes later: the second one raises a high alert."""
    return [
        tx(f"{account}-1", account, at, 42.5, "m-deli", merchant_name="Corner Deli", **NEW_YORK),
        tx(
            f"{account}-2",
            account,
            at + dt.timedelta(minutes=10),
            amount,
            "m-elec",
            merchant_name=merchant_name,
            **LONDON,
            **extra,
        ),
    ]


def travel_at_night(
    account: str, at: dt.datetime = T0, amount: float | str = 2450.0
) -> list[dict[str, Any]]:
    """Paris, then New York 25 minutes later, past midnight and large: a critical alert."""
    night = dt.datetime(at.year, at.month, at.day, 2, 10, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    return [
        tx(f"{account}-n1", account, night, 12.0, "m-cafe", merchant_name="Café de Flore", **PARIS),
        tx(
            f"{account}-n2",
            account,
            night + dt.timedelta(minutes=25),
            amount,
            "m-lux",
            merchant_name="Saks Fifth Avenue",
            **NEW_YORK,
        ),
    ]


def card_testing(
    account: str, n: int = 3, at: dt.datetime = T0, prefix: str | None = None, **extra: Any
) -> list[dict[str, Any]]:
    """Tiny amounts 45 s apart: every one from the third on raises a medium alert (1.00 at
    stake)."""
    return [
        tx(
            f"{prefix or account}-ct{i}",
            account,
            at + dt.timedelta(seconds=45 * i),
            "1.00",
            f"m-don-{i % 4}",
            merchant_name="Charity Donate",
            **extra,
        )
        for i in range(n)
    ]


Ingest = Callable[[list[dict[str, Any]]], Awaitable[list[str]]]


@pytest.fixture
async def server(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    settings = Settings(data_dir=tmp_path, api_key=API_KEY, batch_wait_ms=2.0)
    srv: TestServer = await aiohttp_server(create_app(settings))
    for name in ("alice", "bob"):
        await create_user(srv.app[STORE], name, PASSWORD, "analyst")
    return srv


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A machine client holding the API key."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        yield session


@pytest.fixture
async def ingest(server: TestServer, http: aiohttp.ClientSession) -> Ingest:
    """Post transactions through the ingest API; returns the ids of the alerts raised."""

    async def _ingest(transactions: list[dict[str, Any]]) -> list[str]:
        return await post_ndjson(server, http, transactions)

    return _ingest


async def post_ndjson(
    server: TestServer, http: aiohttp.ClientSession, transactions: list[dict[str, Any]]
) -> list[str]:
    body = "\n".join(json.dumps(t) for t in transactions) + "\n"
    async with http.post(
        server.make_url("/api/v1/transactions"),
        data=body,
        headers={"Content-Type": "application/x-ndjson"},
    ) as r:
        assert r.status == 200, await r.text()
        results = (await r.json())["results"]
    assert all("error" not in result for result in results), results
    return [result["alert_id"] for result in results if result["alert_id"]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        # make test installs it; a browser test that skipped would prove nothing.
        pytest.fail("Debian chromium is not installed (run `make chromium`)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def analyst_http(server: TestServer, name: str) -> tuple[aiohttp.ClientSession, str]:
    """A second analyst working from a script: a session cookie and its CSRF token."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        server.make_url("/login"), data={"username": name, "password": PASSWORD}
    ) as r:
        page = await r.text()
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, page[:500]
    return session, match.group(1)


async def bob_resolves(server: TestServer, *alert_ids: str) -> None:
    """Bob resolves these alerts as legitimate, from his own session."""
    bob, csrf = await analyst_http(server, "bob")
    async with bob:
        for alert_id in alert_ids:
            async with bob.post(
                server.make_url(f"/api/v1/alerts/{alert_id}/resolve"),
                json={"disposition": "legitimate"},
                headers={"X-CSRF-Token": csrf},
            ) as r:
                assert r.status == 200, await r.text()


class Analyst:
    """One signed-in browser context, and every script error or CSP refusal it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # Expected HTTP errors (a 409 in a test) are logged as failed resource loads.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {message.text}")

    def row(self, alert_id: str) -> Any:
        return self.page.locator(f'#alert-rows tr[data-id="{alert_id}"]')

    def cell(self, alert_id: str, column: int) -> Any:
        return self.row(alert_id).locator("td").nth(column)

    @property
    def rows(self) -> Any:
        return self.page.locator("#alert-rows tr")

    @property
    def drawer(self) -> Any:
        return self.page.locator("#drawer")

    async def press(self, *keys: str) -> None:
        for key in keys:
            await self.page.keyboard.press(key)

    async def focused_row_id(self) -> str | None:
        result: str | None = await self.page.evaluate(
            "() => document.activeElement?.closest('tr[data-id]')?.dataset.id ?? null"
        )
        return result


async def sign_in(
    browser: Browser,
    server: TestServer,
    name: str,
    before_load: Callable[[Page], Awaitable[None]] | None = None,
    path: str = "/",
    **context_options: Any,
) -> Analyst:
    context = await browser.new_context(
        base_url=str(server.make_url("/")), viewport=VIEWPORT, **context_options
    )
    page = await context.new_page()
    analyst = Analyst(page)
    if before_load is not None:
        await before_load(page)
    await page.goto("/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(str(server.make_url("/")))
    if path != "/":
        await page.goto(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return analyst


async def listed_alerts(analyst: Analyst, ingest: Ingest, count: int) -> list[str]:
    """`count` impossible-travel alerts at "Shop" on accounts acct-0, acct-1, … an hour
    apart, from T0: their ids, once each row is on `analyst`'s page."""
    ids = [
        (await ingest(impossible_travel(f"acct-{k}", "Shop", T0 + dt.timedelta(hours=k))))[0]
        for k in range(count)
    ]
    for alert_id in ids:
        await expect(analyst.row(alert_id)).to_be_visible()
    return ids


async def listed(analyst: Analyst) -> list[str]:
    """The ids of the rows drawn, in the table's order, read in one go (a row re-rendered
    meanwhile cannot stall it)."""
    ids: list[str] = await analyst.rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    return ids


async def row_top(analyst: Analyst, alert_id: str) -> float:
    """Where the row is on screen: its top, in the page's pixels."""
    box = await analyst.row(alert_id).bounding_box()
    assert box is not None
    return float(box["y"])


async def resolve_in_the_drawer(analyst: Analyst, account: str) -> None:
    """Enter, l, Enter on the focused row: the drawer open on it, the alert resolved as
    legitimate, the keyboard back in the drawer."""
    await analyst.press("Enter")
    await expect(analyst.drawer.locator("h2")).to_have_text(f"Account {account}")
    await analyst.press("l")
    dialog = analyst.page.get_by_role("dialog", name=re.compile("^Resolve"))
    await expect(dialog).to_be_visible()
    await analyst.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(analyst.drawer.get_by_text("Resolved", exact=True).first).to_be_visible()
    await expect(analyst.drawer).to_be_focused()


async def focused(page: Page) -> str:
    """The focused element, as `tag#id`, or its text where it has no id."""
    described: str = await page.evaluate(
        """() => {
            const el = document.activeElement;
            if (!el || el === document.body) return "body";
            const name = el.id ? `#${el.id}` : ` "${(el.textContent || "").trim().slice(0, 30)}"`;
            return el.tagName.toLowerCase() + name;
        }"""
    )
    return described


async def stops_inside(page: Page, dialog: Locator, key: str, presses: int) -> list[str]:
    """Press `key` `presses` times in the open `dialog`: where focus was after each, every
    one of them asserted to be in the dialog."""
    seen = []
    for _ in range(presses):
        await page.keyboard.press(key)
        where = await focused(page)
        assert await dialog.evaluate("(d) => d.contains(document.activeElement)"), (
            f"{key} left the dialog for {where}, after {' → '.join(seen)}"
        )
        seen.append(where)
    return seen


T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], expected: T, within: float = 5.0) -> None:
    """Wait until `probe()` returns `expected` (Playwright's expect.poll, which Python lacks)."""
    value = await probe()
    try:
        async with asyncio.timeout(within):
            while value != expected:
                await asyncio.sleep(0.05)
                value = await probe()
    except TimeoutError:
        raise AssertionError(f"still {value!r}, expected {expected!r}") from None


async def next_frames(page: Page) -> None:
    """Two animation frames: what a resize (or an update) scheduled for the next frame is drawn.

    A frame requested during this one runs in the next, before the second of ours.
    """
    await page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )


async def animations_done(page: Page) -> None:
    """Every finite CSS animation and transition on the page (the rows' arrival highlight, a
    panel sliding in) has finished, and the frame after it is drawn."""
    await page.evaluate(
        """() => Promise.all(
            document.getAnimations()
                .filter((a) => a.effect?.getComputedTiming().endTime !== Infinity)
                .map((a) => a.finished.catch(() => null)),
        )"""
    )
    await next_frames(page)


async def screenshot(page: Page, name: str, tmp_path: Path) -> bytes:
    """The picture in docs/screenshots/ on request, in tmp_path otherwise."""
    target = SCREENSHOTS / name if UPDATE_SCREENSHOTS else tmp_path / name
    png: bytes = await page.screenshot(path=str(target))
    assert len(png) > 10_000
    return png


async def an_alert(server: TestServer, http: aiohttp.ClientSession) -> dict[str, Any]:
    """One real alert as the API lists it (impossible travel): a template for tests that
    feed the page copies of it."""
    await post_ndjson(server, http, impossible_travel("acct-template", "Template Ltd"))
    async with http.get(server.make_url("/api/v1/alerts"), params={"limit": "1"}) as r:
        assert r.status == 200, await r.text()
        alert: dict[str, Any] = (await r.json())["alerts"][0]
    return alert


async def lower_store_cap(page: Page, cap: int) -> None:
    """Serve `page` an app.js whose alert store keeps `cap` alerts, not 20,000: tests of
    what happens past the cap reach it in seconds."""

    async def rewrite(route: Route) -> None:
        response = await route.fetch()
        body = await response.text()
        assert "const STORE_CAPACITY = 20_000;" in body
        body = body.replace("const STORE_CAPACITY = 20_000;", f"const STORE_CAPACITY = {cap};")
        await route.fulfill(response=response, body=body)

    await page.route("**/static/js/app.js", rewrite)
