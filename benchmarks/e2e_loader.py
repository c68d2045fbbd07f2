"""The benchmark's ingest side: pre-encoded NDJSON batches posted with the API key.

Phase "max": `concurrency` requests in flight, each sent as soon as the previous one is
answered, for `phase_seconds`. Then, once every verdict has reached the subscribers, phase
"fixed": requests on a fixed schedule at FIXED_RATE transactions/s (open loop), for
`fixed_seconds`. Every request is logged with its send and answer times (time.time_ns()).
Run by benchmarks/e2e.py in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

INGEST = "/api/v1/transactions"
FIXED_RATE = 2000.0
FLAGGED = frozenset({"review", "block"})
HTTP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 20.0
MAX_WAITING = 256


@dataclass(frozen=True)
class LoadPlan:
    phase_seconds: float
    fixed_seconds: float
    concurrency: int
    settle_seconds: float
    verdict_clients: int


@dataclass
class Workload:
    """Pre-encoded request bodies: (first index, count, NDJSON) per request, per phase."""

    max_bodies: list[tuple[int, int, bytes]]
    fixed_bodies: list[tuple[int, int, bytes]]
    total: int
    fraud: int


class _Result(msgspec.Struct):
    decision: str | None = None


class _Reply(msgspec.Struct):
    results: list[_Result] = []


_reply_decoder = msgspec.json.Decoder(_Reply)


@dataclass
class Phase:
    name: str
    started_ns: int = 0
    ended_ns: int = 0
    # One row per request: first index, count, send ns, answer ns, HTTP status, verdicts, flagged.
    requests: list[tuple[int, int, int, int, int, int, int]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # message → how many times
    cpu_s: dict[str, float] = field(default_factory=dict)
    max_lag_s: float = 0.0
    drain_s: float | None = None


def loader_main(
    base: str,
    key: str,
    workload: Workload,
    plan: LoadPlan,
    pids: dict[str, int],
    out: str,
    progress: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # the inherited heap is never garbage: keep full collections from scanning it
    phases = asyncio.run(_load(base, key, workload, plan, pids, progress))
    Path(out).write_text(json.dumps([asdict(p) for p in phases]))


async def _load(
    base: str, key: str, workload: Workload, plan: LoadPlan, pids: dict[str, int], progress: Any
) -> list[Phase]:
    pids = {**pids, "loader": os.getpid()}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    connector = aiohttp.TCPConnector(limit=max(plan.concurrency, 64))
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(
        base, headers=headers, connector=connector, timeout=timeout
    ) as session:
        flat_out = Phase("max")
        with _cpu(flat_out, pids):
            await _flat_out(session, workload.max_bodies, plan, flat_out)
        flat_out.drain_s = await _drain(progress, _answered(flat_out) * plan.verdict_clients)
        await asyncio.sleep(plan.settle_seconds)
        fixed = Phase("fixed")
        with _cpu(fixed, pids):
            await _fixed_rate(session, workload.fixed_bodies, plan, fixed)
    return [flat_out, fixed]


async def _post(
    session: aiohttp.ClientSession, start: int, n: int, body: bytes, phase: Phase
) -> None:
    sent = time.time_ns()
    status, verdicts, flagged = 0, 0, 0
    try:
        async with session.post(INGEST, data=body) as response:
            status = response.status
            data = await response.read()
        if status == 200:
            results = _reply_decoder.decode(data).results
            verdicts = sum(1 for r in results if r.decision is not None)
            flagged = sum(1 for r in results if r.decision in FLAGGED)
        else:
            _error(phase, f"HTTP {status}: {data[:160].decode(errors='replace')}")
    except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
        _error(phase, f"{type(exc).__name__}: {exc}")
    phase.requests.append((start, n, sent, time.time_ns(), status, verdicts, flagged))


def _error(phase: Phase, text: str) -> None:
    key = text if text in phase.errors or len(phase.errors) < 20 else "(other errors)"
    phase.errors[key] = phase.errors.get(key, 0) + 1


async def _flat_out(
    session: aiohttp.ClientSession,
    bodies: Sequence[tuple[int, int, bytes]],
    plan: LoadPlan,
    phase: Phase,
) -> None:
    """`concurrency` requests in flight, each sent as soon as the previous one is answered."""
    feed = iter(bodies)
    phase.started_ns = time.time_ns()
    deadline = time.monotonic() + plan.phase_seconds

    async def worker() -> None:
        for start, n, body in feed:
            if time.monotonic() >= deadline:
                return
            await _post(session, start, n, body, phase)

    await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    phase.ended_ns = time.time_ns()
    if time.monotonic() < deadline:
        _error(phase, "workload exhausted before the phase ended: raise --budget-rate")


async def _fixed_rate(
    session: aiohttp.ClientSession,
    bodies: Sequence[tuple[int, int, bytes]],
    plan: LoadPlan,
    phase: Phase,
) -> None:
    """Requests on a fixed schedule whatever the answers do (open loop); MAX_WAITING at most."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    phase.started_ns = time.time_ns()
    begin = loop.time()
    sent = 0
    for start, n, body in bodies:
        due = begin + sent / FIXED_RATE
        if due - begin >= plan.fixed_seconds:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            phase.max_lag_s = max(phase.max_lag_s, -delay)
        if len(pending) >= MAX_WAITING:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(_post(session, start, n, body, phase))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += n
    if pending:
        _, late = await asyncio.wait(set(pending), timeout=HTTP_TIMEOUT_S)
        for task in late:
            task.cancel()
    phase.ended_ns = time.time_ns()


async def _drain(progress: Any, want: int) -> float | None:
    """Wait until every answered verdict reached the subscribers, so the next phase starts
    clean; the time it took, or None if it never happened within DRAIN_TIMEOUT_S."""
    began = time.monotonic()
    while progress.value < want:
        if time.monotonic() - began > DRAIN_TIMEOUT_S:
            return None
        await asyncio.sleep(0.02)
    return round(time.monotonic() - began, 3)


def _answered(phase: Phase) -> int:
    return sum(r[5] for r in phase.requests)


def _machine_cpu_seconds() -> tuple[float, float]:
    """CPU time all processes on the machine spent (all cores), and the part of it in softirq
    (where the kernel does most loopback TCP work), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, softirq / tick


def _cpu_seconds(pid: int, thread: bool = False) -> tuple[float, float]:
    """User and system CPU time of a process (all its threads), or of its main thread alone."""
    path = f"/proc/{pid}/task/{pid}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@contextlib.contextmanager
def _cpu(phase: Phase, pids: dict[str, int]) -> Iterator[None]:
    before = {name: sum(_cpu_seconds(pid)) for name, pid in pids.items()}
    # The event loop's thread alone: the server's bottleneck, whatever the store threads do.
    loop_user, loop_sys = _cpu_seconds(pids["server"], thread=True)
    busy, softirq = _machine_cpu_seconds()
    yield
    phase.cpu_s = {
        name: round(sum(_cpu_seconds(pid)) - before[name], 2) for name, pid in pids.items()
    }
    busy_after, softirq_after = _machine_cpu_seconds()
    # Whatever else ran meanwhile (other jobs on a shared box) took CPU from the server.
    # Softirq work is mostly charged to the process it interrupted, ours included, so it is
    # reported beside the others rather than subtracted from them.
    phase.cpu_s["others"] = round(busy_after - busy - sum(phase.cpu_s.values()), 2)
    phase.cpu_s["softirq"] = round(softirq_after - softirq, 2)
    user, system = _cpu_seconds(pids["server"], thread=True)
    phase.cpu_s["server_loop"] = round(user - loop_user + system - loop_sys, 2)
    phase.cpu_s["server_loop_kernel"] = round(system - loop_sys, 2)
