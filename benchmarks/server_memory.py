"""The server's memory under a steady load: what grows, by how much, and whether it stops.

Run by hand (it takes `--minutes` plus about half a minute; nothing runs it automatically):

    .venv/bin/python benchmarks/server_memory.py                          # 10 min, the soak's load
    .venv/bin/python benchmarks/server_memory.py --minutes 4 --tracemalloc 8   # which lines grow
    .venv/bin/python benchmarks/server_memory.py --minutes 28 --accounts 10000 --inject 0 --rate 400
                                                      # steady state: every cap reached

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
server down) also the allocations that grew most, grouped by source line (one frame) or
by call chain (more), between the first sample and the last (or from the first at
`--trace-from` seconds: what still grows once the capped structures are full).

Each sample also splits the heap as the allocators see it: pymalloc's arenas (objects of
512 bytes or less) and the bytes in use in them; glibc malloc's in-use and free bytes, the
blocks it mmapped apart, and what each of its arenas (one per thread that allocated, up to
8 per core) holds and has free. RssAnon is about their sum, so growth of live data can be
told from memory an allocator holds free. It also counts the objects the garbage collector
tracks (those created since start-up: the CLI freezes the rest), per type, and at the end
the cyclic garbage waiting for a collection. `--trim` calls glibc's `malloc_trim(0)` after
every sample and records RSS after it: what RSS falls by is free memory glibc held, not
live data. Run it with `MALLOC_ARENA_MAX=2` in the environment to see what fewer glibc
arenas change. Everything goes to benchmarks/results/server-memory-<UTC time>.json.
Figures from runs are in docs/benchmarks.md, *Server memory*.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import functools
import gc
import os
import re
import secrets
import shutil
import socket
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
from benchmarks.results_file import commit, write_results  # noqa: E402
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
    p.add_argument("--trim", action="store_true", help="call malloc_trim(0) after every sample")
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


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = _Mallinfo2
LIBC.fopen.restype = ctypes.c_void_p
LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
LIBC.fclose.argtypes = [ctypes.c_void_p]
PYMALLOC = {  # sys._debugmallocstats() lines: name in the figures, text before the "="
    "arenas_mb": "arenas * 1048576 bytes/arena",
    "in_use_mb": "# bytes in allocated blocks",
    "free_in_pools_mb": "# bytes in available blocks",
    "free_pools_mb": "unused pools * 16384 bytes",
}


def allocators() -> dict[str, float]:
    """The heap as the allocators see it, in MB. pymalloc (objects of 512 bytes or less):
    the 1 MiB arenas it holds, the bytes in use in them and those free (not while
    tracemalloc runs: its hooks hide pymalloc from sys._debugmallocstats). glibc malloc
    (everything larger, and C libraries: SQLite's page cache): the heap its arenas took
    from the system, blocks mmapped apart, the bytes in use and the bytes free, summed
    over its arenas (one per thread that allocated, up to 8 per core)."""
    fd = os.dup(2)  # _debugmallocstats writes to the C stderr
    try:
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
            os.dup2(fd, 2)
            f.seek(0)
            text = f.read().decode()
    finally:
        os.dup2(fd, 2)
        os.close(fd)
    out: dict[str, float] = {}
    for name, label in PYMALLOC.items():
        found = re.search(rf"{re.escape(label)}\s*=\s*([\d,]+)", text)
        if found:
            out[f"pymalloc.{name}"] = round(int(found[1].replace(",", "")) / 2**20, 1)
    info = LIBC.mallinfo2()
    mb = {"heap": info.arena, "mmapped": info.hblkhd, "in_use": info.uordblks}
    mb["free"] = info.fordblks
    out.update({f"glibc.{k}_mb": round(v / 2**20, 1) for k, v in mb.items()})
    with tempfile.NamedTemporaryFile() as f:  # per arena: what it holds, and of it free
        stream = LIBC.fopen(f.name.encode(), b"w")
        LIBC.malloc_info(0, stream)
        LIBC.fclose(stream)
        arenas = [h.split("</heap>")[0] for h in Path(f.name).read_text().split("<heap nr=")[1:]]
    out["glibc.arenas"] = len(arenas)
    for i, heap in enumerate(arenas):
        held = re.search(r'<system type="current" size="(\d+)"', heap)
        free = sum(
            int(n)
            for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap)
        )
        out[f"glibc.arena{i}_mb"] = round(int(held[1]) / 2**20, 1) if held else 0.0
        out[f"glibc.arena{i}_free_mb"] = round(free / 2**20, 1)
    return out


def object_counts() -> dict[str, int]:
    """Objects the garbage collector tracks, per type (containers: not str, int or float)."""
    return dict(collections.Counter(type(o).__qualname__ for o in gc.get_objects()))


def garbage_types(n: int) -> list[str]:
    """The objects a full collection now would free (cyclic garbage, waiting for one), per
    type, most first: kept by DEBUG_SAVEALL for counting, then let go."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return [f"{count:9d}  {name}" for name, count in found.most_common(n)]


def grown_types(before: dict[str, int], after: dict[str, int], n: int) -> list[str]:
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in before.keys() | after.keys()}
    top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:n]
    return [f"{d:+9d}  {after.get(k, 0):9d}  {k}" for k, d in top if d]


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
    return out


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    half = samples[-1]["t"] / 2 if samples else 0
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for key, value in {**s["rss"], **s.get("alloc", {}), **s["sizes"]}.items():
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
    frames = tracemalloc.get_traceback_limit()
    by = "traceback" if frames > 1 else "lineno"  # group by the whole call chain if traced
    diff = after.filter_traces([keep]).compare_to(before.filter_traces([keep]), by)
    out = []
    for stat in diff[:n]:
        where = " <- ".join(  # innermost first
            f"{_short(f.filename)}:{f.lineno}" for f in reversed(stat.traceback)
        )
        out.append(f"{stat.size_diff / 2**20:+8.1f} MB {stat.count_diff:+9d} blocks  {where}")
    return out


def _short(filename: str) -> str:
    return os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename


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
    first_counts: dict[str, int] | None = None
    counts: dict[str, int] = {}
    garbage: list[str] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    try:
        while True:
            t = time.monotonic() - started
            sample: dict[str, Any] = {
                "t": round(t, 1),
                "load": _load(),
                "rss": rss_mb(),
                "sizes": structures(app, data_dir),
                "alloc": allocators(),
            }
            counts = object_counts()
            sample["sizes"]["gc.objects_tracked"] = sum(counts.values())
            for gen, stats in enumerate(gc.get_stats()):  # cyclic garbage found, and when
                sample["sizes"][f"gc.collections{gen}"] = stats["collections"]
                sample["sizes"][f"gc.collected{gen}"] = stats["collected"]
            if first_counts is None and t >= args.trace_from:
                first_counts = counts
            if args.tracemalloc:
                current, _ = tracemalloc.get_traced_memory()
                sample["traced_mb"] = round(current / 2**20, 1)
                if first_trace is None and t >= args.trace_from:
                    first_trace = tracemalloc.take_snapshot()
                    sample["trace_from"] = True
            if args.trim:
                began = time.perf_counter()
                LIBC.malloc_trim(0)
                sample["trim_s"] = round(time.perf_counter() - began, 3)
                sample["rss_after_trim"] = rss_mb()
                sample["alloc_after_trim"] = allocators()
            samples.append(sample)
            s = sample["sizes"]
            a = sample["alloc"]
            print(
                f"{t:5.0f} s  RSS {sample['rss']['VmRSS']:7.1f} MB  "
                f"tx {s['transactions_total']:8}  accounts {s['featurizer.accounts']:7}  "
                f"devices {s['featurizer.devices']:7}  ips {s['featurizer.ips']:7}  "
                f"remembered {s.get('model.remembered')}  "
                f"counted {s['scorecard.counted']}  sim {s.get('simulator.materialised')}  "
                f"pymalloc {a.get('pymalloc.in_use_mb')}/{a.get('pymalloc.arenas_mb')}  "
                f"glibc {a['glibc.in_use_mb']}+{a['glibc.free_mb']} free  "
                f"objects {s['gc.objects_tracked']}  "
                + (f"trimmed to {sample['rss_after_trim']['VmRSS']}  " if args.trim else "")
                + f"load {sample['load']}",
                flush=True,
            )
            if time.monotonic() >= end:
                break
            await asyncio.sleep(max(0.0, min(args.every, end - time.monotonic())))
        if args.tracemalloc and first_trace is not None:
            lines = top_lines(first_trace, tracemalloc.take_snapshot(), args.top)
        garbage = garbage_types(args.top)
    finally:
        if injector is not None:
            injector.terminate()
            await injector.wait()
        await runner.cleanup()
    types = grown_types(first_counts or {}, counts, args.top)
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
    print("\nobject types grown most (from the first sample, or the first at --trace-from):")
    print("\n".join(types))
    print("\ncyclic garbage at the end, waiting for a collection (count, type):")
    print("\n".join(garbage))
    if lines:
        print("\nallocations grown most (first sample to last):")
        print("\n".join(lines))
    path = write_results(
        "server-memory",
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("inject_to", "api_key")},
            "commit": commit(),
            "samples": samples,
            "summary": summary,
            "per_unit": units,
            "tracemalloc_top": lines,
            "object_types_grown": types,
            "garbage_types": garbage,
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        },
    )
    print(f"written to {path}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    args = parse_args()
    if args.inject_to:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(inject(args.inject_to, args.api_key, args.inject, prefix="mem"))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
