"""The detector's state on disk: read at start, written every `state_snapshot_interval`, at
shutdown, and on request (`POST /api/v1/admin/snapshot`, which `fraudwatch backup` sends so
that its copy is current). One writer at a time: every snapshot goes through the same
temporary file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from server import atomic_file
from server.detection import snapshot
from server.detection.detector import Detector
from server.detection.snapshot import Progress
from server.store.base import Store, utc_stamp

log = logging.getLogger(__name__)
# 500 keys a frame while the loop runs: about 10-40 ms of encoding at a time on this
# machine, within the latency a batch may take.
LIVE_CHUNK = 500
# At shutdown nothing else runs: bigger chunks, fewer frames. Still chunks: the keys of a
# frame are packed into Python lists first, several times the size of their bytes.
SHUTDOWN_CHUNK = 2000
WRITE_BYTES = 1 << 20
"""Frames handed to the writing thread at a time."""

T = TypeVar("T")


async def _finish(work: Awaitable[T]) -> T:
    """Await `work` (a thread's); if cancelled meanwhile, wait for it to end first, then
    raise: a thread cannot be stopped, and the lock must be held until it is done, so
    that the next writer never shares its temporary file."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


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
    order is not the store's (the naive pipeline), and snapshots then carry no marks.

    With a `store`, the label changes no snapshot can need any more are pruned from its log
    (server/label_changes.py) after each snapshot written: those every part of the one
    before it held. One snapshot of slack: a backup pairs the snapshot it asked for with
    the database it copies after it, while the periodic ones go on."""

    def __init__(
        self,
        detector: Detector,
        path: Path,
        progress: Progress | None = None,
        store: Store | None = None,
    ) -> None:
        self.detector = detector
        self.path = path
        self.progress = progress
        self.store = store
        self._lock = asyncio.Lock()
        self._prunable: int | None = None  # the last snapshot's lowest label mark

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
        loop's) a chunk of keys at a time, each `WRITE_BYTES` of frames written from a
        thread as they come, so that memory holds a few chunks, never the whole snapshot.
        `live`: the detection loop is running, so let it run between chunks rather than
        stop it for as long as a million accounts take (at shutdown it has stopped)."""
        async with self._lock:
            started = time.monotonic()
            detector = self.detector
            # At most the header's: marks only move forward while the frames are encoded.
            lowest = None if self.progress is None else self.progress.labels
            keys = snapshot.count_keys(detector.featurizer)
            writer = await _finish(asyncio.to_thread(atomic_file.Writer, self.path))
            try:
                batch: list[bytes] = []
                held = 0
                for frame in snapshot.encode_frames(
                    detector.featurizer,
                    chunk=LIVE_CHUNK if live else SHUTDOWN_CHUNK,
                    model=detector.model,
                    progress=self.progress,
                ):
                    batch.append(frame)
                    held += len(frame)
                    if held >= WRITE_BYTES:
                        await _finish(asyncio.to_thread(writer.write, batch))
                        batch, held = [], 0
                    elif live:
                        await asyncio.sleep(0)
                await _finish(asyncio.to_thread(writer.write, batch))
                size = await _finish(asyncio.to_thread(writer.commit))
            finally:
                await _finish(asyncio.to_thread(writer.close))
            saved = Saved(self.path, size, keys, time.monotonic() - started, utc_stamp())
            await self._prune(lowest)
        log.info("detector state saved to %s: %d bytes, %d keys", self.path, size, keys)
        return saved

    async def _prune(self, lowest: int | None) -> None:
        prunable, self._prunable = self._prunable, lowest
        if self.store is None or not prunable:
            return
        try:
            await self.store.prune_label_changes(prunable)
        except Exception as exc:
            # Pruned with the next snapshot instead; the log is only longer meanwhile.
            log.warning("label changes up to %d not pruned: %s", prunable, exc)

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
