"""Every error code the HTTP API can answer is in the list that opens docs/api.md, the one
place an integrator looks up a code they were sent. Codes are added with the endpoints that
use them, and the list has fallen behind before (`invalid_rules`, `own_role`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Where an error's code is written: json_error(STATUS, "code", ...), error_body("code", ...),
# _invalid("code", ...) and the like in the validators, {"code": "..."} built by hand, and
# the status-to-code table of the catch-all error middleware.
_PATTERNS = [
    r'json_error\(\s*[^,()]+,\s*"([a-z_]+)"',
    r'error_body\(\s*"([a-z_]+)"',
    r'_invalid\(\s*"([a-z_]+)"',
    r'"code":\s*"([a-z_]+)"',
    r'\b\d{3}:\s*"([a-z_]+)"',
    r'[A-Z]\w*(?:Error|Problem|Refusal)\(\s*"([a-z_]+)"',
]


def _http_sources() -> list[Path]:
    server = ROOT / "server"
    return [*sorted((server / "views").glob("*.py")), server / "transactions.py", server / "app.py"]


def test_every_http_error_code_is_listed_in_api_md() -> None:
    used: set[str] = set()
    for path in _http_sources():
        text = path.read_text(encoding="utf-8")
        for pattern in _PATTERNS:
            used.update(re.findall(pattern, text))
    assert len(used) > 20, f"found only {sorted(used)}: the patterns no longer match the code"
    opening = (ROOT / "docs" / "api.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+)`", opening))
    missing = sorted(used - listed)
    assert not missing, f"docs/api.md's list of codes lacks {missing}"
