"""Rules over HTTP: see which rules score transactions, and reload them without a restart."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from server.detection.rules import RulesError, describe, load_rules
from server.state import DETECTOR, SETTINGS
from server.views.api import permitted
from server.views.responses import error_body, json_response

log = logging.getLogger(__name__)


def _summary(app: web.Application) -> dict[str, object]:
    ruleset = app[DETECTOR].ruleset
    return {
        "rules_version": ruleset.version,
        "files": list(ruleset.files),
        "rules": describe(ruleset.rules),
        # The [settings] in force, defaults included: what bands severities and sizes a
        # "small" amount, so an operator can see a reload took without sending a transaction.
        "settings": {
            "small_amount": ruleset.small_amount,
            "high_loss": ruleset.bands.high,
            "critical_loss": ruleset.bands.critical,
        },
        "lists": [
            {
                "name": lst.name,
                "action": lst.action,
                "field": lst.field,
                "entries": len(lst.entries),
            }
            for lst in ruleset.lists
        ],
    }


async def get_rules(request: web.Request) -> web.Response:
    who = await permitted(request, "read", "Reading the rules needs the 'read' permission")
    if isinstance(who, web.Response):
        return who
    return json_response(_summary(request.app))


async def reload_rules(request: web.Request) -> web.Response:
    """Re-read the `rules_path` files; on any error the rules in use stay as they were."""
    who = await permitted(request, "admin", "Only admins can reload the rules", changes=True)
    if isinstance(who, web.Response):
        return who
    app = request.app
    detector = app[DETECTOR]
    previous = detector.rules_version
    try:
        # Reading and compiling happen off the event loop; the swap itself is one assignment
        # between two batches, so a batch is scored by one rule set from start to end.
        ruleset = await asyncio.to_thread(load_rules, app[SETTINGS].rules_path)
    except RulesError as exc:
        log.warning("rules reload by %s refused: %s", who.name, "; ".join(exc.errors))
        return json_response(
            {
                **error_body(
                    "invalid_rules",
                    f"{len(exc.errors)} problem(s) in the rule files; the rules in use "
                    f"({previous}) are unchanged",
                ),
                "errors": exc.errors,
                "rules_version": previous,
            },
            status=400,
        )
    detector.use_rules(ruleset)
    log.warning("rules reloaded by %s: %s -> %s", who.name, previous, ruleset.version)
    return json_response({**_summary(app), "previous_version": previous})
