"""Soak test of the dashboard as analysts use it: does a page left open for hours grow?

Run by hand (it takes `--minutes` plus about half a minute; nothing runs it automatically):

    .venv/bin/python benchmarks/dashboard_soak.py                      # 10 min, the defaults
    .venv/bin/python benchmarks/dashboard_soak.py --minutes 2 --inject 20   # a quick look

It starts `python -m server demo` from this checkout on a fresh data dir under a temporary
directory (127.0.0.1 only), reads the demo's login and API key from its output, and opens
two signed-in pages in headless Chromium (Debian's `/usr/bin/chromium`), each in its own
browser context:

- **idle**: left on the live table, the pointer and the keyboard elsewhere. New alerts join
  the table as they arrive.
- **held**: the keyboard in the table (`j`), so the table holds still and new alerts wait
  (`Paused · N new`). Every `--act-every` seconds it works an alert as an analyst does:
  `j` to the next row, `Enter` for the drawer, `a` to acknowledge, and every other time `f`
  `Enter` to resolve it as fraud; then `Esc` closes the drawer. The table stays held all
  along (docs/dashboard.md, *Holding still*); each sample records whether it was.

The demo's simulator (`--rate` tx/s) raises only an alert or two a second, so the script
also posts card-testing transactions through the ingest API, about `--inject` alerts a
second (ten alerts per account of twelve $1.00 charges 45 s apart), so that the pages go
past their 20,000-alert memory cap within the run.

Every `--every` seconds it records, per page, after a forced GC (CDP
`HeapProfiler.collectGarbage`): JS heap used (`Performance.getMetrics` JSHeapUsedSize),
DOM nodes (`Nodes`), event listeners (`JSEventListeners`), rows in the DOM
(`#alert-rows tr[data-id]`), rows listed (the table's `aria-rowcount` - 1) and the pill and
summary texts; the server's RSS (/proc) and connected sockets (`/metrics`); and the size of
what the pages are fed: the newest 500 alerts' mean size as JSON and reasons per alert
(`GET /api/v1/alerts`), which grow during a run as the detector reacts to the injected
traffic. It prints a line per sample and, at the end, each figure's first and last value,
its growth per minute over the whole run and over its second half (a figure that levels off
shows a much smaller second-half rate), and writes everything to
`benchmarks/results/soak-<UTC time>.json`.
With `--snapshots 6,12` it also takes a V8 heap snapshot of each page at those minutes
(benchmarks/heap_snapshot.py), prints what changed since the previous one by kind (strings,
plain objects, alerts and their reasons, DOM nodes, closures ...) and keeps the summaries in
the result JSON; the snapshot files stay in the temp dir with `--keep`.
Figures from the runs are in docs/benchmarks.md, *Dashboard soak*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import heap_snapshot  # benchmarks/heap_snapshot.py, beside this script
from card_testing_load import inject  # benchmarks/card_testing_load.py, beside this script
from growth import growth  # benchmarks/growth.py, beside this script
from playwright.async_api import BrowserContext, CDPSession, Page, async_playwright
from results_file import commit, write_results  # benchmarks/results_file.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
ALERT_SAMPLE = 500  # newest alerts whose size each sample records
FIGURES = ("heap_mb", "nodes", "listeners", "dom_rows", "listed")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak (10)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples (30)")
    p.add_argument("--rate", type=float, default=300.0, help="demo simulator tx/s (300)")
    p.add_argument(
        "--inject", type=float, default=50.0, help="extra alerts/s via the ingest API (50; 0: none)"
    )
    p.add_argument(
        "--act-every", type=float, default=20.0, help="held page: s between alerts worked"
    )
    p.add_argument("--port", type=int, default=8140)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (server log, data)")
    p.add_argument(
        "--snapshots",
        default="",
        help="minutes at which to take heap snapshots of both pages, e.g. 7,13,19 (none)",
    )
    return p.parse_args()


class Demo:
    """`python -m server demo` from this checkout, on its own data dir."""

    def __init__(self, workdir: Path, port: int, rate: float) -> None:
        self.log = workdir / "server.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "server", "demo", "--data-dir", str(workdir / "data")]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--rate", str(rate)]
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{port}"
        self.password = ""
        self.api_key = ""

    async def ready(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the demo exited: see {self.log}")
            text = self.log.read_text()
            login = re.search(r"login:\s+analyst / (\S+)", text)
            key = re.search(r"API key:\s+(\S+)", text)
            if login and key:
                self.password, self.api_key = login.group(1), key.group(1)
                return
            await asyncio.sleep(0.2)
        raise SystemExit(f"no login in the demo's output after {within_s:.0f} s: see {self.log}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Watched:
    """One signed-in page and the CDP session its figures are read through."""

    def __init__(self, name: str, context: BrowserContext, page: Page, cdp: CDPSession) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.cdp = cdp
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def snapshot(self, workdir: Path, minute: float) -> dict[str, Any]:
        path = workdir / f"heap-{self.name}-{minute:g}min.heapsnapshot"
        await heap_snapshot.take(self.cdp, path)
        return await asyncio.to_thread(heap_snapshot.summarize, path)

    async def sample(self) -> dict[str, Any]:
        await self.cdp.send("HeapProfiler.collectGarbage")
        metrics = {
            m["name"]: m["value"]
            for m in (await self.cdp.send("Performance.getMetrics"))["metrics"]
        }
        table: dict[str, Any] = await self.page.evaluate(
            """() => ({
              dom_rows: document.querySelectorAll('#alert-rows tr[data-id]').length,
              listed: Number(
                document.querySelector('#alerts-table').getAttribute('aria-rowcount') || 1) - 1,
              paused: document.querySelector('#alerts-paused').hidden ? null
                : document.querySelector('#alerts-paused').textContent,
              summary: document.querySelector('#alerts-summary').textContent,
              state: document.querySelector('#connection').dataset.state,
            })"""
        )
        return {
            "heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2),
            "nodes": int(metrics["Nodes"]),
            "listeners": int(metrics["JSEventListeners"]),
            **table,
        }


async def open_page(
    browser: Any,
    demo: Demo,
    name: str,
    prepare: Callable[[BrowserContext], Awaitable[None]] | None = None,
) -> Watched:
    """A page signed in to `demo` and live; `prepare` readies its context first (init
    scripts, routes)."""
    context = await browser.new_context(base_url=demo.url, viewport=VIEWPORT)
    if prepare is not None:
        await prepare(context)
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("input[name=username]", "analyst")
    await page.fill("input[name=password]", demo.password)
    await page.press("input[name=password]", "Enter")
    await page.wait_for_selector('#connection[data-state="live"]', timeout=30_000)
    cdp = await context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    return Watched(name, context, page, cdp)


async def work_alerts(
    held: Watched, every: float, stop: asyncio.Event, counts: dict[str, int]
) -> None:
    """The held page: keyboard in the table, now and then an alert acknowledged or resolved."""
    page = held.page
    await page.mouse.move(2, 2)
    await page.keyboard.press("j")
    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            await page.keyboard.press("j")
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#drawer:not([hidden])", timeout=5_000)
            await page.wait_for_timeout(1_000)
            await page.keyboard.press("a")
            await page.wait_for_timeout(1_000)
            if n % 2:
                await page.keyboard.press("f")
                await page.wait_for_selector("#resolve-dialog[open]", timeout=5_000)
                await page.keyboard.press("Enter")
                await page.wait_for_selector("#resolve-dialog", state="hidden", timeout=10_000)
                counts["resolved"] += 1
            else:
                counts["acknowledged"] += 1
            await page.keyboard.press("Escape")  # closes the drawer; the table stays held
        except Exception as exc:  # a soak goes on; the failure is counted
            counts["failed"] += 1
            held.errors.append(f"acting: {exc}".splitlines()[0])
            with contextlib.suppress(Exception):
                await page.keyboard.press("Escape")
        n += 1


async def server_figures(demo: Demo, http: aiohttp.ClientSession) -> dict[str, Any]:
    figures: dict[str, Any] = {"rss_mb": round(demo.rss_mb(), 1)}
    with contextlib.suppress(aiohttp.ClientError):
        async with http.get(f"{demo.url}/metrics") as r:
            text = await r.text()
        for name in (
            "ws_clients",
            "alerts_total",
            "transactions_total",
            "ws_slow_disconnects_total",
        ):
            m = re.search(rf"^fraudwatch_{name} (\S+)$", text, re.M)
            if m:
                figures[name] = int(float(m.group(1)))
    # What the pages are fed: the newest alerts' size as JSON and their reasons. They change
    # as the run goes on (the detector's rules and model react to the injected traffic), and
    # a page at its cap holds 20,000 of them.
    with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
        headers = {"Authorization": f"Bearer {demo.api_key}"}
        params = {"limit": str(ALERT_SAMPLE)}
        async with http.get(f"{demo.url}/api/v1/alerts", params=params, headers=headers) as r:
            alerts = (await r.json())["alerts"]
        if alerts:
            sizes = [len(json.dumps(a, separators=(",", ":"))) for a in alerts]
            figures["alert_bytes"] = round(sum(sizes) / len(sizes))
            figures["alert_reasons"] = round(
                sum(len(a.get("reasons") or []) for a in alerts) / len(alerts), 2
            )
    return figures


async def take_snapshots(
    pages: list[Watched],
    workdir: Path,
    minute: float,
    t: float,
    into: dict[str, Any],
    previous: dict[str, Any],
) -> None:
    """A heap snapshot of each page, compared with its previous one; the summary is kept."""
    for w in pages:
        summary = await w.snapshot(workdir, minute)
        summary["t"] = round(t, 1)
        into[w.name][f"{minute:g}"] = heap_snapshot.brief(summary)
        line = f"      snapshot {w.name} at {t:.0f} s: {summary['total_bytes'] / 2**20:.2f} MB"
        print(f"{line}, shapes {summary['shapes']}", flush=True)
        if w.name in previous:
            for group, n, size in heap_snapshot.diff(previous[w.name], summary, 12):
                print(f"        {group[:60]:60} {n:+9,} {size:+12,}", flush=True)
        previous[w.name] = summary


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    half = samples[-1]["t"] / 2 if samples else 0
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for page in ("idle", "held"):
            for f in FIGURES:
                series.setdefault(f"{page}.{f}", []).append((s["t"], s[page][f]))
        for f in ("rss_mb", "alert_bytes", "alert_reasons"):
            if f in s["server"]:
                series.setdefault(f"server.{f}", []).append((s["t"], s["server"][f]))
    return growth(series, half)


async def main() -> None:
    args = parse_args()
    # Taken before the pages load: the code they run is the checkout's at that moment.
    checkout = await asyncio.to_thread(commit)
    workdir = Path(tempfile.mkdtemp(prefix="fw-soak-"))
    demo = Demo(workdir, args.port, args.rate)
    samples: list[dict[str, Any]] = []
    counts = {"alerts": 0, "errors": 0, "acknowledged": 0, "resolved": 0, "failed": 0}
    stop = asyncio.Event()
    pages: list[Watched] = []
    marks = sorted(float(m) for m in args.snapshots.split(",") if m.strip())
    snapshots: dict[str, dict[str, Any]] = {"idle": {}, "held": {}}
    last_snapshot: dict[str, Any] = {}
    try:
        await demo.ready()
        print(f"demo at {demo.url} (pid {demo.proc.pid}), data in {workdir}", flush=True)
        async with async_playwright() as pw, aiohttp.ClientSession() as http:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            idle = await open_page(browser, demo, "idle")
            held = await open_page(browser, demo, "held")
            pages = [idle, held]
            tasks = [
                asyncio.create_task(
                    inject(
                        demo.url, demo.api_key, args.inject, prefix="soak", stop=stop, counts=counts
                    )
                ),
                asyncio.create_task(work_alerts(held, args.act_every, stop, counts)),
            ]
            started = time.monotonic()
            end = started + args.minutes * 60
            print(
                "   t  page  heap MB  nodes  listeners  DOM rows  listed  pill / summary",
                flush=True,
            )
            while True:
                t = time.monotonic() - started
                sample: dict[str, Any] = {"t": round(t, 1)}
                for w in pages:
                    sample[w.name] = await w.sample()
                sample["server"] = await server_figures(demo, http)
                sample["counts"] = dict(counts)
                samples.append(sample)
                for w in pages:
                    s = sample[w.name]
                    print(
                        f"{t:4.0f}  {w.name:4}  {s['heap_mb']:7.2f}  {s['nodes']:5}  "
                        f"{s['listeners']:9}  {s['dom_rows']:8}  {s['listed']:6}  "
                        f"{s['paused'] or '-'} / {s['summary']} [{s['state']}]",
                        flush=True,
                    )
                print(f"      server {sample['server']}  {counts}", flush=True)
                while marks and t >= marks[0] * 60:
                    minute = marks.pop(0)
                    await take_snapshots(pages, workdir, minute, t, snapshots, last_snapshot)
                if time.monotonic() >= end:
                    break
                await asyncio.sleep(max(0.0, min(args.every, end - time.monotonic())))
            stop.set()
            await asyncio.gather(*tasks)
            await browser.close()
    finally:
        stop.set()
        demo.stop()
    summary = summarize(samples)
    print("\nfigure                 start      end      max   per min  per min (2nd half)")
    for key, v in summary.items():
        print(
            f"{key:20} {v['start']:8} {v['end']:8} {v['max']:8} {v['per_min']:9}  "
            f"{v['per_min_second_half']:9}"
        )
    print(f"counts: {counts}")
    for w in pages:
        if w.errors:
            print(f"{w.name} page errors ({len(w.errors)}): {w.errors[:5]}")
    result = {
        "args": vars(args),
        "commit": checkout,
        "samples": samples,
        "summary": summary,
        "counts": counts,
        "errors": {w.name: w.errors for w in pages},
        "snapshots": snapshots,
    }
    print(f"written to {write_results('soak', result)}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
