"""The server's memory under a steady load: what grows, by how much, and whether it stops.

Run by hand (it takes `--minutes` plus about half a minute; nothing runs it automatically):

    .venv/bin/python benchmarks/server_memory.py                          # 10 min, the soak's load
    .venv/bin/python benchmarks/server_memory.py --minutes 4 --tracemalloc 8   # which lines grow

It runs the real app in this process (`create_app` with the settings `fraudwatch demo`
uses: the simulator at `--rate` tx/s with its ground truth as labels, the model on) on a
fresh data dir under a temporary directory, on 127.0.0.1 and a free port, garbage
collection tuned as the CLI tunes it. A child process posts card-testing transactions
through the ingest API as benchmarks/dashboard_soak.py does (twelve $1.00 charges per
account, every account new, about `--inject` alerts a second). No browser.

Every `--every` seconds it records the process's RSS beside the size of every structure in
`server/` (and the in-process simulator) that holds per-transaction, per-account or
per-alert data: the featurizer's keys per kind and its caches, the model's memory of recent
inputs and flagged accounts, the scorecard's maps, the simulator's accounts and pending
labels, the hub, the API-key cache, the login throttle, the queue, the database and WAL
files. It reads them from the objects themselves (some are private attributes: this is a
measuring tool, not an API). At the end it prints each figure's first and last value and
its growth per minute over the whole run and its second half, and RSS growth per 100,000
transactions and per new account; with `--tracemalloc N` (frames per trace; it slows the
server down) also the source lines whose allocations grew most between the first sample
and the last (or from the first at `--trace-from` seconds: what still grows once the
capped structures are full). Everything goes to benchmarks/results/server-memory-<UTC time>.json.
Figures from runs are in docs/benchmarks.md, *Server memory*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simulator  # noqa: E402
from benchmarks.card_testing_load import inject  # noqa: E402
from benchmarks.growth import growth  # noqa: E402
from benchmarks.results_file import write_results  # noqa: E402
from server.app import SIMULATOR_FEED, create_app  # noqa: E402
from server.cli import tune_gc  # noqa: E402
from server.config import Settings  # noqa: E402
from server.state import AUTH, DETECTOR, HUB, QUEUE, SCORECARD, STATS  # noqa: E402

CLOCKS = frozenset({"featurizer.newest", "featurizer.next_sweep"})  # event times, not sizes


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run (10)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples (30)")
    p.add_argument("--rate", type=float, default=300.0, help="simulator tx/s (300)")
    p.add_argument(
        "--inject", type=float, default=60.0, help="extra alerts/s via the ingest API (60; 0: none)"
    )
    p.add_argument(
        "--accounts",
        type=int,
        help="simulated cardholders (default: sized from the rate, 4.3 million at 300 tx/s)",
    )
    p.add_argument(
        "--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace allocations (0: off)"
    )
    p.add_argument("--top", type=int, default=25, help="lines listed with --tracemalloc (25)")
    p.add_argument(
        "--trace-from",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="compare allocations from the first sample at or after this (0: the first)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data)")
    # The injector's own process: not for use by hand.
    p.add_argument("--inject-to", help=argparse.SUPPRESS)
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    return p.parse_args()


# --- the injector (a child process, so that the server's process holds only the server) ---


# --- the figures -----------------------------------------------------------------------------


def rss_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            name, value = line.split(":")
            out[name] = round(int(value.split()[0]) / 1024, 1)
    return out


def _len(obj: Any, name: str) -> int | None:
    found = getattr(obj, name, None)
    return None if found is None else len(found)


def structures(app: Any, data_dir: Path) -> dict[str, Any]:
    """The size of everything that could grow with transactions, accounts or alerts."""
    detector, scorecard, hub = app[DETECTOR], app[SCORECARD], app[HUB]
    fz = detector.featurizer
    out: dict[str, Any] = {f"featurizer.{k}": v for k, v in fz.size().items()}
    out["featurizer.hashes"] = len(fz.hashes)
    out["featurizer.amounts"] = len(fz.amounts)
    out["featurizer.newest"] = fz.newest
    out["featurizer.next_sweep"] = fz.next_sweep
    model = detector.model
    if model is not None:
        out["model.remembered"] = len(model.remembered)
        out["model.flags"] = len(model.flags.accounts)
    for name in ("_verdicts", "_truths", "_counted", "_frauds", "_tallies"):
        out[f"scorecard.{name.lstrip('_')}"] = _len(scorecard, name)
    feed = app.get(SIMULATOR_FEED)
    if feed is not None:
        sim = feed.simulator
        out["simulator.population"] = len(sim.accounts)
        out["simulator.materialised"] = sim.accounts.materialised
        out["simulator.opened"] = sim.accounts.opened
        out["simulator.pending"] = _len(sim, "_pending")
        out["simulator.away"] = _len(sim, "_away")
        out["simulator.pending_labels"] = len(feed.pending_labels)
    out["hub.subscribers"] = len(hub.subscribers)
    out["hub.viewing"] = _len(hub, "_viewing")
    out["hub.closing_tasks"] = _len(hub, "_closing_tasks")
    out["hub.recent_stats"] = len(hub.recent_stats)
    auth = app[AUTH]
    out["api_keys.cache"] = _len(auth.keys, "_cache")
    out["api_keys.touched"] = _len(auth.keys, "_touched")
    out["login_throttle"] = _len(auth.throttle, "_failures")
    out["queue"] = app[QUEUE].qsize()
    stats = app[STATS]
    out["stats.tick_latencies"] = _len(stats, "_tick_latencies")
    out["transactions_total"] = stats.transactions_total
    out["alerts_total"] = stats.alerts_total
    for name in ("fraudwatch.db", "fraudwatch.db-wal", "detector-state.msgpack"):
        path = data_dir / name
        out[f"file.{name}_mb"] = round(path.stat().st_size / 2**20, 1) if path.exists() else 0
    out["gc.objects_tracked"] = len(gc.get_objects())
    return out


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    half = samples[-1]["t"] / 2 if samples else 0
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for key, value in {**s["rss"], **s["sizes"]}.items():
            if isinstance(value, int | float) and key not in CLOCKS:
                series.setdefault(key, []).append((s["t"], float(value)))
    return growth(series, half)


def per_unit(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth from the first sample to the last, per 100,000 transactions scored and
    per account the detector came to hold."""
    first, last = samples[0], samples[-1]
    rss = last["rss"]["VmRSS"] - first["rss"]["VmRSS"]
    txs = last["sizes"]["transactions_total"] - first["sizes"]["transactions_total"]
    accounts = last["sizes"]["featurizer.accounts"] - first["sizes"]["featurizer.accounts"]
    minutes = (last["t"] - first["t"]) / 60
    return {
        "rss_growth_mb": round(rss, 1),
        "minutes": round(minutes, 2),
        "transactions": txs,
        "new_accounts": accounts,
        "mb_per_100k_transactions": round(rss / txs * 1e5, 1) if txs else None,
        "bytes_per_new_account": round(rss * 2**20 / accounts) if accounts else None,
        "transactions_per_s": round(txs / (minutes * 60), 1) if minutes else None,
    }


def top_lines(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int) -> list[str]:
    keep = tracemalloc.Filter(False, tracemalloc.__file__)
    diff = after.filter_traces([keep]).compare_to(before.filter_traces([keep]), "lineno")
    out = []
    for stat in diff[:n]:
        frame = stat.traceback[0]
        where = (
            os.path.relpath(frame.filename, ROOT)
            if frame.filename.startswith(str(ROOT))
            else frame.filename
        )
        out.append(
            f"{stat.size_diff / 2**20:+8.1f} MB {stat.count_diff:+9d} blocks  "
            f"{where}:{frame.lineno}"
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def run(args: argparse.Namespace) -> None:
    from aiohttp import web

    workdir = Path(tempfile.mkdtemp(prefix="fw-mem-"))
    data_dir = workdir / "data"
    api_key = secrets.token_urlsafe(24)
    port = _free_port()
    settings = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        api_key=api_key,
        simulator=True,
        simulator_labels=True,
        rate=args.rate,
    )
    if args.accounts:
        # No setting sizes the demo's population: the feed's Simulator gets it here.
        simulator.Simulator = functools.partial(simulator.Simulator, accounts=args.accounts)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    tune_gc()
    url = f"http://127.0.0.1:{port}"
    injector = None
    if args.inject > 0:
        injector = await asyncio.create_subprocess_exec(
            *(sys.executable, __file__, "--inject-to", url, "--api-key", api_key),
            *("--inject", str(args.inject)),
            cwd=ROOT,
        )
    print(f"server at {url} (pid {os.getpid()}), data in {workdir}; load {_load()}", flush=True)
    samples: list[dict[str, Any]] = []
    first_trace: tracemalloc.Snapshot | None = None
    lines: list[str] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    try:
        while True:
            t = time.monotonic() - started
            sample = {
                "t": round(t, 1),
                "load": _load(),
                "rss": rss_mb(),
                "sizes": structures(app, data_dir),
            }
            if args.tracemalloc:
                current, _ = tracemalloc.get_traced_memory()
                sample["traced_mb"] = round(current / 2**20, 1)
                if first_trace is None and t >= args.trace_from:
                    first_trace = tracemalloc.take_snapshot()
                    sample["trace_from"] = True
            samples.append(sample)
            s = sample["sizes"]
            print(
                f"{t:5.0f} s  RSS {sample['rss']['VmRSS']:7.1f} MB  "
                f"tx {s['transactions_total']:8}  accounts {s['featurizer.accounts']:7}  "
                f"devices {s['featurizer.devices']:7}  ips {s['featurizer.ips']:7}  "
                f"remembered {s.get('model.remembered')}  "
                f"counted {s['scorecard.counted']}  sim {s.get('simulator.materialised')}  "
                f"load {sample['load']}",
                flush=True,
            )
            if time.monotonic() >= end:
                break
            await asyncio.sleep(max(0.0, min(args.every, end - time.monotonic())))
        if args.tracemalloc and first_trace is not None:
            lines = top_lines(first_trace, tracemalloc.take_snapshot(), args.top)
    finally:
        if injector is not None:
            injector.terminate()
            await injector.wait()
        await runner.cleanup()
    summary = summarize(samples)
    units = per_unit(samples)
    later = [s for s in samples if s["t"] >= args.trace_from]
    if args.trace_from and len(later) > 1:
        units["from_trace_from"] = per_unit(later)
    print("\nfigure                              start         end   per min  per min (2nd half)")
    for key, v in summary.items():
        if v["start"] == v["end"] == v["max"]:
            continue
        print(
            f"{key:32} {v['start']:11.1f} {v['end']:11.1f} {v['per_min']:9.1f}  "
            f"{v['per_min_second_half']:9.1f}"
        )
    print(f"\nRSS growth: {units}")
    if lines:
        print("\nallocations grown most (first sample to last), by line:")
        print("\n".join(lines))
    path = write_results(
        "server-memory",
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("inject_to", "api_key")},
            "commit": _commit(),
            "samples": samples,
            "summary": summary,
            "per_unit": units,
            "tracemalloc_top": lines,
        },
    )
    print(f"written to {path}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()


def main() -> None:
    args = parse_args()
    if args.inject_to:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(inject(args.inject_to, args.api_key, args.inject, prefix="mem"))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
