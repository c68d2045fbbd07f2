"""The admin page in a real Chromium: users added, re-roled and removed; settings shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from server.app import create_app
from server.auth import create_user
from server.config import Settings
from server.detection.rules import load_rules
from server.state import DETECTOR, STORE
from tests.browser_support import PASSWORD, VIEWPORT, screenshot, stops_inside
from tests.conftest import API_KEY

pytestmark = pytest.mark.browser


async def test_an_admin_manages_users_and_sees_settings(
    browser: Browser, server: TestServer, tmp_path: Path
) -> None:
    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto("/login")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name="Admin").click()
    await expect(page).to_have_url(str(server.make_url("/admin")))

    users = page.locator("#user-rows tr")
    await expect(users).to_have_count(3)  # alice, bob (analysts) and root
    await expect(page.locator('#user-rows tr[data-user="root"] td').first).to_have_text(
        "root (you)"
    )
    await expect(page.get_by_label("Role of root")).to_be_disabled()  # no self-demotion

    # A new viewer, with a name that would be markup if it were ever used as HTML.
    form = page.locator("#add-user")
    await form.get_by_label("Name").fill("carol")
    await form.get_by_label("Role").select_option("viewer")
    await form.get_by_label("Password").fill("short")
    await form.get_by_role("button", name="Save user").click()
    await expect(page.locator("#admin-status")).to_contain_text("at least 8 characters")
    await form.get_by_label("Password").fill("long enough password")
    await form.get_by_role("button", name="Save user").click()
    await expect(page.locator("#admin-status")).to_have_text("Saved carol (viewer).")
    await expect(users).to_have_count(4)
    assert (await server.app[STORE].get_user("carol")).role == "viewer"  # type: ignore[union-attr]

    await page.get_by_label("Role of bob").select_option("admin")
    await expect(page.locator("#admin-status")).to_have_text("bob is now an admin.")
    assert (await server.app[STORE].get_user("bob")).role == "admin"  # type: ignore[union-attr]

    # Removing asks first, in the page (it was the browser's own window.confirm), as the
    # dashboard's resolve dialog does: the keyboard on Cancel and kept in the dialog, Esc
    # and Cancel leave the user be, with the keyboard back on the button that asked.
    remove = page.get_by_role("button", name="Remove alice")
    await remove.click()
    dialog = page.get_by_role("dialog", name="Remove alice?")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Their sessions end at once")
    cancel = dialog.get_by_role("button", name="Cancel")
    await expect(cancel).to_be_focused()
    await stops_inside(page, dialog, "Tab", 3)
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(remove).to_be_focused()
    await remove.press("Enter")
    await expect(cancel).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(remove).to_be_focused()
    assert await server.app[STORE].get_user("alice") is not None
    await expect(users).to_have_count(4)

    await remove.click()
    await dialog.get_by_role("button", name="Remove", exact=True).click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#admin-status")).to_have_text("alice was removed.")
    await expect(users).to_have_count(3)
    assert await server.app[STORE].get_user("alice") is None
    # The button went with the row: the keyboard is on the next one's, not lost to the page.
    await expect(page.get_by_role("button", name="Remove bob")).to_be_focused()

    settings = page.locator("#setting-rows")
    await expect(page.get_by_role("row", name="review_threshold")).to_contain_text("0.5")
    await expect(page.get_by_role("row", name="api_key", exact=True)).to_have_count(0)
    await expect(page.get_by_role("row", name="api_key (hidden)")).to_have_count(1)
    assert "test-key" not in await settings.inner_text()
    await screenshot(page, "admin.png", tmp_path)
    assert problems == []
    await context.close()


async def test_the_admin_page_is_for_admins_only(browser: Browser, server: TestServer) -> None:
    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    page = await context.new_page()
    response = await page.goto("/admin")
    await expect(page).to_have_url(str(server.make_url("/login")))  # signed out: log in first
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)  # analysts see no link
    response = await page.goto("/admin")
    assert response is not None and response.status == 403
    # A page in the console's look with the way back, not a line of plain text.
    await expect(page.get_by_text("Only admins can open the admin page")).to_be_visible()
    await expect(page.get_by_text("Signed in as alice (analyst).")).to_be_visible()
    await page.get_by_role("link", name="Back to the alerts").click()
    await expect(page).to_have_url(str(server.make_url("/")))
    icon = await page.request.get("/favicon.ico", max_redirects=0)
    assert (icon.status, icon.headers["location"]) == (301, "/static/favicon.svg")
    await context.close()


RULE = (
    '[[rules]]\nname = "big"\nscore = 0.6\nseverity = "high"\n'
    'all = [{{ feature = "amount", op = ">=", value = {threshold} }}]\nreason = "big"\n'
)


async def test_an_admin_reloads_the_rules_and_sees_the_problems(
    browser: Browser, aiohttp_server: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "fraud.toml"
    rules.write_text(RULE.format(threshold=100))
    first = load_rules(rules).version
    settings = Settings(data_dir=tmp_path / "data", api_key=API_KEY, rules_path=rules)
    server: TestServer = await aiohttp_server(create_app(settings))
    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto("/login")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.goto("/admin")
    version = page.locator("#rules-version")
    status = page.locator("#admin-status")
    listed = page.get_by_role("list", name="Problems in the rule files")
    await expect(version).to_have_text(first)

    rules.write_text(RULE.format(threshold=500))
    second = load_rules(rules).version
    await page.get_by_role("button", name="Reload rules").click()
    await expect(status).to_have_text(f"Rules reloaded: {first} → {second} (1 rule).")
    await expect(version).to_have_text(second)
    assert server.app[DETECTOR].rules_version == second

    rules.write_text(RULE.format(threshold=500).replace('"high"', '"hgh"') + "oops = 1\n")
    await page.get_by_role("button", name="Reload rules").click()
    await expect(status).to_have_text(
        f"2 problem(s) in rules file {rules} (rules_path from the settings); the rules in "
        f"use ({second}) are unchanged"
    )
    await expect(status).to_have_attribute("data-kind", "error")
    await expect(listed.get_by_role("listitem")).to_have_text(
        [
            f"{rules}: rule 'big': unknown key 'oops' (all, any, description, name, observed, "
            "reason, score, severity, threshold, unit)",
            f"{rules}: rule 'big': severity must be one of low, medium, high, critical, got 'hgh'",
        ]
    )
    await expect(version).to_have_text(second)
    assert server.app[DETECTOR].rules_version == second

    # Fixed: the problems go, and the same version (the bytes are the first file's) says so.
    rules.write_text(RULE.format(threshold=100))
    await page.get_by_role("button", name="Reload rules").click()
    await expect(status).to_have_text(f"Rules reloaded: {second} → {first} (1 rule).")
    await expect(listed).to_be_hidden()
    assert problems == []
    await context.close()
