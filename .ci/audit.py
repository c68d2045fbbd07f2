"""Check every installed distribution against the vulnerability data PyPI publishes.

Why not pip-audit: pip-audit asks PyPI for one release at a time
(`/pypi/<name>/<version>/json`) or asks OSV (api.osv.dev). The machines this project is
built and tested on reach the package registries only, and there the per-release endpoint
answers 404 and OSV is unreachable, so pip-audit reported every dependency as "could not be
audited" — and then "No known vulnerabilities found", which proved nothing.

What this does instead: the project endpoint (`/pypi/<name>/json`), which is reachable,
lists the known vulnerabilities of the project's latest release (PyPI takes them from the
OSV database). A distribution installed at its latest release is therefore checked for real;
`make install` on a fresh machine installs the latest release that fits, so that is nearly
all of them. One installed at an older release is asked about at its own release first and,
when that cannot be answered, reported as unaudited (with --strict, that fails too).

Exit status: 1 when any installed release has a known, not withdrawn vulnerability (or, with
--strict, when any could not be checked); 0 otherwise. Stdlib only, so it runs in any venv.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata

PYPI = "https://pypi.org/pypi"
TIMEOUT_S = 30


@dataclass
class Finding:
    name: str
    version: str
    status: str  # "ok", "vulnerable", "unaudited"
    detail: str = ""
    vulnerabilities: list[dict[str, object]] = field(default_factory=list)


def _get(url: str) -> dict[str, object] | None:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return data if isinstance(data, dict) else None


def _live(vulnerabilities: object) -> list[dict[str, object]]:
    if not isinstance(vulnerabilities, list):
        return []
    return [v for v in vulnerabilities if isinstance(v, dict) and not v.get("withdrawn")]


def check(name: str, version: str, index: str = PYPI) -> Finding:
    try:
        release = _get(f"{index}/{name}/{version}/json")
        if release is not None and "vulnerabilities" in release:
            found = _live(release["vulnerabilities"])
            return Finding(name, version, "vulnerable" if found else "ok", "release", found)
        project = _get(f"{index}/{name}/json")
    except (OSError, ValueError) as exc:
        return Finding(name, version, "unaudited", f"PyPI did not answer: {exc}")
    if project is None:
        return Finding(name, version, "unaudited", "not on PyPI")
    info = project.get("info")
    latest = info.get("version") if isinstance(info, dict) else None
    if latest != version:
        return Finding(name, version, "unaudited", f"latest is {latest}; older releases unknown")
    found = _live(project.get("vulnerabilities"))
    return Finding(name, version, "vulnerable" if found else "ok", "latest", found)


def installed(skip: set[str]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in skip:
            seen[name.lower()] = dist.version
    return sorted(seen.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail when any is unaudited")
    parser.add_argument(
        "--skip", action="append", default=["fraudwatch"], help="a distribution to leave out"
    )
    parser.add_argument("--index", default=PYPI, help="PyPI's JSON API (default: %(default)s)")
    args = parser.parse_args(argv)
    dists = installed({name.lower() for name in args.skip})
    with ThreadPoolExecutor(max_workers=8) as pool:
        findings = list(pool.map(lambda d: check(d[0], d[1], args.index), dists))
    for f in findings:
        if f.status != "ok":
            print(f"{f.status:10} {f.name} {f.version}: {f.detail}")
        for v in f.vulnerabilities:
            versions = v.get("fixed_in")
            fixed = ", ".join(map(str, versions)) if isinstance(versions, list) else ""
            about = str(v.get("summary") or v.get("details") or "").strip().splitlines()
            first = (about or [""])[0][:100]
            print(f"           {v.get('id')} (fixed in: {fixed or 'none listed'}): {first}")
    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "vulnerable", "unaudited")}
    print(
        f"{len(findings)} distributions: {counts['ok']} checked clean, "
        f"{counts['vulnerable']} vulnerable, {counts['unaudited']} unaudited"
    )
    if counts["vulnerable"] or (args.strict and counts["unaudited"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
