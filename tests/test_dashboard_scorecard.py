"""The detection scorecard on the dashboard, in a real Chromium: hidden until the truth is
known, then precision, recall and alerts per scenario from the server's `stats`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.browser_support import T0, Ingest, card_testing, screenshot, sign_in, tx

pytestmark = pytest.mark.browser


async def test_the_scorecard_appears_once_labels_are_known(
    browser: Browser,
    server: TestServer,
    ingest: Ingest,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    alice = await sign_in(browser, server, "alice")
    panel = alice.page.locator("#scorecard")
    # A card test (4 tiny charges: two raise alerts) and two ordinary purchases elsewhere.
    alerts = await ingest(card_testing("acct-ct", n=4))
    ordinary = [
        tx(f"ok-{i}", "acct-ok", T0 + dt.timedelta(hours=i), 30.0 + i, "m-grocer") for i in range(2)
    ]
    await ingest(ordinary)
    assert len(alerts) >= 1
    await expect(alice.rows).to_have_count(len(alerts))
    await expect(panel).to_be_hidden()  # verdicts alone: no truth known yet, nothing claimed

    # The truth arrives (a chargeback feed): every card-testing charge was fraud.
    labels = [{"transaction_id": f"acct-ct-ct{i}", "label": "fraud"} for i in range(4)]
    labels += [{"transaction_id": t["id"], "label": "legitimate"} for t in ordinary]
    async with http.post(server.make_url("/api/v1/labels"), json=labels) as r:
        assert r.status == 200, await r.text()

    await expect(panel).to_be_visible(timeout=10_000)
    precision_recall = f"Detection: precision 100 % · recall {round(len(alerts) / 4 * 100)} %"
    await expect(alice.page.locator("#scorecard-summary")).to_have_text(precision_recall)
    await panel.locator("summary").click()
    rows = alice.page.locator("#scorecard-rows tr")
    await expect(rows).to_have_count(2)  # frauds without a scenario, and normal traffic
    fraud_row = alice.page.locator('#scorecard-rows tr[data-kind="fraud"] td')
    await expect(fraud_row.nth(2)).to_have_text("4")  # frauds
    await expect(fraud_row.nth(3)).to_have_text(str(len(alerts)))  # alerts
    await expect(alice.page.locator("#scorecard-note")).to_contain_text("6 labelled")
    await screenshot(alice.page, "scorecard.png", tmp_path)
    assert alice.problems == []
