"""Rules over HTTP: see which rules score transactions, and reload them without a restart."""

from __future__ import annotations

from aiohttp import web

from server import rules_reload
from server.detection.rules import RulesError, describe
from server.state import DETECTOR
from server.views.api import permitted
from server.views.responses import error_body, json_response


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
    previous = app[DETECTOR].rules_version
    outcome = await rules_reload.reload_rules(app, who.name)
    if isinstance(outcome, RulesError):
        return json_response(
            {
                **error_body(
                    "invalid_rules",
                    f"{len(outcome.errors)} problem(s) in {rules_reload.rules_origin(app)}; "
                    f"the rules in use ({previous}) are unchanged",
                ),
                "errors": outcome.errors,
                "rules_version": previous,
            },
            status=400,
        )
    return json_response({**_summary(app), "previous_version": previous})
