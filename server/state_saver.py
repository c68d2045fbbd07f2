"""The detector's state on disk: read at start, written every `state_snapshot_interval`, at
shutdown, and on request (`POST /api/v1/admin/snapshot`, which `fraudwatch backup` sends so
that its copy is current). One writer at a time: every snapshot goes through the same
temporary file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from server.detection import snapshot
from server.detection.detector import Detector
from server.detection.snapshot import Progress
from server.store.base import utc_stamp

log = logging.getLogger(__name__)
# 500 keys a frame while the loop runs: about 10-40 ms of encoding at a time on this
# machine, within the latency a batch may take.
LIVE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Saved:
    """A snapshot written: where, its size, the keys in it, how long it took, when."""

    path: Path
    size: int
    keys: int
    seconds: float
    written_at: str


class StateSaver:
    """`progress`: how far through the store the state has got, which the detection loop
    moves and each snapshot records (server/state_replay.py); None when the loop's scoring
    order is not the store's (the naive pipeline), and snapshots then carry no marks."""

    def __init__(self, detector: Detector, path: Path, progress: Progress | None = None) -> None:
        self.detector = detector
        self.path = path
        self.progress = progress
        self._lock = asyncio.Lock()

    def restore(self) -> snapshot.Restored | None:
        """Load the snapshot at `path`, if any; a bad one is set aside and logged. None when
        no snapshot was restored (none, or a bad one): the state is empty."""
        detector, path = self.detector, self.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._set_aside(exc)
            return None
        try:
            restored = snapshot.restore(detector.featurizer, data, detector.model)
        except snapshot.SnapshotError as exc:
            self._set_aside(exc)
            return None
        model = detector.model
        log.info(
            "detector state restored from %s: %d keys%s",
            path,
            restored.keys,
            "" if model is None else f", {len(model.remembered)} transactions awaiting labels",
        )
        return restored

    def _set_aside(self, exc: Exception) -> None:
        # Starting with empty state is safe (detection is only less informed for a while);
        # refusing to start over it would not be. The bad file is kept.
        path = self.path
        log.error("detector state in %s not restored (%s); starting empty", path, exc)
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".bad"))

    async def save(self, *, live: bool = False) -> Saved:
        """Write a snapshot now; raises OSError. Encoded on the loop (the state is the
        loop's), written from a thread. `live`: the detection loop is running, so encode a
        chunk of keys at a time and let it run between chunks rather than stop it for as
        long as a million accounts take."""
        async with self._lock:
            started = time.monotonic()
            detector = self.detector
            keys = snapshot.count_keys(detector.featurizer)
            frames: list[bytes] = []
            for frame in snapshot.encode_frames(
                detector.featurizer,
                chunk=LIVE_CHUNK if live else 1 << 30,
                model=detector.model,
                progress=self.progress,
            ):
                frames.append(frame)
                if live:
                    await asyncio.sleep(0)
            write = asyncio.ensure_future(
                asyncio.to_thread(snapshot.write_bytes, frames, self.path)
            )
            try:
                size = await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread cannot be stopped: the lock is held until it is done, so that
                # the next writer never shares its temporary file.
                with contextlib.suppress(Exception):
                    await write
                raise
            saved = Saved(self.path, size, keys, time.monotonic() - started, utc_stamp())
        log.info("detector state saved to %s: %d bytes, %d keys", self.path, size, keys)
        return saved

    async def save_logged(self, *, live: bool = False) -> None:
        """save(), a failure logged: for the periodic and the shutdown snapshots."""
        try:
            await self.save(live=live)
        except OSError as exc:
            log.error("detector state not saved to %s: %s", self.path, exc)

    async def every(self, interval: float) -> None:
        """A snapshot every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.save_logged(live=True)
