"""The benchmark's WebSocket side: 100 clients in one process, as analysts' dashboards are.

The first VERDICT_CLIENTS subscribe to every verdict and note, per transaction, when its verdict
first arrived (wall clock, time.time_ns(), comparable with the loader's send times); the rest
count alerts. Run by benchmarks/e2e.py in a process of its own.
"""

from __future__ import annotations

import array
import asyncio
import gc
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

CLIENTS = 100
VERDICT_CLIENTS = 10
# Transaction ids are ID_PREFIX + their index in the workload, so no lookup table is needed.
ID_PREFIX = "e2e-"
CONNECT_TIMEOUT_S = 30.0


class _Item(msgspec.Struct):
    transaction_id: str


class _Frame(msgspec.Struct):
    # Only what is counted is decoded; msgspec skips the rest (reasons, alert bodies) unparsed.
    type: str
    items: list[_Item] = []


_frame_decoder = msgspec.json.Decoder(_Frame)


@dataclass
class ClientTally:
    alerts: list[int]
    verdict_items: list[int]
    distinct: list[int]
    closed: list[str | None]
    frames: list[int]
    # Characters of text received; the server's frames are ASCII JSON, so bytes as well.
    chars: list[int]
    errors: list[str] = field(default_factory=list)


def clients_main(
    url: str, key: str, total: int, out_dir: str, ready: Any, stop: Any, progress: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    # Forked from the benchmark, we inherit its heap (simulator, Faker's data): without this,
    # every full collection scans it, and 20 ms pauses would show up as latency.
    gc.freeze()
    received, tally = asyncio.run(_clients(url, key, total, ready, stop, progress))
    for slot, times in enumerate(received):
        with open(Path(out_dir) / f"received-{slot}.bin", "wb") as f:
            times.tofile(f)
    (Path(out_dir) / "clients.json").write_text(json.dumps(asdict(tally)))


async def _clients(
    url: str, key: str, total: int, ready: Any, stop: Any, progress: Any
) -> tuple[list[array.array[int]], ClientTally]:
    # One receive-time array per verdict subscriber, indexed by transaction: 0 = not received.
    received = [array.array("q", bytes(8 * total)) for _ in range(VERDICT_CLIENTS)]
    tally = ClientTally(
        alerts=[0] * CLIENTS,
        verdict_items=[0] * VERDICT_CLIENTS,
        distinct=[0] * VERDICT_CLIENTS,
        closed=[None] * CLIENTS,
        frames=[0] * CLIENTS,
        chars=[0] * CLIENTS,
    )
    connected = asyncio.Semaphore(0)
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = [
            asyncio.create_task(
                _client(session, url, headers, slot, received, tally, connected),
                name=f"ws-client-{slot}",
            )
            for slot in range(CLIENTS)
        ]
        try:
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            for _ in range(CLIENTS):
                await asyncio.wait_for(connected.acquire(), max(0.1, deadline - time.monotonic()))
            ready.set()
            while not stop.is_set():
                progress.value = sum(tally.distinct)
                await asyncio.sleep(0.05)
                if all(t.done() for t in tasks):
                    break
        except TimeoutError:
            tally.errors.append("not every client connected in time")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return received, tally


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    slot: int,
    received: list[array.array[int]],
    tally: ClientTally,
    connected: asyncio.Semaphore,
) -> None:
    wants_verdicts = slot < VERDICT_CLIENTS
    try:
        # max_msg_size=0: a verdicts frame carries a whole detection batch (hundreds of KB).
        async with session.ws_connect(url, headers=headers, max_msg_size=0, heartbeat=None) as ws:
            hello = await ws.receive(timeout=CONNECT_TIMEOUT_S)
            if hello.type != aiohttp.WSMsgType.TEXT or '"hello"' not in hello.data:
                raise RuntimeError(f"expected hello, got {hello.type} {hello.data!r:.100}")
            if wants_verdicts:
                await ws.send_str('{"type":"subscribe","verdicts":true}')
                while (await _next_type(ws)) != "subscribed":
                    pass
            connected.release()
            await _receive(ws, slot, received[slot] if wants_verdicts else None, tally)
            tally.closed[slot] = f"closed by server: {ws.close_code}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        tally.closed[slot] = f"{type(exc).__name__}: {exc}"
        tally.errors.append(f"client {slot}: {type(exc).__name__}: {exc}")


async def _next_type(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await ws.receive(timeout=CONNECT_TIMEOUT_S)
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise RuntimeError(f"socket ended before subscribing: {msg.type}")
    return _frame_decoder.decode(msg.data).type


async def _receive(
    ws: aiohttp.ClientWebSocketResponse,
    slot: int,
    times: array.array[int] | None,
    tally: ClientTally,
) -> None:
    cut = len(ID_PREFIX)
    total = 0 if times is None else len(times)
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        now = time.time_ns()
        tally.frames[slot] += 1
        tally.chars[slot] += len(msg.data)
        frame = _frame_decoder.decode(msg.data)
        if frame.type == "verdicts" and times is not None:
            fresh = 0
            for item in frame.items:
                index = int(item.transaction_id[cut:])
                if 0 <= index < total and times[index] == 0:
                    times[index] = now
                    fresh += 1
            tally.verdict_items[slot] += len(frame.items)
            tally.distinct[slot] += fresh
        elif frame.type == "alert":
            tally.alerts[slot] += 1
