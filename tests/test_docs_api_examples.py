"""The request/answer examples of docs/api.md, run in order against a real app: an integrator
copies them, so the status, headers and JSON they show must be what the server answers.

An example is an HTML comment `<!-- example [key=value ...] -->` followed by two ```http
blocks: the request (`METHOD PATH HTTP/1.1`, headers, blank line, body) and the answer
(`HTTP/1.1 STATUS REASON`, headers, blank line, JSON). Options: `records=N` sends N records
in a JSON array instead of the body shown (which abbreviates them); `select=a.0` compares
that part of the answer; `compare=fields` compares only the answer's keys, at every depth,
for examples whose figures are illustrative. `Authorization: Bearer <…>` is the test key.

Values that differ from run to run are compared by kind: alert ids by their pattern, times
as RFC 3339 UTC with milliseconds, `latency_ms` as a number, `seq` and `queue_depth` as
integers, `next_cursor` as string or null. Everything else must be equal, and a dict must
have exactly the keys shown: a field added to an answer fails here until the doc shows it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

_MARKER = re.compile(r"<!-- example\b([^>]*?)-->")
_BLOCK = re.compile(r"\s*```http\n(.*?)\n\s*```", re.DOTALL)
_ALERT_ID = re.compile(r"[0-9a-f]{21}")
_NULLABLE_OBJECTS = {"calibration"}
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass
class Example:
    line: int
    options: dict[str, str]
    method: str
    path: str
    request_headers: dict[str, str]
    body: str
    status: int
    headers: dict[str, str]
    answer: Any
    problems: list[str] = field(default_factory=list)


def _dedent(block: str) -> str:
    # Examples inside a list item are indented with it.
    lines = block.split("\n")
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return "\n".join(ln[indent:] for ln in lines)


def _message(block: str) -> tuple[str, dict[str, str], str]:
    head, _, body = _dedent(block).partition("\n\n")
    first, *header_lines = head.split("\n")
    headers = dict(ln.split(": ", 1) for ln in header_lines)
    return first, headers, body.strip()


def examples(text: str) -> list[Example]:
    found = []
    for marker in _MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        request = _BLOCK.match(text, marker.end())
        assert request, f"docs/api.md:{line}: an example marker not followed by a ```http block"
        answer = _BLOCK.match(text, request.end())
        assert answer, f"docs/api.md:{line}: an example's request not followed by its answer"
        start, request_headers, body = _message(request.group(1))
        method, path, _version = start.split(" ")
        status_line, headers, answer_body = _message(answer.group(1))
        options = dict(opt.split("=", 1) for opt in marker.group(1).split())
        found.append(
            Example(
                line,
                options,
                method,
                path,
                request_headers,
                body,
                int(status_line.split(" ")[1]),
                headers,
                json.loads(answer_body),
            )
        )
    return found


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _compare(shown: Any, real: Any, where: str, fields_only: bool, out: list[str]) -> None:
    key = where.rsplit(".", 1)[-1]
    if isinstance(shown, dict) and isinstance(real, dict):
        if set(shown) != set(real):
            out.append(f"{where or 'answer'}: keys shown {sorted(shown)}, answered {sorted(real)}")
        for k in shown.keys() & real.keys():
            _compare(shown[k], real[k], f"{where}.{k}", fields_only, out)
    elif isinstance(shown, list) and isinstance(real, list):
        if fields_only:
            # The shown item stands for every one answered.
            for i, item in enumerate(real):
                _compare(shown[0] if shown else None, item, f"{where}.{i}", True, out)
        elif len(shown) != len(real):
            out.append(f"{where}: {len(shown)} items shown, {len(real)} answered: {real}")
        else:
            for i, (a, b) in enumerate(zip(shown, real, strict=True)):
                _compare(a, b, f"{where}.{i}", False, out)
    elif fields_only:
        # Figures are illustrative, and a figure may be a documented "not yet" (null): a
        # precision without alerts, a calibration before the model is in use.
        nullable = not isinstance(shown, dict | list) or key in _NULLABLE_OBJECTS
        if real is None and not nullable:
            out.append(f"{where}: shown a {_kind(shown)}, answered null")
        elif real is not None and shown is not None and _kind(shown) != _kind(real):
            out.append(f"{where}: shown a {_kind(shown)}, answered {real!r}")
    elif isinstance(shown, str) and _ALERT_ID.fullmatch(shown) and key in ("id", "alert_id"):
        if not (isinstance(real, str) and _ALERT_ID.fullmatch(real)):
            out.append(f"{where}: shown an alert id, answered {real!r}")
    elif isinstance(shown, str) and _STAMP.fullmatch(shown):
        if not (isinstance(real, str) and _STAMP.fullmatch(real)):
            out.append(f"{where}: shown a UTC time with milliseconds, answered {real!r}")
    elif key == "latency_ms":
        if not (_kind(real) == "number" and real >= 0):
            out.append(f"{where}: answered {real!r}, not a duration")
    elif key in ("seq", "queue_depth"):
        if not (isinstance(real, int) and not isinstance(real, bool)) and real != shown:
            out.append(f"{where}: shown {shown!r}, answered {real!r}")
    elif key == "next_cursor":
        if _kind(real) != _kind(shown):
            out.append(f"{where}: shown {shown!r}, answered {real!r}")
    elif shown != real or _kind(shown) != _kind(real):
        out.append(f"{where}: shown {shown!r}, answered {real!r}")


def _select(answer: Any, path: str) -> Any:
    for part in path.split("."):
        answer = answer[int(part)] if isinstance(answer, list) else answer[part]
    return answer


async def run(client: TestClient, example: Example) -> list[str]:
    headers = dict(example.request_headers)
    if headers.get("Authorization", "").startswith("Bearer <"):
        headers["Authorization"] = f"Bearer {API_KEY}"
    body: str | bytes = example.body
    if "records" in example.options:
        count = int(example.options["records"])
        body = json.dumps([{"id": f"tx-{i}"} for i in range(count)])
    resp = await client.request(example.method, example.path, data=body or None, headers=headers)
    problems = []
    if resp.status != example.status:
        problems.append(f"status: shown {example.status}, answered {resp.status}")
    for name, value in example.headers.items():
        real = resp.headers.get(name)
        matches = real is not None and (
            real.split(";")[0] == value if name.lower() == "content-type" else real == value
        )
        if not matches:
            problems.append(f"header {name}: shown {value!r}, answered {real!r}")
    real_answer = json.loads(await resp.text())
    if "select" in example.options:
        try:
            real_answer = _select(real_answer, example.options["select"])
        except (KeyError, IndexError, TypeError):
            problems.append(f"no {example.options['select']} in the answer {real_answer}")
            real_answer = None
    if real_answer is not None or not problems:
        fields_only = example.options.get("compare") == "fields"
        _compare(example.answer, real_answer, "", fields_only, problems)
    return [f"docs/api.md:{example.line} {example.method} {example.path}: {p}" for p in problems]


def test_the_examples_are_found() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = examples(text)
    # Every marker parsed (a broken one would fail in examples()), and enough of them that a
    # change to the convention cannot silently leave the doc untested.
    assert len(found) == text.count("<!-- example") >= 10
    assert {e.status for e in found} >= {200, 400, 409, 413}


async def test_every_example_answers_as_shown(client: TestClient) -> None:
    problems: list[str] = []
    # In order: later examples build on earlier ones (the batch before the card-testing
    # verdict, that verdict's alert, the label on its transaction).
    for example in examples(DOC.read_text(encoding="utf-8")):
        problems += await run(client, example)
    assert not problems, "docs/api.md and the server disagree:\n" + "\n".join(problems)
