"""The WebSocket hub: fans encoded messages out to subscribers without ever waiting on one.

`publish_*` are synchronous: each message is encoded once, wrapped once in a WebSocket frame,
and the same bytes are appended to every subscriber's queue; a per-connection writer task does
the sending. The writer hands everything queued to the socket's transport in one write (whole
frames, in order), so a burst of alerts costs each client one system call, not one per alert.
Overflow policy, per message kind:
- alerts and alert updates are never dropped for a connected client. A client whose queue
  has held more than `queue_max` of them for `stall_seconds` (or ever holds HARD_LIMIT_FACTOR
  times that) is disconnected (1013, try again later): it is not keeping up and memory must
  stay bounded. A burst alone does not count, since every writer lags while the loop runs.
  It loses nothing: it reconnects with `?since=<last seq>` and the store replays the rest.
- verdict batches are coalesced: only the newest `VERDICT_BACKLOG` wait; older ones are
  dropped and counted.
- stats: only the latest waits. The hub keeps the last RECENT_STATS of them (as
  `messages.stats_tick`), and the newest in full, for the hello of a client that connects
  later.
- presence (who is looking at which alert): only the latest per alert waits, so a client's
  backlog of them is bounded by the number of alerts being looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiohttp import WSCloseCode, web

from server import messages
from server.detection.verdict import Verdict
from server.stats import Stats
from server.store.base import AlertEvent

log = logging.getLogger(__name__)

VERDICT_BACKLOG = 8
HARD_LIMIT_FACTOR = 4
# How long a peer being closed may take nothing before the kernel drops its connection. One
# that stopped reading never takes the close frame, and aiohttp closes a transport only once
# its buffer is sent: without this, the connection, its buffers and its handler stay (a slow
# client cut off with 1013), or hold up the exit (shutdown).
SLOW_CLOSE_STALL_MS = 30_000
SHUTDOWN_STALL_MS = 1000
# The writer hands the transport at most this much per write, and waits while more than
# WRITE_HIGH_WATER is still unsent (asyncio's own default high-water mark): a client that
# does not read stops taking frames, its queue grows, and the overflow policy takes over.
WRITE_CHUNK = 64 * 1024
WRITE_HIGH_WATER = 64 * 1024
DRAIN_POLL_S = 0.005
# Stats ticks kept for a newcomer's hello (one a second, so six minutes): the header's
# sparklines span five minutes, and each point of "Alerts / min" sums the minute before it.
RECENT_STATS = 6 * 60


def text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final text frame (RFC 6455 §5.2), as a server sends it.

    The hub frames each message once and writes the same bytes to every socket, which is
    valid only because compression is off for every socket (`compress=False` in views/ws.py).
    """
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class Subscriber:
    """One connected client: its queues, its writer task, and where its replay stands."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        user: str,
        queue_max: int,
        session: str | None = None,
    ) -> None:
        self.ws = ws
        # Frames go straight to the connection's transport, below aiohttp's per-frame writer.
        # aiohttp writes its own frames (pings, pongs, close) to the same transport, each in
        # one synchronous write, so frames never interleave; the writer stops once the
        # socket is closed, so nothing follows a close frame.
        self.transport = transport
        self.user = user
        # The analyst session this socket belongs to (its id hash): logout closes it.
        self.session = session
        self.queue_max = queue_max
        self.wants_verdicts = False
        self.alerts: deque[bytes] = deque()
        self.verdicts: deque[bytes] = deque()
        self.stats: bytes | None = None
        self.presence: dict[str, bytes] = {}
        # The alert this client's user has open (the `viewing` message), if any.
        self.viewing: str | None = None
        self.direct: deque[bytes] = deque()
        # While replaying from the store, live events wait here so none is lost or doubled.
        self.held: list[AlertEvent] | None = []
        self.last_seq = 0
        self.behind_since: float | None = None
        self.sent = 0
        self.dropped_verdicts = 0
        self.closing = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.writer: asyncio.Task[None] | None = None

    def pending(self) -> int:
        return (
            len(self.alerts)
            + len(self.verdicts)
            + len(self.direct)
            + len(self.presence)
            + (self.stats is not None)
        )

    def wake(self) -> None:
        self._drained.clear()
        self._wake.set()

    async def drained(self) -> None:
        await self._drained.wait()

    def _take(self) -> list[bytes]:
        """Up to WRITE_CHUNK bytes of queued frames: replies first, then alerts, presence,
        verdicts, and the latest stats."""
        chunk: list[bytes] = []
        size = 0
        for queue in (self.direct, self.alerts):
            while queue and size < WRITE_CHUNK:
                frame = queue.popleft()
                chunk.append(frame)
                size += len(frame)
        while self.presence and size < WRITE_CHUNK:
            frame = self.presence.popitem()[1]  # any order: each is the latest for its alert
            chunk.append(frame)
            size += len(frame)
        while self.verdicts and size < WRITE_CHUNK:
            frame = self.verdicts.popleft()
            chunk.append(frame)
            size += len(frame)
        if self.stats is not None and size < WRITE_CHUNK:
            chunk.append(self.stats)
            self.stats = None
        return chunk

    def _writable(self) -> bool:
        return not (self.closing or self.ws.closed or self.transport.is_closing())

    async def run_writer(self) -> None:
        try:
            while not self.closing:
                await self._wake.wait()
                self._wake.clear()
                while self._writable():
                    chunk = self._take()
                    if not chunk:
                        break
                    self.transport.write(b"".join(chunk))
                    self.sent += len(chunk)
                    if self.behind_since is not None and len(self.alerts) <= self.queue_max:
                        self.behind_since = None
                    # Public asyncio API rather than aiohttp's private drain helper.
                    while self.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                        await asyncio.sleep(DRAIN_POLL_S)
                        if not self._writable():
                            return
                self._drained.set()
        except (ConnectionError, RuntimeError):
            # The peer went away mid-send; the handler's finally unregisters us.
            pass
        finally:
            self._drained.set()


class Hub:
    def __init__(self, stats: Stats, queue_max: int, stall_seconds: float = 5.0) -> None:
        self.stats = stats
        self.queue_max = queue_max
        self.stall_seconds = stall_seconds
        self.subscribers: set[Subscriber] = set()
        self.last_seq = 0
        self.recent_stats: deque[dict[str, Any]] = deque(maxlen=RECENT_STATS)
        # The newest of recent_stats with all its fields (`messages.stats_body`), or None.
        self.latest_stats: dict[str, Any] | None = None
        # alert id -> the clients looking at it (presence). Only in memory: it is about now.
        self._viewing: dict[str, set[Subscriber]] = {}
        # Closes running aside (slow or logged-out clients), with the socket each is closing.
        self._closing_tasks: dict[asyncio.Task[Any], web.WebSocketResponse] = {}

    def __len__(self) -> int:
        return len(self.subscribers)

    def subscribe(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        user: str,
        session: str | None = None,
    ) -> Subscriber:
        sub = Subscriber(ws, transport, user, self.queue_max, session)
        sub.writer = asyncio.create_task(sub.run_writer(), name=f"ws-writer-{user}")
        self.subscribers.add(sub)
        return sub

    async def unsubscribe(self, sub: Subscriber) -> None:
        self.set_viewing(sub, None)
        self.subscribers.discard(sub)
        sub.closing = True
        sub._wake.set()
        if sub.writer is not None:
            sub.writer.cancel()
            # wait() rather than await: our own cancellation must still propagate.
            await asyncio.wait([sub.writer])

    def send(self, sub: Subscriber, message: bytes) -> None:
        """A reply to one client (hello, pong, errors): an encoded message."""
        sub.direct.append(text_frame(message))
        sub.wake()

    def replay(self, sub: Subscriber, events: Sequence[AlertEvent]) -> None:
        for event in events:
            if event.seq > sub.last_seq:
                sub.direct.append(text_frame(messages.alert_event(event)))
                sub.last_seq = event.seq
        sub.wake()

    def go_live(self, sub: Subscriber) -> None:
        """End replay: queue what was held back, skipping anything replay already sent."""
        held, sub.held = sub.held or [], None
        self.replay(sub, held)

    def publish_events(self, events: Sequence[AlertEvent]) -> None:
        """Store listener: committed alert events, in seq order."""
        if not events:
            return
        self.last_seq = max(self.last_seq, events[-1].seq)
        frames = [(e.seq, text_frame(messages.alert_event(e))) for e in events]
        now = time.monotonic()
        for sub in list(self.subscribers):
            if sub.held is not None:
                sub.held.extend(events)
                continue
            for seq, frame in frames:
                if seq > sub.last_seq:
                    sub.alerts.append(frame)
                    sub.last_seq = seq
            backlog = len(sub.alerts)
            if backlog > self.queue_max:
                if sub.behind_since is None:
                    sub.behind_since = now
                if (
                    backlog > self.queue_max * HARD_LIMIT_FACTOR
                    or now - sub.behind_since > self.stall_seconds
                ):
                    self._disconnect_slow(sub)
                    continue
            sub.wake()

    def set_viewing(self, sub: Subscriber, alert_id: str | None) -> None:
        """`sub` now looks at `alert_id` (None: at none); everyone learns who looks at the
        alerts this changes. Synchronous, like every publish."""
        before = sub.viewing
        if before == alert_id:
            return
        sub.viewing = alert_id
        if before is not None:
            viewers = self._viewing.get(before)
            if viewers is not None:
                viewers.discard(sub)
                if not viewers:
                    del self._viewing[before]
            self._publish_presence(before)
        if alert_id is not None:
            self._viewing.setdefault(alert_id, set()).add(sub)
            self._publish_presence(alert_id)

    def viewers(self, alert_id: str) -> list[str]:
        """The users looking at an alert, each once (one may have several tabs)."""
        return sorted({s.user for s in self._viewing.get(alert_id, ())})

    def send_presence(self, sub: Subscriber) -> None:
        """Who looks at what right now, for a client that just connected."""
        for alert_id in self._viewing:
            sub.presence[alert_id] = text_frame(messages.presence(alert_id, self.viewers(alert_id)))
        sub.wake()

    def _publish_presence(self, alert_id: str) -> None:
        frame = text_frame(messages.presence(alert_id, self.viewers(alert_id)))
        for sub in self.subscribers:
            sub.presence[alert_id] = frame
            sub.wake()

    def publish_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        listeners = [s for s in self.subscribers if s.wants_verdicts and s.held is None]
        if not listeners:
            return
        frame = text_frame(messages.verdicts(verdicts))
        for sub in listeners:
            if len(sub.verdicts) >= VERDICT_BACKLOG:
                sub.verdicts.popleft()
                sub.dropped_verdicts += 1
                self.stats.ws_verdicts_dropped += 1
            sub.verdicts.append(frame)
            sub.wake()

    def publish_stats(self, snapshot: dict[str, Any]) -> None:
        body = messages.stats_body(snapshot)
        # Kept in the same synchronous step as the fan-out: a client that subscribes before
        # it gets this tick live, one that subscribes after gets it in its hello; never both.
        self.recent_stats.append(messages.stats_tick(body))
        self.latest_stats = body
        if not self.subscribers:
            return
        frame = text_frame(messages.stats(body))
        for sub in self.subscribers:
            sub.stats = frame
            sub.wake()

    def _disconnect_slow(self, sub: Subscriber) -> None:
        log.warning("disconnecting %s: %d alert messages behind", sub.user, len(sub.alerts))
        self.stats.ws_slow_disconnects += 1
        _drop_when_stalled(sub.ws, SLOW_CLOSE_STALL_MS)
        self.disconnect(sub, WSCloseCode.TRY_AGAIN_LATER, b"too slow; resume with since")

    def disconnect(self, sub: Subscriber, code: int, message: bytes) -> None:
        """Close one client's socket from outside its handler; its handler then unregisters."""
        self.set_viewing(sub, None)
        self.subscribers.discard(sub)
        sub.closing = True
        sub.alerts.clear()
        sub.verdicts.clear()
        if sub.writer is not None:
            sub.writer.cancel()
        # close() awaits the peer; run it aside so callers (publish) stay synchronous.
        task = asyncio.create_task(sub.ws.close(code=code, message=message))
        self._closing_tasks[task] = sub.ws
        task.add_done_callback(self._closing_tasks.pop)

    def close_session(self, session: str, code: int, message: bytes) -> int:
        """Close every socket of one analyst session (logout); returns how many."""
        return self._close_all([s for s in self.subscribers if s.session == session], code, message)

    def close_user(self, user: str, code: int, message: bytes) -> int:
        """Close every analyst socket of one user (removed, or given another role)."""
        subs = [s for s in self.subscribers if s.user == user and s.session is not None]
        return self._close_all(subs, code, message)

    def _close_all(self, subs: list[Subscriber], code: int, message: bytes) -> int:
        for sub in subs:
            self.disconnect(sub, code, message)
        return len(subs)

    async def close(self) -> None:
        """On shutdown: every socket closed with GOING_AWAY. A peer that has stopped reading
        is dropped by the kernel after SHUTDOWN_STALL_MS, so it cannot hold up the exit."""
        subs = list(self.subscribers)
        self.subscribers.clear()
        for ws in [s.ws for s in subs] + list(self._closing_tasks.values()):
            _drop_when_stalled(ws, SHUTDOWN_STALL_MS)
        for sub in subs:
            sub.closing = True
            if sub.writer is not None:
                sub.writer.cancel()
        await asyncio.gather(
            *(s.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for s in subs),
            *self._closing_tasks,
            return_exceptions=True,
        )


def _drop_when_stalled(ws: web.WebSocketResponse, after_ms: int) -> None:
    # TCP_USER_TIMEOUT also bounds how long buffered data may wait on a zero window; a peer
    # that reads and acknowledges is not affected.
    sock = ws.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, after_ms)
