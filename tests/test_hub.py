"""The hub's fan-out policy: encode once, never wait on a client, cut off who stays behind."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import WSCloseCode

from server.detection.verdict import Verdict
from server.hub import RECENT_STATS, VERDICT_BACKLOG, Hub, text_frame
from server.stats import Stats
from server.store.base import Alert, AlertEvent


def parse_frames(data: bytes) -> list[bytes]:
    """The payloads of unmasked text frames, as a browser would read them off the wire."""
    frames, i = [], 0
    while i < len(data):
        assert data[i] == 0x81, "a final, uncompressed text frame"
        n, i = data[i + 1], i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append(data[i : i + n])
        i += n
    return frames


class RecordingSocket:
    """Stands in for aiohttp's WebSocketResponse and its asyncio transport (boundaries we
    do not own). A stalled one is a peer that stopped reading: everything written stays in
    the transport's buffer, far above the high-water mark."""

    def __init__(self, stalled: bool = False) -> None:
        self.writes: list[bytes] = []
        self.stalled = stalled
        self.closed = False
        self.closed_with: int | None = None

    @property
    def frames(self) -> list[bytes]:
        return [f for data in self.writes for f in parse_frames(data)]

    # The transport.
    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 1 << 30 if self.stalled and self.writes else 0

    def is_closing(self) -> bool:
        return self.closed

    # The WebSocketResponse.
    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = True
        self.closed_with = code
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket behind this one


def event(seq: int) -> AlertEvent:
    alert = Alert(
        id=f"al-{seq}",
        status="open",
        severity="high",
        score=0.7,
        decision="review",
        reasons=[],
        transaction=msgspec.Raw(b'{"id":"t"}'),
        transaction_id="t",
        account_id="a",
        rules_version="v",
        owner=None,
        disposition=None,
        note=None,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    return AlertEvent(seq=seq, type="alert", alert=alert)


def verdict(i: int) -> Verdict:
    return Verdict(f"t-{i}", 0.1, "allow", [], None, "v", 1.0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def live(hub: Hub, ws: RecordingSocket, verdicts: bool = False) -> Any:
    sub = hub.subscribe(ws, ws, "u")  # type: ignore[arg-type]
    sub.wants_verdicts = verdicts
    hub.go_live(sub)
    return sub


async def test_each_event_is_encoded_and_framed_once_for_all_subscribers() -> None:
    hub = Hub(Stats(), queue_max=100)
    sockets = [RecordingSocket() for _ in range(3)]
    subs = [await live(hub, ws) for ws in sockets]
    hub.publish_events([event(1), event(2)])
    # The very same bytes objects wait for everyone: encoded once, not per client.
    assert all(sub.alerts[0] is subs[0].alerts[0] for sub in subs)
    await settle()
    assert all(len(ws.frames) == 2 for ws in sockets)
    assert msgspec.json.decode(sockets[0].frames[1])["seq"] == 2


async def test_a_burst_reaches_each_client_in_one_write() -> None:
    hub = Hub(Stats(), queue_max=100)
    ws = RecordingSocket()
    await live(hub, ws)
    hub.publish_events([event(seq) for seq in range(1, 21)])
    hub.publish_stats({"tx_per_s": 1})
    await settle()
    assert len(ws.writes) == 1
    decoded = [msgspec.json.decode(f) for f in ws.frames]
    assert [m["seq"] for m in decoded[:-1]] == list(range(1, 21))
    assert decoded[-1]["type"] == "stats"


def test_frames_carry_any_payload_length() -> None:
    for n in (0, 125, 126, 65535, 65536, 70000):
        payload = b"x" * n
        assert parse_frames(text_frame(payload)) == [payload]


async def test_nothing_is_written_after_the_socket_closed() -> None:
    hub = Hub(Stats(), queue_max=100)
    ws = RecordingSocket()
    await live(hub, ws)
    ws.closed = True
    hub.publish_events([event(1)])
    await settle()
    assert ws.writes == []


async def test_a_client_that_stays_behind_is_cut_off_and_others_get_everything() -> None:
    stats = Stats()
    hub = Hub(stats, queue_max=10, stall_seconds=0.05)
    healthy, stalled = RecordingSocket(), RecordingSocket(stalled=True)
    await live(hub, healthy)
    await live(hub, stalled)
    for seq in range(1, 31):
        hub.publish_events([event(seq)])  # synchronous: returns without waiting on anyone
        await asyncio.sleep(0.005)  # the loop yields between batches (store writes)
    await settle()
    assert stalled.closed_with == WSCloseCode.TRY_AGAIN_LATER
    assert stats.ws_slow_disconnects == 1
    assert len(hub) == 1
    assert [msgspec.json.decode(f)["seq"] for f in healthy.frames] == list(range(1, 31))


async def test_a_burst_bigger_than_the_queue_does_not_cut_off_healthy_clients() -> None:
    stats = Stats()
    hub = Hub(stats, queue_max=10)
    sockets = [RecordingSocket() for _ in range(3)]
    for ws in sockets:
        await live(hub, ws)
    hub.publish_events([event(seq) for seq in range(1, 26)])  # one batch of 25 alerts
    await settle()
    assert stats.ws_slow_disconnects == 0
    assert all(len(ws.frames) == 25 for ws in sockets)


async def test_a_runaway_backlog_is_cut_off_at_once() -> None:
    stats = Stats()
    hub = Hub(stats, queue_max=10, stall_seconds=60)
    ws = RecordingSocket(stalled=True)
    await live(hub, ws)
    hub.publish_events([event(seq) for seq in range(1, 42)])
    await settle()
    assert ws.closed_with == WSCloseCode.TRY_AGAIN_LATER


async def test_alerts_are_never_dropped_below_the_limit() -> None:
    hub = Hub(Stats(), queue_max=50, stall_seconds=60)
    ws = RecordingSocket(stalled=True)
    sub = await live(hub, ws)
    for seq in range(1, 151):
        hub.publish_events([event(seq)])
        await asyncio.sleep(0)  # the writer gets a turn, and stalls on the first write
    await settle()
    assert ws.closed_with is None
    written = [msgspec.json.decode(f)["seq"] for f in ws.frames]
    queued = [msgspec.json.decode(parse_frames(f)[0])["seq"] for f in sub.alerts]
    assert written and queued
    assert written + queued == list(range(1, 151))  # in the buffer or queued, none lost


async def test_verdicts_for_a_slow_client_are_coalesced_and_counted() -> None:
    stats = Stats()
    hub = Hub(stats, queue_max=10)
    ws = RecordingSocket(stalled=True)
    sub = await live(hub, ws, verdicts=True)
    hub.publish_verdicts([verdict(-1)])
    await settle()  # written; the writer now waits on the stalled peer
    for i in range(VERDICT_BACKLOG + 20):
        hub.publish_verdicts([verdict(i)])
    await settle()
    assert len(sub.verdicts) <= VERDICT_BACKLOG
    assert stats.ws_verdicts_dropped >= 19
    assert ws.closed_with is None  # verdicts alone never get a client cut off
    newest = msgspec.json.decode(parse_frames(sub.verdicts[-1])[0])["items"][0]["transaction_id"]
    assert newest == f"t-{VERDICT_BACKLOG + 19}"


async def test_only_the_latest_stats_wait() -> None:
    hub = Hub(Stats(), queue_max=10)
    ws = RecordingSocket(stalled=True)
    sub = await live(hub, ws)
    for i in range(5):
        hub.publish_stats({"tx_per_s": i})
    assert msgspec.json.decode(parse_frames(sub.stats or text_frame(b"{}"))[0])["tx_per_s"] == 4


async def test_stats_are_kept_for_newcomers_even_with_nobody_connected() -> None:
    hub = Hub(Stats(), queue_max=10)
    for i in range(RECENT_STATS + 5):
        hub.publish_stats({"tx_per_s": float(i), "alerts": i, "open_alerts": 3})
    kept = list(hub.recent_stats)
    assert len(kept) == RECENT_STATS
    assert [t["alerts"] for t in kept] == list(range(5, RECENT_STATS + 5))
    assert set(kept[0]) == {"server_time", "tx_per_s", "alerts"}
    # The newest tick is also kept whole, for the counters a newcomer shows at once.
    assert hub.latest_stats == {**kept[-1], "open_alerts": 3}
    # A tick's server_time is the one its stats message carried.
    ws = RecordingSocket(stalled=True)
    sub = await live(hub, ws)
    hub.publish_stats({"tx_per_s": 1.0, "alerts": 1})
    sent = msgspec.json.decode(parse_frames(sub.stats or text_frame(b"{}"))[0])
    assert sent["server_time"] == hub.recent_stats[-1]["server_time"]


async def test_replay_then_live_has_no_gap_and_no_duplicate() -> None:
    hub = Hub(Stats(), queue_max=100)
    ws = RecordingSocket()
    sub = hub.subscribe(ws, ws, "u")  # type: ignore[arg-type]
    sub.last_seq = 2
    hub.publish_events([event(4), event(5)])  # live while replay runs: held back
    hub.replay(sub, [event(3), event(4)])  # the store had up to 4 committed
    hub.go_live(sub)
    hub.publish_events([event(6)])
    await settle()
    assert [msgspec.json.decode(f)["seq"] for f in ws.frames] == [3, 4, 5, 6]


async def test_close_says_going_away() -> None:
    hub = Hub(Stats(), queue_max=10)
    sockets = [RecordingSocket(), RecordingSocket(stalled=True)]
    for ws in sockets:
        await live(hub, ws)
    await hub.close()
    assert [ws.closed_with for ws in sockets] == [WSCloseCode.GOING_AWAY] * 2
