"""Reloading the rules without a restart: one path for an admin's POST and for SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from server.detection.rules import RulesError, RuleSet, load_rules
from server.state import DETECTOR, RULES_RELOAD, SETTING_SOURCES, SETTINGS

log = logging.getLogger(__name__)


def rules_origin(app: web.Application) -> str:
    """What a reload reads and where that was set, for its refusal: `rules file
    /etc/fw/fraud.toml (rules_path from environment FRAUDWATCH_RULES_PATH)`. The operator
    who sees the refusal may not be the one who set the path, nor know in which layer."""
    path = app[SETTINGS].rules_path
    if path is None:
        return "the default pack (rules_path is not set)"
    kind = "rules directory" if path.is_dir() else "rules file"
    where = app[SETTING_SOURCES].get("rules_path")
    return f"{kind} {path} (rules_path from {where or 'the settings'})"


async def reload_rules(app: web.Application, by: str) -> RuleSet | RulesError:
    """Re-read the `rules_path` files and score with them from the next batch on; on any
    error the rules in use stay as they were. `by` says who asked, for the log."""
    # One at a time, in the order asked: two overlapping reloads (a SIGHUP during an
    # admin's POST) each read the files in a thread, and the one to finish last would win,
    # which could be the one that read the older file.
    async with app[RULES_RELOAD]:
        detector = app[DETECTOR]
        previous = detector.rules_version
        try:
            # Reading and compiling happen off the event loop; the swap itself is one
            # assignment between two batches, so a batch is scored by one rule set from
            # start to end.
            ruleset = await asyncio.to_thread(load_rules, app[SETTINGS].rules_path)
        except RulesError as exc:
            log.warning(
                "rules reload by %s refused, the rules in use (%s) are kept: %s: %s",
                by,
                previous,
                rules_origin(app),
                "; ".join(exc.errors),
            )
            return exc
        detector.use_rules(ruleset)
        log.info("rules reloaded by %s: %s -> %s", by, previous, ruleset.version)
        return ruleset


async def reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx entry: SIGHUP (`systemctl reload`, `kill -HUP`) reloads the rules.

    Added by the command that runs the server, not by create_app: a process's signals
    belong to it, and an app built in a test must not take the test runner's SIGHUP.
    """
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[RuleSet | RulesError]] = set()

    def hangup() -> None:
        # The handler runs on the loop and must not block it: the reload is a task, kept
        # referenced until it ends (the loop holds only a weak reference to a task).
        task = loop.create_task(reload_rules(app, "SIGHUP"))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in list(pending):
            task.cancel()
