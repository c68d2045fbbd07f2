"""`make audit` (.ci/audit.py) against a real HTTP server that answers like PyPI's JSON API."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

VULN = {"id": "PYSEC-0000-1", "fixed_in": ["2.0"], "summary": "bad", "withdrawn": None}
WITHDRAWN = {"id": "PYSEC-0000-2", "fixed_in": [], "summary": "not real", "withdrawn": "2026"}
PROJECTS: dict[str, dict[str, Any]] = {
    # name: (latest, vulnerabilities of the latest); per-release pages are 404, as here.
    "clean": {"info": {"version": "1.0"}, "vulnerabilities": [WITHDRAWN]},
    "broken": {"info": {"version": "1.0"}, "vulnerabilities": [VULN]},
}


def load_audit() -> ModuleType:
    path = Path(__file__).parent.parent / ".ci" / "audit.py"
    spec = importlib.util.spec_from_file_location("ci_audit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_audit"] = module
    spec.loader.exec_module(module)
    return module


async def pypi(request: web.Request) -> web.Response:
    project = PROJECTS.get(request.match_info["name"])
    if project is None:
        raise web.HTTPNotFound()
    return web.json_response(project)


async def test_latest_releases_are_checked_and_older_ones_reported_unaudited() -> None:
    audit = load_audit()
    app = web.Application()
    app.router.add_get("/pypi/{name}/json", pypi)
    async with TestServer(app) as server:
        index = str(server.make_url("/pypi"))

        def check(name: str, version: str) -> Any:
            return audit.check(name, version, index=index)

        clean, broken, old, missing = await asyncio.gather(
            asyncio.to_thread(check, "clean", "1.0"),
            asyncio.to_thread(check, "broken", "1.0"),
            asyncio.to_thread(check, "broken", "0.9"),
            asyncio.to_thread(check, "nowhere", "1.0"),
        )
    assert (clean.status, clean.vulnerabilities) == ("ok", [])  # a withdrawn one is no finding
    assert broken.status == "vulnerable"
    assert [v["id"] for v in broken.vulnerabilities] == ["PYSEC-0000-1"]
    assert old.status == "unaudited" and "latest is 1.0" in old.detail
    assert (missing.status, missing.detail) == ("unaudited", "not on PyPI")


async def test_exit_status_fails_on_a_vulnerability_and_strictly_on_unaudited(
    monkeypatch: Any,
) -> None:
    audit = load_audit()
    app = web.Application()
    app.router.add_get("/pypi/{name}/json", pypi)
    async with TestServer(app) as server:
        index = str(server.make_url("/pypi"))
        # The installed set is the one boundary replaced: this venv's own is not what is tested.
        for installed, strict, want in (
            ([("clean", "1.0")], True, 0),
            ([("clean", "1.0"), ("broken", "1.0")], False, 1),
            ([("clean", "0.5")], False, 0),
            ([("clean", "0.5")], True, 1),
        ):
            monkeypatch.setattr(audit, "installed", lambda skip, i=installed: i)
            argv = ["--index", index] + (["--strict"] if strict else [])
            assert await asyncio.to_thread(audit.main, argv) == want
