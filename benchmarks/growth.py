"""Growth over time of the figures a soak samples: what the soak benchmarks print and keep.

Used by benchmarks/dashboard_soak.py and benchmarks/server_memory.py.
"""

from __future__ import annotations

from typing import Any


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares growth per minute of (seconds, value) points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 60 * sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


def growth(series: dict[str, list[tuple[float, float]]], half: float) -> dict[str, Any]:
    """Per figure of `series` (its (seconds, value) samples): first, last and largest value,
    growth per minute over the run and from `half` seconds on (a figure that levels off
    shows a much smaller second-half rate)."""
    return {
        key: {
            "start": points[0][1],
            "end": points[-1][1],
            "max": max(v for _, v in points),
            "per_min": round(slope_per_min(points), 2),
            "per_min_second_half": round(slope_per_min([p for p in points if p[0] >= half]), 2),
        }
        for key, points in series.items()
    }
