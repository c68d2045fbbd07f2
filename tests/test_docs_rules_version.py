"""The rules version quoted in the README and the docs is the default pack's: it changes
with every edit of the pack, and an example naming an older one reads as a different rule
set from the one a reader's server reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.detection.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md", "docs/rules.md"])
def test_quoted_rules_versions_are_the_default_packs(doc: str) -> None:
    quoted = set(re.findall(r"rules-\d+\+[0-9a-f]{8}", (ROOT / doc).read_text(encoding="utf-8")))
    assert quoted, f"{doc} quotes no rules version: the test would pass on nothing"
    assert quoted == {load_rules().version}
