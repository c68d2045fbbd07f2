"""A tiny progress display: a redrawn bar on a terminal, a line now and then otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
TTY_INTERVAL_S = 0.2
PLAIN_INTERVAL_S = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Rows done, rate and ETA for one phase of work.

    The caller reports every few thousand rows (`update`); drawing is throttled so the cost
    stays off the hot loop. Completion comes from `total`, or from `fraction` (a callable,
    e.g. the share of the file read) when the number of rows is not known in advance.
    Log files and pipes get a plain line every `PLAIN_INTERVAL_S` instead of a bar, since
    carriage returns make them unreadable.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        fraction: Callable[[], float] | None = None,
        stream: TextIO | None = None,
        unit: str = "rows",
        interval: float | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._fraction = fraction
        self._stream = sys.stderr if stream is None else stream
        self._tty = self._stream.isatty()
        if interval is None:
            interval = TTY_INTERVAL_S if self._tty else PLAIN_INTERVAL_S
        self._interval = interval
        self._start = time.monotonic()
        self._next = self._start + self._interval
        self.done = 0
        self._drawn = False

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._draw(now)

    def close(self) -> None:
        """Draw the final state (on a terminal: and end the line)."""
        if self._tty:
            self._draw(time.monotonic(), final=True)
            self._stream.write("\n")
            self._stream.flush()
        elif self._drawn:
            self._draw(time.monotonic(), final=True)

    def abandon(self) -> None:
        """Stop without a final state (the work failed): end a bar's line, so that what
        is printed next starts on its own."""
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def _share(self) -> float | None:
        if self.total:
            return min(1.0, self.done / self.total)
        if self._fraction is not None:
            return self._fraction()
        return None

    def text(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        share = self._share()
        count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
        parts = [f"{self.label}:", f"{count} {self.unit}", f"{rate:,.0f}/s"]
        if self._tty and share is not None:
            filled = int(share * BAR_WIDTH)
            parts.insert(1, "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        if share is not None:
            parts.append(f"{share:.0%}")
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif share is not None and share > 0:
            parts.append(f"ETA {_duration(elapsed * (1 - share) / share)}")
        return " ".join(parts)

    def _draw(self, now: float, final: bool = False) -> None:
        self._drawn = True
        line = self.text(now, final)
        if self._tty:
            # Pad to clear what a longer previous line left behind.
            self._stream.write("\r" + line.ljust(79))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
