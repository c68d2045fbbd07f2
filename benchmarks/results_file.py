"""Where a benchmark keeps its figures: benchmarks/results/<kind>-<UTC time>.json
(git-ignored), one file a run, so that docs can name the run each figure comes from."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"


def write_results(kind: str, figures: dict[str, Any]) -> Path:
    """Write `figures` as benchmarks/results/`kind`-<UTC time>.json; returns the path,
    relative to the repository. The file names the checkout it measured (`commit`, first)
    unless `figures` already does."""
    if "commit" not in figures:
        figures = {"commit": commit(), **figures}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path.relative_to(ROOT)


def commit() -> str:
    """The checkout a run measured (`git describe --always --dirty`): a figure names it."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()
