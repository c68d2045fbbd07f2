"""`POST /api/v1/admin/snapshot`: write the detector's state to disk now, for a backup."""

from __future__ import annotations

from aiohttp import web

from server.state import QUEUE, STATE_SAVER
from server.views.api import permitted
from server.views.responses import json_error, json_response


async def take_snapshot(request: web.Request) -> web.Response:
    """Answers once DATA_DIR/detector-state.msgpack holds every transaction scored before
    the request: `fraudwatch backup` asks for it before it copies the file."""
    who = await permitted(
        request,
        "backup",
        "A detector snapshot on request needs an API key with the 'backup' scope",
        changes=True,
    )
    if isinstance(who, web.Response):
        return who
    if request.app[QUEUE].closed:
        return json_error(
            503,
            "shutting_down",
            "The server is shutting down; it writes its detector state once it has stopped",
        )
    try:
        saved = await request.app[STATE_SAVER].save(live=True)
    except OSError as exc:
        return json_error(500, "snapshot_failed", f"The detector state could not be written: {exc}")
    return json_response(
        {
            "path": str(saved.path),
            "bytes": saved.size,
            "keys": saved.keys,
            "seconds": round(saved.seconds, 3),
            "written_at": saved.written_at,
        }
    )
