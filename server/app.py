"""The application factory: wires the parts; all I/O starts in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from server import naive
from server.auth import Authenticator, load_or_create_secret
from server.config import Settings
from server.detection.detector import Detector
from server.detection.model import ModelSlot
from server.detection.rules import load_rules
from server.detection.snapshot import Progress
from server.detection.verdict import Verdict
from server.feeds.simulator import SimulatorFeed, truth_labels
from server.hub import Hub
from server.label_changes import LabelChanges
from server.learning import Trainer, apply_labels, rebuild_scorecard
from server.pipeline import DetectionLoop, IntakeClosed, TxQueue
from server.resources import web_dir
from server.retention import run_retention
from server.scorecard import Scorecard
from server.state import (
    AUTH,
    DETECTOR,
    HUB,
    LABEL_CHANGES,
    QUEUE,
    RULES_RELOAD,
    SCORECARD,
    SETTING_SOURCES,
    SETTINGS,
    STATE_SAVER,
    STATS,
    STORE,
    TRAINER,
)
from server.state_replay import replay_stored
from server.state_saver import StateSaver
from server.stats import Stats
from server.store.base import StoredRecord
from server.store.errors import StoredRowDamaged, StoreUnavailable
from server.store.sqlite import SqliteStore
from server.transactions import Transaction
from server.views import admin, api, labels, pages, rules, snapshots, triage, ws
from server.views.responses import error_body, json_response
from simulator import Labeled

log = logging.getLogger(__name__)

SESSION_MIDDLEWARE = web.AppKey("session_middleware", object)
STATIC_DIR = web_dir("static")
SIMULATOR_FEED = web.AppKey("simulator_feed", SimulatorFeed)

# What each bulk endpoint takes many of, for its 413s' wording.
_BULK_RECORDS = {"/api/v1/transactions": "transactions", "/api/v1/labels": "labels"}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/api"


async def _no_endpoint(request: web.Request) -> str:
    """The 404 message for an API path no route matches: the path, and the likeliest fix."""
    path = request.path
    stripped = path.rstrip("/")
    if stripped != path and stripped:
        match = await request.app.router.resolve(request.clone(rel_url=stripped))
        if match.http_exception is None or match.http_exception.status == 405:
            return f"No API endpoint at {path}: did you mean {stripped} (no trailing slash)?"
    if not path.startswith("/api/v1/"):
        return f"No API endpoint at {path}: the API's paths start /api/v1/ (docs/api.md)"
    return f"No API endpoint at {path}: docs/api.md lists the endpoints"


@web.middleware
async def errors(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """API callers always get the JSON error shape, even for aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # /healthz answers JSON too, to load balancers and scripts.
        if exc.status < 400 or not (_is_api(request.path) or request.path == "/healthz"):
            raise
        if exc.status == 413:
            # aiohttp's, from reading a body over client_max_size (max_body_bytes).
            records = _BULK_RECORDS.get(request.path)
            return api.body_too_large(request.app[SETTINGS].max_body_bytes, records)
        message = exc.reason
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # aiohttp's reason alone ("Method Not Allowed") leaves the caller to find the
            # Allow header; the message says it in words, as every other error does.
            taken = ", ".join(sorted(exc.allowed_methods))
            message = f"{exc.method} is not allowed on {request.path}: it takes {taken}"
        elif isinstance(exc, web.HTTPNotFound):
            # No route (handlers answer their own 404s, naming what is missing): "Not
            # Found" alone left the caller to find the typo, the version or the slash.
            message = await _no_endpoint(request)
        response = json_response(api.error_for_status(exc.status, message), status=exc.status)
        # A 405 must say which methods the resource takes (RFC 9110, 15.5.6).
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except StoreUnavailable as exc:
        # Reads, acknowledgements, resolutions, logins: nothing was changed, the caller may
        # retry. Machines (the API, the socket's handshake) get the JSON error; a person at
        # the login page or dashboard gets a page that says the same.
        if request.path.startswith("/api/") or request.path == "/ws":
            return api.store_unavailable(exc)
        log.warning("%s %s: store unavailable (%s)", request.method, request.path, exc.cause)
        return web.Response(
            status=503,
            text=f"fraudwatch cannot reach its store ({exc.cause}). Nothing was changed; "
            "try again in a moment.",
            headers={"Retry-After": "1"},
        )
    except StoredRowDamaged as exc:
        # An alert read by itself (the drawer, a change to it): not the caller's fault, and
        # no retry reads it, so neither internal_error ("a bug") nor a 503 ("retry").
        log.error("%s %s: stored_row_damaged: %s", request.method, request.path, exc)
        if not request.path.startswith("/api/"):
            raise
        return api.stored_row_damaged(exc)
    except Exception:
        # A bug, or a stored row this code cannot read: aiohttp would answer a text/plain
        # 500 ("Server got itself in trouble"), which API clients cannot parse as an error.
        if not request.path.startswith("/api/"):
            raise
        log.exception("%s %s failed", request.method, request.path)
        return json_response(
            error_body(
                "internal_error",
                "The server failed to answer this request; the error is in its log",
            ),
            status=500,
        )


@web.middleware
async def security_headers(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc)
        raise
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


@web.middleware
async def static_files(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """Static files revalidate, and one that is not there is a short 404 naming it."""
    if not request.path.startswith("/static/"):
        return await handler(request)
    try:
        response = await handler(request)
    except (web.HTTPNotFound, web.HTTPForbidden):  # outside static/, or a directory
        response = await _no_static_file(request)
    else:
        # aiohttp's FileResponse finds out only when sent that there is no file, and then
        # answers 404 with an empty application/octet-stream body: nothing to go on.
        filename = request.match_info.get("filename", "")
        if isinstance(response, web.FileResponse) and not await asyncio.to_thread(
            (STATIC_DIR / filename).is_file
        ):
            response = await _no_static_file(request)
    # ES modules import each other by plain URL, so they cannot carry a version: make the
    # browser revalidate (ETag/Last-Modified) so a deploy never runs a mix of old and new.
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _no_static_file(request: web.Request) -> web.Response:
    """404 in text, naming the path, and the file of that name elsewhere under /static/
    when there is one (`/static/app.js`: did you mean /static/js/app.js?), as an API path
    that is not there is answered with the path and the likeliest fix."""
    name = request.path.rsplit("/", 1)[-1]

    def elsewhere() -> list[str]:
        if not name or name.startswith("."):
            return []
        found = (p for p in STATIC_DIR.rglob(name) if p.is_file())
        return sorted("/static/" + p.relative_to(STATIC_DIR).as_posix() for p in found)

    others = [path for path in await asyncio.to_thread(elsewhere) if path != request.path]
    hint = f": did you mean {others[0]}?" if others else ""
    return web.Response(status=404, text=f"No file at {request.path}{hint}\n")


@web.middleware
async def sessions(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    # The cookie key is read from the data dir at startup (I/O), so the real middleware is
    # built in a cleanup_ctx and looked up here.
    middleware = request.app[SESSION_MIDDLEWARE]
    return await middleware(request, handler)  # type: ignore[operator, no-any-return]


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    key = load_or_create_secret(settings.data_dir / "session.key", 32)
    storage = EncryptedCookieStorage(
        key,
        cookie_name="fraudwatch_session",
        max_age=settings.session_max_age,
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
    )
    app[SESSION_MIDDLEWARE] = session_middleware(storage)
    yield


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    hub = app[HUB]
    listener = hub.publish_events if app[SETTINGS].pipeline == "batched" else (lambda _: None)
    await store.start(listener)
    hub.last_seq = await store.last_seq()
    yield
    await store.close()


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    days = app[SETTINGS].retention_days
    if not days:
        yield
        return
    task = asyncio.create_task(run_retention(app[STORE], days), name="retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _model_ctx(app: web.Application) -> AsyncIterator[None]:
    trainer = app.get(TRAINER)
    if trainer is None:
        yield
        return
    await trainer.start()
    yield
    # After the detection loop's cleanup (contexts unwind in reverse): nothing scores now.
    await trainer.close()


def _scorecard_listener(scorecard: Scorecard) -> Callable[[Sequence[StoredRecord]], None]:
    def on_stored(records: Sequence[StoredRecord]) -> None:
        # Only verdicts whose truth came first (the simulator's) are matched here; a label
        # that comes later (a chargeback, a resolution) takes its verdict from the store
        # (learning.absorb_labels), so verdicts are not held in memory in case one comes.
        if not scorecard.waiting:
            return
        for r in records:
            tx = r.transaction
            if scorecard.waiting_for(tx.id):
                scorecard.add_verdict(
                    tx.id, tx.timestamp.timestamp(), tx.account_id, r.verdict.alert_id is not None
                )

    return on_stored


async def _detection_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    detector = app[DETECTOR]
    if settings.rules_path is not None:
        detector.use_rules(await asyncio.to_thread(load_rules, settings.rules_path))
    saver = app[STATE_SAVER]
    restored = saver.restore()
    if saver.progress is not None:
        # Before the loop scores anything: what was stored after the snapshot (after a
        # crash), or with no snapshot the recent history, goes into the state first. (The
        # snapshot's marks, ~30 bytes a key, are not kept past it.)
        await replay_stored(
            detector,
            app[STORE],
            saver.progress,
            restored,
            max_rows=settings.state_replay_max,
        )
    # Then the label changes it had not taken in, into merchant risk and the amount's rate.
    await app[LABEL_CHANGES].start(restored)
    del restored
    counted = await rebuild_scorecard(app[STORE], app[SCORECARD])
    if counted:
        log.info("scorecard: %d labelled transactions counted from the store", counted)
    loop = DetectionLoop(
        app[QUEUE],
        app[DETECTOR],
        app[STORE],
        app[HUB],
        app[STATS],
        batch_max=settings.batch_max,
        batch_wait=settings.batch_wait_ms / 1000,
        on_stored=_scorecard_listener(app[SCORECARD]),
        progress=saver.progress,
    )
    task = asyncio.create_task(loop.run(), name="detection-loop")
    periodic = (
        asyncio.create_task(
            saver.every(settings.state_snapshot_interval), name="detector-snapshots"
        )
        if settings.state_snapshot_interval > 0
        else None
    )
    yield
    if periodic is not None:
        periodic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await periodic
    # Intake stopped on shutdown (_stop_intake), and the requests in flight have been
    # answered: let the loop score and persist everything still accepted.
    app[QUEUE].close()
    try:
        await asyncio.wait_for(task, timeout=30)
    except TimeoutError:
        # Only a store failing past the deadline gets here; none of these got a 200.
        left = app[QUEUE].qsize() + loop.in_hand
        log.error("detection loop did not drain in 30 s: %d transactions not stored", left)
    # Label changes committed whose taking-in was cut short (the simulator's labeller is
    # cancelled before this): in now, so that the snapshot holds every one.
    try:
        await app[LABEL_CHANGES].catch_up()
    except Exception as exc:
        log.warning("merchant risk: label changes not read at shutdown (%s): replayed", exc)
    # Everything scored is in the state now: the next start picks up where this one ends.
    await saver.save_logged()


async def _feed_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.simulator:
        yield
        return
    from simulator import Simulator

    history = await _history_to_score(app)
    feed = SimulatorFeed(
        Simulator(
            seed=settings.seed,
            fraud_rate=settings.fraud_rate,
            rate=settings.rate,
            history=dt.timedelta(seconds=history) if history else None,
        ),
        scorecard=app[SCORECARD],
        label_delay=settings.simulator_label_delay if settings.simulator_labels else None,
    )
    app[SIMULATOR_FEED] = feed

    async def simulate() -> None:
        # In the background, not in start-up: the server answers (and the dashboard shows
        # the past's alerts as they are raised) meanwhile, and a Ctrl-C then is an ordinary
        # shutdown, which drains the loop and saves the state.
        if history:
            try:
                await _warm_up(app, feed, history)
            except Exception:
                # A demo's nicety only: never worth a stream that does not go live.
                log.exception("simulator: warm-up failed; going live without the rest of it")
        feed.live.set()
        await feed.run(app[QUEUE])

    task = asyncio.create_task(simulate(), name="simulator-feed")
    labeller = asyncio.create_task(_simulator_labels(app, feed), name="simulator-labels")
    yield
    for each in (labeller, task):
        each.cancel()
        # IntakeClosed: the feed already stopped when intake closed on shutdown.
        with contextlib.suppress(asyncio.CancelledError, IntakeClosed):
            await each


HISTORY_MAX_TRANSACTIONS = 15_000
"""The most transactions the simulator's warm-up scores: `simulator_history` at the default
rate (300 s at 50 tx/s), and less time at a faster one (50 s at 300 tx/s), so that a fast
`--rate` does not make the demo's first seconds slower."""


async def _history_to_score(app: web.Application) -> float:
    """Seconds of the simulated stream's past to score before going live: none on a store
    that holds transactions already (a restart: the detector's state and the model are the
    last run's, and another past would be a second history over the first)."""
    settings = app[SETTINGS]
    if not settings.simulator_history or await app[STORE].last_position() is not None:
        return 0.0
    return min(settings.simulator_history, HISTORY_MAX_TRANSACTIONS / settings.rate)


async def _warm_up(app: web.Application, feed: SimulatorFeed, history: float) -> None:
    """Score the simulated stream's recent past before going live (see SimulatorFeed.warm_up)."""
    started = time.monotonic()
    log.info("simulator: scoring the stream's last %.0f s before going live", history)
    done = await feed.warm_up(
        app[QUEUE], lambda: dt.datetime.now(dt.UTC), lambda due, at: _hand_out(app, due, at)
    )
    trainer = app.get(TRAINER)
    if trainer is not None:
        # What it learnt in use from the first live transaction on.
        await trainer.idle.wait()
    model = trainer is not None and trainer.slot.predictor is not None
    log.info(
        "simulator: live; the last %.0f s scored in %.1f s: %d transactions, %d alerts, "
        "%d of %d frauds alerted; model %s",
        history,
        time.monotonic() - started,
        done.transactions,
        done.alerts,
        done.frauds_alerted,
        done.frauds,
        "in use" if model else "not in use yet",
    )


async def _hand_out(app: web.Application, due: list[Labeled], at: dt.datetime) -> None:
    """The simulator's ground truth of `due`, stored and learnt as labels known at `at`."""
    try:
        # The scorecard had this truth from the feed already.
        await apply_labels(
            app[STORE],
            app.get(TRAINER),
            None,
            truth_labels(due, at),
            app[LABEL_CHANGES],
            app[STATS],
        )
    except StoreUnavailable as exc:
        log.warning("simulator labels not stored (%s); %d dropped", exc.cause, len(due))
    except Exception:
        # Demo ground truth only: never worth stopping the feed or the shutdown for.
        log.exception("simulator labels failed; %d dropped", len(due))


async def _simulator_labels(app: web.Application, feed: SimulatorFeed) -> None:
    """Once a second, the ground truth that has become due, stored and learnt as labels;
    from when the stream is live (the warm-up hands out the past's itself, in order)."""
    if feed.label_delay is None:
        return
    await feed.live.wait()
    while True:
        await asyncio.sleep(1.0)
        now = dt.datetime.now(dt.UTC)
        due = feed.due_labels(now)
        if due:
            await _hand_out(app, due, now)


async def _stats_ctx(app: web.Application) -> AsyncIterator[None]:
    async def tick() -> None:
        stats, hub, store, queue = app[STATS], app[HUB], app[STORE], app[QUEUE]
        while True:
            await asyncio.sleep(1.0)
            snapshot = dict(stats.tick())
            snapshot["rejected_total"] = stats.rejected_total
            try:
                summary = await store.open_summary()
            except Exception:
                log.exception("could not count open alerts")
                summary = {"by_severity": None, "oldest_open_created_at": None}
            by_severity = summary["by_severity"]
            snapshot["open_alerts"] = (
                sum(by_severity.values()) if isinstance(by_severity, dict) else None
            )
            snapshot["open_by_severity"] = by_severity
            snapshot["oldest_open_created_at"] = summary["oldest_open_created_at"]
            snapshot["clients"] = len(hub)
            snapshot["queue_depth"] = queue.qsize()
            scorecard = app[SCORECARD].snapshot()
            if scorecard is not None:
                snapshot["scorecard"] = scorecard
            if (trainer := app.get(TRAINER)) is not None:
                snapshot["model"] = trainer.snapshot()
            stats.last = snapshot
            hub.publish_stats(snapshot)

    task = asyncio.create_task(tick(), name="stats")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_intake(app: web.Application) -> None:
    # aiohttp has stopped listening; the requests in flight are answered after this. From now
    # on ingest answers 503 shutting_down and /healthz 503, while the loop drains the queue.
    app[QUEUE].close()


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close()


async def _naive_ingest(request: web.Request, transactions: list[Transaction]) -> list[Verdict]:
    app = request.app
    return await naive.submit(transactions, app[DETECTOR], app[STORE], app[HUB])


def create_app(settings: Settings, sources: dict[str, str] | None = None) -> web.Application:
    """Build the application from settings; nothing is opened until it starts. `sources`
    says where each setting came from (`load_settings` fills it), for messages that name
    a setting's origin."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # security_headers outermost: the JSON errors built by `errors` get the headers too.
        middlewares=[security_headers, errors, static_files, sessions],
    )
    stats = Stats()
    app[SETTINGS] = settings
    app[SETTING_SOURCES] = dict(sources or {})
    app[STATS] = stats
    app[HUB] = Hub(stats, settings.ws_queue_max, stall_seconds=settings.ws_stall_seconds)
    app[QUEUE] = TxQueue(settings.queue_max)
    slot = None
    if settings.model:
        slot = ModelSlot(
            memory=settings.model_memory,
            min_labels=settings.model_min_labels,
            min_frauds=settings.model_min_frauds,
            negative_ratio=settings.model_negative_ratio,
        )
        app[TRAINER] = Trainer(slot, settings.data_dir / "model.json")
    app[SCORECARD] = Scorecard()
    app[RULES_RELOAD] = asyncio.Lock()
    app[DETECTOR] = Detector(
        review_threshold=settings.review_threshold,
        block_threshold=settings.block_threshold,
        model=slot,
        ttl_s=settings.state_ttl_days * 86400,
    )
    # The naive baseline scores concurrently, not in the order it stores: no replay marks.
    progress = Progress() if settings.pipeline == "batched" else None
    app[STORE] = SqliteStore(settings.db_path, busy_timeout=settings.store_busy_timeout)
    app[STATE_SAVER] = StateSaver(app[DETECTOR], settings.state_path, progress, app[STORE])
    app[LABEL_CHANGES] = LabelChanges(
        app[DETECTOR].featurizer, app[STORE], progress if progress is not None else Progress()
    )
    app[AUTH] = Authenticator(settings, app[STORE], app[HUB])
    if settings.pipeline == "naive":
        app[api.INGEST_OVERRIDE] = _naive_ingest

    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(web_dir("templates")), autoescape=True)
    app.router.add_get("/", pages.index)
    app.router.add_get("/admin", pages.admin)
    app.router.add_get("/favicon.ico", pages.favicon)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_get("/ws", ws.websocket)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/metrics", api.metrics)
    app.router.add_post("/api/v1/transactions", api.ingest)
    app.router.add_get("/api/v1/alerts", api.list_alerts)
    app.router.add_get("/api/v1/users", admin.list_users)
    app.router.add_put("/api/v1/users/{name}", admin.put_user)
    app.router.add_delete("/api/v1/users/{name}", admin.delete_user)
    app.router.add_get("/api/v1/settings", admin.settings)
    app.router.add_post("/api/v1/admin/snapshot", snapshots.take_snapshot)
    triage.add_routes(app)
    app.router.add_get("/api/v1/alerts/{alert_id}", api.get_alert)
    app.router.add_get("/api/v1/accounts/{account_id}/transactions", api.account_transactions)
    app.router.add_post("/api/v1/labels", labels.post_labels)
    app.router.add_get("/api/v1/scorecard", labels.get_scorecard)
    app.router.add_get("/api/v1/rules", rules.get_rules)
    app.router.add_post("/api/v1/rules/reload", rules.reload_rules)
    app.router.add_static("/static", STATIC_DIR)

    app.cleanup_ctx.extend(
        [
            _sessions_ctx,
            _store_ctx,
            _model_ctx,
            _detection_ctx,
            # After the replay at start: it must find the transactions the snapshot marks.
            _retention_ctx,
            _feed_ctx,
            _stats_ctx,
        ]
    )
    app.on_shutdown.extend([_stop_intake, _close_sockets])
    return app
