"""docs/api.md names exactly the Prometheus metrics `/metrics` serves: a dashboard or alert
rule written from the doc must not point at a metric that is gone, and a new one should be
findable."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_md_names_the_metrics_served() -> None:
    served = set(
        re.findall(r'"(fraudwatch_[a-z0-9_]+)"', (ROOT / "server/views/api.py").read_text())
    )
    assert len(served) > 10, f"found only {sorted(served)}: the pattern no longer matches"
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(fraudwatch_[a-z0-9_]+)", doc))
    assert served - documented == set(), "docs/api.md lacks these metrics"
    assert documented - served == set(), "docs/api.md names metrics /metrics does not serve"
