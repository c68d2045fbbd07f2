"""Fraud that does not stand still: tactics that change and attacks that come in waves.

Off by default (`Simulator(drift=False)`). With it on, every fraud scenario's tactic moves to
a variant at 1-2 change points spread over the stream's first DRIFT_DAYS, as fraudsters
move on when a tactic starts getting caught, and every scenario's share of the episodes
(decoys' too) rises and falls over days, as attacks come in campaigns. docs/simulator.md
("Drift") says what changes and why, scenario by scenario.

The schedule is a function of the seed and the stream's start alone, drawn from an RNG of
its own: the stream's RNG is not touched here, so a Simulator without drift makes exactly
the stream it made before drift existed.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

SECOND = 1_000_000
DAY = 86_400 * SECOND
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# The change points fall within these days from the stream's start: after the first few
# days (a stream starts with the tactics everyone knows) and before its last ones (a
# variant that appears on the last day is not a drift anyone can see in a month). With two
# change points, one falls in each half.
DRIFT_DAYS = 30.0
FIRST_CHANGE_DAY = 3.0
LAST_CHANGE_DAY = 27.0
# A scenario's share of the episodes is its weight times exp(WAVE_AMPLITUDES · sin(2π t /
# period + phase)): a campaign of a week or two on a slower swell of a few weeks. The
# exponent stays within ±1, so a scenario runs between 0.37 and 2.7 times its usual share.
WAVE_AMPLITUDES = (0.6, 0.4)
WAVE_PERIOD_DAYS = ((5.0, 12.0), (15.0, 40.0))


@dataclass(frozen=True, slots=True)
class Wave:
    """One scenario's slow variation: periods in days, phases in radians."""

    periods_days: tuple[float, ...]
    phases: tuple[float, ...]

    def log_multiplier(self, days: float) -> float:
        return sum(
            amplitude * math.sin(2 * math.pi * days / period + phase)
            for amplitude, period, phase in zip(
                WAVE_AMPLITUDES, self.periods_days, self.phases, strict=True
            )
        )


class Drift:
    """The seeded schedule: when each scenario's tactic changes, and its waves.

    `scenarios` are (name, number of tactic variants) in a fixed order: fraud scenarios
    with one or two variants, decoys with none (they only come in waves).
    """

    def __init__(self, seed: int, start_us: int, scenarios: Sequence[tuple[str, int]]) -> None:
        # A string seed is hashed with SHA-512 by `random`: the same on every run and
        # machine, whatever PYTHONHASHSEED.
        rng = random.Random(f"fraudwatch-drift-{seed}")
        self.start_us = start_us
        self.change_points: dict[str, tuple[int, ...]] = {}
        self.waves: dict[str, Wave] = {}
        for name, variants in scenarios:
            if variants:
                self.change_points[name] = self._changes(rng, start_us, rng.randint(1, variants))
            self.waves[name] = Wave(
                tuple(rng.uniform(lo, hi) for lo, hi in WAVE_PERIOD_DAYS),
                tuple(rng.uniform(0, 2 * math.pi) for _ in WAVE_PERIOD_DAYS),
            )

    @staticmethod
    def _changes(rng: random.Random, start_us: int, count: int) -> tuple[int, ...]:
        span = (LAST_CHANGE_DAY - FIRST_CHANGE_DAY) / count
        days = [FIRST_CHANGE_DAY + i * span + rng.random() * span for i in range(count)]
        return tuple(start_us + int(day * DAY) for day in days)

    def change_moments(self) -> dict[str, list[dt.datetime]]:
        """`change_points` as UTC datetimes: when each fraud scenario's tactic changes."""
        return {
            name: [_EPOCH + dt.timedelta(microseconds=t) for t in points]
            for name, points in self.change_points.items()
        }

    def stage(self, name: str, at_us: int) -> int:
        """Which tactic `name` uses for an episode begun at `at_us`: 0 the original, 1 the
        variant after its first change point, 2 after its second."""
        return bisect.bisect_right(self.change_points.get(name, ()), at_us)

    def multiplier(self, name: str, at_us: int) -> float:
        """How much more (or less) often than usual episodes of `name` begin at `at_us`."""
        wave = self.waves.get(name)
        if wave is None:
            return 1.0
        return math.exp(wave.log_multiplier((at_us - self.start_us) / DAY))
