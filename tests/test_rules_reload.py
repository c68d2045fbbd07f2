"""SIGHUP reloads the rules of a running `fraudwatch serve`, as `systemctl reload` sends it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.detection.rules import load_rules
from tests.conftest import API_KEY, tx
from tests.live_server import BASE, LiveServer, live_server, post_transactions
from tests.test_cli import get

RULE = (
    '[[rules]]\nname = "big"\nscore = 0.6\nseverity = "high"\n'
    'all = [{{ feature = "amount", op = ">=", value = {threshold} }}]\nreason = "big"\n'
)
BROKEN = RULE.format(threshold=100).replace('"high"', '"hgh"')


def _until(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def _version(server: LiveServer) -> str:
    return str(get(f"{server.url}/api/v1/rules", API_KEY)["rules_version"])


async def test_sighup_reloads_the_rules_and_a_broken_file_keeps_them(tmp_path: Path) -> None:
    rules = tmp_path / "fraud.toml"
    rules.write_text(RULE.format(threshold=100))
    first = load_rules(rules).version
    with live_server(tmp_path / "data", rules_path=rules) as server:
        assert _version(server) == first

        rules.write_text(RULE.format(threshold=500))
        second = load_rules(rules).version
        assert second != first
        server.proc.send_signal(signal.SIGHUP)
        _until(lambda: _version(server) == second, "the new rules")
        (verdict,) = await post_transactions(server.url, [tx("after-hup", amount=200, at=BASE)])
        assert verdict["rules_version"] == second
        assert verdict["reasons"] == []  # 200 was over the old threshold, not the new one
        # At INFO: a reload is the operator's own doing, not something to look into.
        assert (
            f"INFO server.rules_reload: rules reloaded by SIGHUP: {first} -> {second}"
        ) in server.output()

        rules.write_text(BROKEN)
        server.proc.send_signal(signal.SIGHUP)
        _until(lambda: "refused" in server.output(), "the refusal in the log")
        assert server.proc.poll() is None
        assert _version(server) == second
        # Where the path came from, as `serve` resolved it: the operator who sees the log
        # may not be the one who set it, nor know whether in a file, a unit's environment
        # or a flag.
        assert (
            "WARNING server.rules_reload: "
            f"rules reload by SIGHUP refused, the rules in use ({second}) are kept: "
            f"rules file {rules} (rules_path from environment FRAUDWATCH_RULES_PATH): "
            f"{rules}: rule 'big': severity must be one of low, medium, high, critical, "
            "got 'hgh'"
        ) in server.output()
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_without_rules_path_sighup_reloads_the_default_pack(tmp_path: Path) -> None:
    # The server does not die of it (SIGHUP's default action ends a process).
    with live_server(tmp_path / "data") as server:
        server.proc.send_signal(signal.SIGHUP)
        version = load_rules().version
        _until(lambda: f"-> {version}" in server.output(), "the reload in the log")
        assert server.proc.poll() is None
        assert _version(server) == version
