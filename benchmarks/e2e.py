"""End-to-end benchmark: `fraudwatch serve` as a black box, 100 WebSocket clients, an NDJSON
loader; the batched design against the naive one on the same workload.

Four processes: this one (generates the workload, starts and stops everything, computes the
figures), the server, a clients process (e2e_clients: 10 clients subscribed to every verdict,
90 on alerts only) and a loader process (e2e_loader: NDJSON batches as fast as the server
answers, then at a fixed rate). Loader and clients share only the wall clock, which is what
the ingest→client latency is measured with. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
from e2e_clients import ID_PREFIX, VERDICT_CLIENTS, clients_main
from e2e_loader import DRAIN_TIMEOUT_S, FIXED_RATE, HTTP_TIMEOUT_S, LoadPlan, Workload, loader_main
from e2e_report import floor_lines, floors, summarize, table

from simulator import Labeled, Simulator, ndjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
FRAUDWATCH = ROOT / ".venv" / "bin" / "fraudwatch"
HOST = "127.0.0.1"
# A fixed population, denser than the simulator's rate-sized default (~43 tx per account per
# day): ~4 % of transactions are flagged, more than an issuer sees, so every run exercises the
# alert fan-out to 100 clients hard. Fixed, so runs stay comparable as the simulator evolves.
SIM_ACCOUNTS = 20_000
SIM_EVENT_RATE = 10.0
SIM_START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
STARTUP_TIMEOUT_S = 30.0
STAMP = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Options:
    phase_seconds: float
    fixed_seconds: float
    batch: int
    fixed_batch: int
    concurrency: int
    budget_rate: float
    settle_seconds: float
    designs: tuple[str, ...]
    seed: int
    keep: bool
    profile_dir: Path | None

    def plan(self) -> LoadPlan:
        return LoadPlan(
            phase_seconds=self.phase_seconds,
            fixed_seconds=self.fixed_seconds,
            concurrency=self.concurrency,
            settle_seconds=self.settle_seconds,
            verdict_clients=VERDICT_CLIENTS,
        )


def build_workload(opts: Options) -> Workload:
    max_n = int(opts.phase_seconds * opts.budget_rate)
    fixed_n = int(opts.fixed_seconds * FIXED_RATE)
    sim = Simulator(seed=opts.seed, accounts=SIM_ACCOUNTS, rate=SIM_EVENT_RATE, start=SIM_START)
    items = sim.generate(max_n + fixed_n)
    # Ids of our own: the clients turn them back into an index without a lookup table.
    items = [
        item._replace(transaction=msgspec.structs.replace(item.transaction, id=f"{ID_PREFIX}{i}"))
        for i, item in enumerate(items)
    ]
    return Workload(
        max_bodies=_bodies(items, 0, max_n, opts.batch),
        fixed_bodies=_bodies(items, max_n, max_n + fixed_n, opts.fixed_batch),
        total=len(items),
        fraud=sum(1 for item in items if item.is_fraud),
    )


def _bodies(
    items: list[Labeled], start: int, stop: int, batch: int
) -> list[tuple[int, int, bytes]]:
    return [
        (i, min(batch, stop - i), ndjson(items[i : min(i + batch, stop)]))
        for i in range(start, stop, batch)
    ]


# ---------------------------------------------------------------------------------------------
# One design: server + clients + loader


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _get(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status), bytes(response.read())


def _wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited ({server.returncode}):\n{_tail(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if _get(base + "/healthz", timeout=0.5)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _metrics(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
        text = _get(base + "/metrics")[1].decode()
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
    return out


def _peak_rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # graceful: the loop drains, sockets close
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _stop_process(proc: mp.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=5)


def run_design(design: str, workload: Workload, opts: Options) -> dict[str, Any]:
    ctx = mp.get_context("fork")  # the loader inherits the encoded workload without a copy
    work = Path(tempfile.mkdtemp(prefix=f"fraudwatch-e2e-{design}-"))
    key = f"bench-{os.urandom(8).hex()}"
    port = _free_port()
    base = f"http://{HOST}:{port}"
    env = {**os.environ, "FRAUDWATCH_API_KEY": key, "FRAUDWATCH_PIPELINE": design}
    log = work / "server.log"
    procs: list[mp.process.BaseProcess] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        with open(log, "wb") as log_file:
            server = subprocess.Popen(
                [
                    *(str(FRAUDWATCH), "serve", "--host", HOST, "--port", str(port)),
                    *("--data-dir", str(work / "data")),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        _wait_healthy(base, server, log)
        ready, stop, progress = ctx.Event(), ctx.Event(), ctx.Value("q", 0, lock=False)
        ws_url = f"ws://{HOST}:{port}/ws"
        clients = ctx.Process(
            target=clients_main,
            args=(ws_url, key, workload.total, str(work), ready, stop, progress),
            name="e2e-clients",
        )
        clients.start()
        procs.append(clients)
        if not ready.wait(STARTUP_TIMEOUT_S + 5):
            raise RuntimeError(f"WebSocket clients did not connect:\n{_tail(log)}")
        pids = {"server": server.pid, "clients": clients.pid or 0}
        loader = ctx.Process(
            target=loader_main,
            args=(base, key, workload, opts.plan(), pids, str(work / "loader.json"), progress),
            name="e2e-loader",
        )
        loader.start()
        procs.append(loader)
        spy = _start_profiler(design, server.pid, opts)
        budget = opts.phase_seconds + opts.fixed_seconds + 2 * DRAIN_TIMEOUT_S + HTTP_TIMEOUT_S
        loader.join(timeout=budget)
        if loader.exitcode != 0:
            raise RuntimeError(f"loader failed (exit {loader.exitcode}):\n{_tail(log)}")
        if spy is not None:
            spy.wait(timeout=30)
        phases = json.loads((work / "loader.json").read_text())
        answered = sum(r[5] for p in phases for r in p["requests"])
        final_drain = _wait_progress(progress, answered * VERDICT_CLIENTS)
        metrics = _metrics(base)
        peak_rss = _peak_rss_mib(server.pid)
        stop.set()
        clients.join(timeout=30)
        if clients.exitcode != 0:
            raise RuntimeError(f"clients process failed (exit {clients.exitcode})")
        return summarize(design, work, phases, metrics, peak_rss, final_drain)
    finally:
        for proc in reversed(procs):
            _stop_process(proc)
        if server is not None:
            _stop_server(server)
        if opts.keep:
            print(f"  kept {work} (server.log, loader.json, received-*.bin)", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _start_profiler(design: str, pid: int, opts: Options) -> subprocess.Popen[bytes] | None:
    """py-spy on the server for the max phase: collapsed stacks, per thread, idle included."""
    if opts.profile_dir is None:
        return None
    spy = shutil.which("py-spy", path=str(FRAUDWATCH.parent)) or shutil.which("py-spy")
    if spy is None:
        print("  --profile: py-spy not found (.venv/bin/pip install py-spy)", flush=True)
        return None
    opts.profile_dir.mkdir(parents=True, exist_ok=True)
    out = opts.profile_dir / f"{design}-max.txt"
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(opts.phase_seconds))]
    command += ["--rate", "100", "--format", "raw", "--threads", "--idle", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_progress(progress: Any, want: int) -> float | None:
    began = time.monotonic()
    while progress.value < want:
        if time.monotonic() - began > DRAIN_TIMEOUT_S:
            return None
        time.sleep(0.05)
    return round(time.monotonic() - began, 2)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def parse_args(argv: Sequence[str] | None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s phases: a smoke run, not figures")
    p.add_argument("--phase-seconds", type=float, help="length of each phase (default 20)")
    p.add_argument("--batch", type=int, default=1000, help="transactions per request, max phase")
    p.add_argument(
        "--fixed-batch", type=int, default=100, help="transactions per request, fixed phase"
    )
    p.add_argument("--concurrency", type=int, default=6, help="requests in flight, max phase")
    p.add_argument(
        "--budget-rate",
        type=float,
        default=25_000.0,
        help="transactions pre-generated per second of max phase (default 25000)",
    )
    p.add_argument("--design", choices=["batched", "naive"], action="append", dest="designs")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--check", action="store_true", help="exit 1 when a floor is missed")
    p.add_argument("--keep", action="store_true", help="keep each design's work dir and log")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during the max phase (benchmarks/results/<time>-profile/)",
    )
    args = p.parse_args(argv)
    seconds = args.phase_seconds or (3.0 if args.quick else 20.0)
    if seconds <= 0 or args.batch < 1 or args.fixed_batch < 1 or args.concurrency < 1:
        p.error("--phase-seconds, --batch, --fixed-batch and --concurrency must be positive")
    opts = Options(
        phase_seconds=seconds,
        fixed_seconds=seconds,
        batch=args.batch,
        fixed_batch=args.fixed_batch,
        concurrency=args.concurrency,
        budget_rate=args.budget_rate,
        settle_seconds=1.0,
        designs=tuple(args.designs or ("batched", "naive")),
        seed=args.seed,
        keep=args.keep,
        profile_dir=RESULTS_DIR / f"{STAMP}-profile" if args.profile else None,
    )
    return opts, args.check


def main(argv: Sequence[str] | None = None) -> int:
    opts, check = parse_args(argv)
    if not FRAUDWATCH.exists():
        print(f"error: {FRAUDWATCH} not found; run `make install`", file=sys.stderr)
        return 2
    began = time.monotonic()
    facts = machine()
    print(
        f"generating the workload ({opts.phase_seconds * opts.budget_rate:,.0f} + "
        f"{opts.fixed_seconds * FIXED_RATE:,.0f} transactions)...",
        flush=True,
    )
    workload = build_workload(opts)
    print(
        f"  {workload.total:,} transactions, {workload.fraud:,} fraudulent, "
        f"in {time.monotonic() - began:.1f} s",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for design in opts.designs:
        print(f"running the {design} design...", flush=True)
        try:
            results[design] = run_design(design, workload, opts)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            # Report what the other design measured rather than lose the whole run.
            failures[design] = f"{type(exc).__name__}: {exc}"
            print(f"  {design} failed: {failures[design]}", file=sys.stderr, flush=True)
            continue
        for name, phase in results[design]["phases"].items():
            print(f"  {name}: {phase['answered_per_s']:,.0f} tx/s answered", flush=True)
    if not results:
        return 1
    checked = floors(results)
    lines = table(results) + floor_lines(checked)
    lines += [f"design {name} FAILED: {why.splitlines()[0]}" for name, why in failures.items()]
    print()
    print("\n".join(lines))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{STAMP}.json"
    document = {
        "when": STAMP,
        "machine": facts,
        "options": asdict(opts),
        "workload": {"transactions": workload.total, "fraudulent": workload.fraud},
        "results": results,
        "floors": checked,
        "failures": failures,
        "table": lines,
    }
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    missed = failures or not all(f["met"] for f in checked.values())
    return 1 if check and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # run_design's finally has stopped the server, the clients and the loader by now.
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
