"""Accessibility in a real Chromium: skip links."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from server.auth import create_user
from server.state import STORE
from tests.browser_support import PASSWORD, VIEWPORT, Ingest, listed_alerts, sign_in

pytestmark = pytest.mark.browser


async def signed_in_page(
    browser: Browser, server: TestServer, name: str, path: str, **context_options: object
) -> Page:
    """`name` signed in, on `path`: a page of the console other than the dashboard."""
    context = await browser.new_context(
        base_url=str(server.make_url("/")),
        viewport=context_options.pop("viewport", VIEWPORT),
        **context_options,
    )
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(str(server.make_url("/")))
    await page.goto(path)
    return page


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


async def check_skip_link(page: Page, words: str, target: str, back: bool = False) -> None:
    """The page's first Tab stop (its last, from the page's autofocused field, if `back`)
    is a link named `words`, off screen until focused; Enter moves focus to `target`, and
    the next Tab to a control inside it."""
    link = page.get_by_role("link", name=words)
    await expect(link).to_have_count(1)
    await expect(link).not_to_be_in_viewport()
    await page.keyboard.press("Shift+Tab" if back else "Tab")
    await expect(link).to_be_focused()
    await expect(link).to_be_in_viewport(ratio=1)
    await page.keyboard.press("Enter")
    await expect(page.locator(target)).to_be_focused()
    await expect(link).not_to_be_in_viewport()
    await page.keyboard.press("Tab")
    inside = await page.evaluate(
        "(target) => document.querySelector(target).contains(document.activeElement)", target
    )
    assert inside, f"Tab after the skip link went to {await focused(page)}, outside {target}"


async def test_the_dashboards_skip_link_moves_focus_to_the_alerts(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    await listed_alerts(alice, ingest, 2)
    await check_skip_link(alice.page, "Skip to alerts", "#alerts-panel")
    assert alice.problems == []


async def test_every_other_page_has_a_skip_link_to_its_main_content(
    browser: Browser, server: TestServer
) -> None:
    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    admin = await signed_in_page(browser, server, "root", "/admin")
    await expect(admin.locator("#user-rows tr")).to_have_count(3)
    await check_skip_link(admin, "Skip to main content", "main")

    forbidden = await signed_in_page(browser, server, "alice", "/admin")
    await expect(forbidden.get_by_text("Only admins can open the admin page")).to_be_visible()
    await check_skip_link(forbidden, "Skip to main content", "main")

    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    login = await context.new_page()
    await login.goto("/login")
    await expect(login.get_by_label("Username")).to_be_focused()  # autofocus: the link is behind
    await check_skip_link(login, "Skip to main content", "main", back=True)
