"""The standalone client against servers that go away, refuse or come back: what it re-sends,
in what order, and what it reports."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.replay import CONNECT_TIMEOUT_S
from simulator.client import (
    ClientOptions,
    ClientStats,
    TargetDown,
    TargetRefused,
    retry_after,
    run_client,
)
from tests.conftest import API_KEY
from tests.live_server import start_live
from tests.test_cli import free_port
from tests.test_replay import blackhole

BODIES = web.AppKey("bodies", list)
ANSWERS = web.AppKey("answers", list)
POSTED = web.AppKey("posted", asyncio.Event)
STATUSES = web.AppKey("statuses", list)


def stored_ids(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM transactions")]


async def wait_stored(db: Path, more_than: int) -> int:
    for _ in range(600):
        if db.exists():
            count = len(await asyncio.to_thread(stored_ids, db))
            if count > more_than:
                return count
        await asyncio.sleep(0.05)
    raise AssertionError(f"no more than {more_than} stored in 30 s")


async def test_every_transaction_is_stored_once_across_sigterm_and_sigkill(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    port = free_port()
    stop = asyncio.Event()
    out = io.StringIO()
    options = ClientOptions(
        target=f"http://127.0.0.1:{port}",
        api_key=API_KEY,
        rate=150.0,
        batch_ms=50.0,
        retry_base_s=0.05,
        retry_max_s=0.5,
        report_s=3600.0,
    )
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, port=port)
        task = asyncio.create_task(run_client(options, stop=stop, out=out))
        count = await wait_stored(server.db, 50)
        # A clean stop mid-feed: in-flight requests answered, then connections refused
        # until the new process listens.
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0
        server = await start_live(data, stack, port=port)
        count = await wait_stored(server.db, count + 50)
        # A crash: a batch may be committed without its answer reaching the client.
        await asyncio.to_thread(server.stop, signal.SIGKILL)
        server = await start_live(data, stack, port=port)
        await wait_stored(server.db, count + 50)
        stop.set()
        stats: ClientStats = await asyncio.wait_for(task, timeout=60)
        ids = await asyncio.to_thread(stored_ids, server.db)
        server.stop()

    assert stats.dropped == stats.refused == 0, out.getvalue()
    # Each generated transaction stored exactly once (the id is the primary key, so the
    # count of numbers 1..n is what says none is missing), and answered once with its verdict.
    numbers = sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    assert numbers == list(range(1, stats.generated + 1))
    assert stats.stored == stats.sent == stats.generated
    assert stats.resent > 0  # the restarts did reach the client: it re-sent what it held


def scripted_ingest(
    *answers: tuple[int, dict[str, str]], client_max_size: int = 1024**2
) -> web.Application:
    """Answers each post with the next (status, headers) of `answers`, then with verdicts.
    A body over `client_max_size` gets aiohttp's own 413, and is not kept in BODIES."""

    @web.middleware
    async def statuses(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            request.app[STATUSES].append(exc.status)
            raise
        request.app[STATUSES].append(response.status)
        return response

    async def ingest(request: web.Request) -> web.Response:
        body = await request.read()
        request.app[BODIES].append(body)
        request.app[POSTED].set()
        if request.app[ANSWERS]:
            status, headers = request.app[ANSWERS].pop(0)
            return web.json_response({"error": {"code": "x"}}, status=status, headers=headers)
        lines = body.splitlines()
        return web.json_response({"results": [{"decision": "allow"} for _ in lines]})

    app = web.Application(client_max_size=client_max_size, middlewares=[statuses])
    app[STATUSES] = []
    app[BODIES] = []
    app[ANSWERS] = list(answers)
    app[POSTED] = asyncio.Event()
    app.router.add_post("/api/v1/transactions", ingest)
    return app


def scripted_options(server: Any, **overrides: Any) -> ClientOptions:
    """A client of `scripted_ingest`'s server: 200 tx/s in 50 ms ticks, retries within
    tens of milliseconds, no progress lines."""
    settings: dict[str, Any] = {
        "target": str(server.make_url("/")),
        "api_key": "k",
        "rate": 200.0,
        "batch_ms": 50.0,
        "retry_base_s": 0.01,
        "retry_max_s": 0.02,
        "report_s": 3600.0,
    }
    return ClientOptions(**{**settings, **overrides})


async def next_post(app: web.Application) -> None:
    app[POSTED].clear()
    await asyncio.wait_for(app[POSTED].wait(), timeout=30)


async def test_a_503_is_resent_whole_and_first_and_a_409_is_reported_not_resent(
    aiohttp_server: Any,
) -> None:
    app = scripted_ingest((503, {"Retry-After": "0"}), (502, {}), (409, {}))
    server = await aiohttp_server(app)
    options = scripted_options(server)
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    while len(app[BODIES]) < 6:
        await next_post(app)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)

    first, second, third = (body.splitlines() for body in app[BODIES][:3])
    # The 503 and the 502 ask for the same transactions again: same bytes, first in line
    # (what came meanwhile may ride along behind them), then the 409 is final for its
    # batch: never posted again, and the feed goes on after it.
    assert second[: len(first)] == first and third[: len(second)] == second
    later = [line for body in app[BODIES][3:] for line in body.splitlines()]
    assert not set(later) & set(third)
    assert stats.refused == len(third)
    assert stats.stored == len(later) == stats.generated - len(third)
    assert stats.resent == len(first) + len(second) and stats.dropped == 0
    assert "HTTP 409" in out.getvalue() and f"{len(third)} transactions refused" in out.getvalue()


async def test_past_max_backlog_new_transactions_are_dropped_and_said_so(
    aiohttp_server: Any,
) -> None:
    app = scripted_ingest(*[(503, {})] * 10_000)
    server = await aiohttp_server(app)
    options = scripted_options(server, rate=500.0, batch_ms=20.0, max_backlog=40, drain_s=0.0)
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    while "dropping" not in out.getvalue():  # it keeps retrying meanwhile
        await next_post(app)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)
    # Never more than the cap in memory (or in a request), the oldest kept first in line.
    assert max(len(body.splitlines()) for body in app[BODIES]) <= 40
    assert app[BODIES][0].splitlines()[0] == app[BODIES][-1].splitlines()[0]
    assert stats.stored == 0 and stats.dropped == stats.generated > 40
    assert "(--max-backlog 40)" in out.getvalue() and "gave up on 40 transactions" in out.getvalue()


@pytest.mark.parametrize("every_s", [3600.0, 0.0])
async def test_drops_past_max_backlog_are_said_once_then_counted_at_most_every_interval(
    aiohttp_server: Any, every_s: float
) -> None:
    # Each tick's drop was a line of its own: 5 a second at --batch-ms 200, for as long as
    # the server was away. Now one line when the backlog fills, then one at most every
    # `backlog_report_s` (5 s) with the count dropped since, the rest before `done`.
    app = scripted_ingest(*[(503, {})] * 10_000)
    server = await aiohttp_server(app)
    options = scripted_options(
        server, rate=500.0, batch_ms=20.0, max_backlog=40, drain_s=0.0, backlog_report_s=every_s
    )
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    while "dropping" not in out.getvalue():
        await next_post(app)
    for _ in range(10):  # ten more ticks, each dropping all it makes
        await next_post(app)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)

    lines = out.getvalue().splitlines()
    first = [line for line in lines if line.startswith("dropping ")]
    since = [line for line in lines if line.startswith("dropped ")]
    assert len(first) == 1 and first[0].endswith(
        f"(--max-backlog 40); more are counted, not named, one line at most every {every_s:g} s"
    )
    counted = [int(re.findall(r"^dropping (\d+) ", first[0])[0])]
    counted += [int(re.findall(r"^dropped (\d+) more over --max-backlog ", x)[0]) for x in since]
    if every_s:
        assert len(since) == 1  # the rest, totalled before the end
    else:
        assert len(since) >= 10  # one a tick: the interval is 0
    # Every transaction dropped is in a line, once; with the 40 given up on at the end.
    assert sum(counted) + 40 == stats.dropped == stats.generated
    assert "gave up on 40 transactions" in out.getvalue()


async def test_a_500_is_tried_three_times_then_reported(aiohttp_server: Any) -> None:
    app = scripted_ingest((500, {}), (500, {}), (500, {}))
    server = await aiohttp_server(app)
    options = scripted_options(server)
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    while len(app[BODIES]) < 5:
        await next_post(app)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)
    # A bug of the server's: a deploy may fix it, a loop would not. Third time, reported.
    gave_up = app[BODIES][2].splitlines()
    later = [line for body in app[BODIES][3:] for line in body.splitlines()]
    assert app[BODIES][1].startswith(app[BODIES][0]) and app[BODIES][2].startswith(app[BODIES][1])
    assert not set(later) & set(gave_up)
    assert stats.refused == len(gave_up) and stats.stored == len(later)
    assert "HTTP 500" in out.getvalue()


def test_retry_after_reads_seconds_and_dates_and_refuses_nonsense() -> None:
    assert retry_after("1") == 1.0
    assert retry_after("86400") == 300.0  # capped: a mistake, not an order
    assert retry_after("-5") == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_after(None) is None and retry_after("soon") is None and retry_after("nan") is None


async def test_a_refused_key_ends_the_feed_counting_what_was_held_as_dropped(
    aiohttp_server: Any,
) -> None:
    # The key revoked while the server was down: what the client held was never counted,
    # its summary not printed, only "error: ... answered 401".
    app = scripted_ingest((503, {}), (503, {}), (401, {}))
    server = await aiohttp_server(app)
    options = scripted_options(server)
    out = io.StringIO()
    with pytest.raises(TargetRefused, match="answered 401"):
        await asyncio.wait_for(run_client(options, out=out), timeout=30)
    held = len(app[BODIES][-1].splitlines())
    text = out.getvalue()
    assert f"gave up on {held} transactions" in text and "check --api-key" in text, text
    done = text.splitlines()[-1]
    assert done.startswith("done ") and f"dropped={held} " in done and "stored=0 " in done, done


def _numbers(bodies: list[bytes]) -> list[int]:
    return [
        int(json.loads(line)["id"].rsplit("-", 1)[1]) for b in bodies for line in b.splitlines()
    ]


async def test_a_batch_over_the_server_s_body_limit_is_split_in_halves_and_all_stored(
    aiohttp_server: Any,
) -> None:
    # A server taking 2,500-byte bodies, ~7 transactions, and ~20 generated a tick: each
    # request was answered 413 and its transactions counted as refused, never stored.
    app = scripted_ingest(client_max_size=2500)
    server = await aiohttp_server(app)
    options = scripted_options(server, rate=400.0)
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    while len(app[BODIES]) < 12:
        await next_post(app)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)
    assert 413 in app[STATUSES]
    assert max(len(body) for body in app[BODIES]) <= 2500
    # Every transaction stored once, in the order made.
    assert _numbers(app[BODIES]) == list(range(1, stats.generated + 1)), out.getvalue()
    assert stats.stored == stats.sent == stats.generated
    # The halves are no re-sends of an unanswered batch: `resent` stays for those.
    assert stats.resent == stats.refused == stats.dropped == 0, out.getvalue()


async def test_transactions_alone_over_the_body_limit_are_dropped_the_first_few_named(
    aiohttp_server: Any,
) -> None:
    # A server whose limit no single transaction fits: every one was named on a line of its
    # own, 200 lines a second at this rate, burying everything else. The first 3 are
    # named, then one line says the rest are counted, and the end gives the total.
    app = scripted_ingest(client_max_size=150)  # a transaction is ~350 bytes
    server = await aiohttp_server(app)
    options = scripted_options(server, duration=0.3)
    out = io.StringIO()
    stats = await asyncio.wait_for(run_client(options, out=out), timeout=30)
    lines = out.getvalue().splitlines()
    assert app[BODIES] == [] and set(app[STATUSES]) == {413}
    assert stats.dropped == stats.generated > 3 and stats.stored == 0
    assert stats.refused == stats.resent == 0
    prefix = re.findall(r"^dropping (tx-7-\w+-)1: ", lines[0])[0]  # the run's id prefix
    ids = [f"{prefix}{n}" for n in range(1, stats.generated + 1)]  # in the order made
    # The server's own words, which name its limit.
    said = "HTTP 413: Maximum request body size 150 exceeded"
    for line, id in zip(lines[:3], ids, strict=False):
        assert line.startswith(f"dropping {id}: alone over the server's request limit ({said}")
    assert lines[3] == (
        f"dropping {ids[3]} and any more alone over the server's request limit without "
        "naming them: they are counted under dropped, and totalled at the end"
    )
    assert lines[4].startswith(
        f"dropped {stats.generated} transactions alone over the server's request limit in "
        f"all ({ids[0]} .. {ids[-1]}); last: {said}"
    ), lines[4]
    assert lines[5].startswith("done ") and f" dropped={stats.generated} " in lines[5]
    assert len(lines) == 6, lines


async def _simulator(target: str, *flags: str) -> tuple[int, str, str]:
    """`python -m simulator --target TARGET` as a process: its exit status, stdout and
    stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator", "--target", target, "--api-key", "k",
        "--rate", "100", "--batch-ms", "50", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("app", "status", "reason"),
    [
        (scripted_ingest, 0, None),
        (lambda: scripted_ingest((409, {})), 1, "refused"),
        (lambda: scripted_ingest(client_max_size=150), 1, "dropped"),
    ],
)
async def test_the_exit_status_says_whether_every_transaction_was_delivered(
    aiohttp_server: Any, app: Any, status: int, reason: str | None
) -> None:
    # A script or a CI job running the feed saw exit 0 whatever was lost on the way.
    server = await aiohttp_server(app())
    code, out, err = await _simulator(
        str(server.make_url("/")), "--duration", "0.5", "--drain-s", "0"
    )
    assert code == status, out + err
    done = out.splitlines()[-1]
    assert done.startswith("done "), out
    counts = {k: int(v) for k, v in re.findall(r" (refused|dropped)=(\d+)", done)}
    if reason is None:
        assert err == "" and counts == {"refused": 0, "dropped": 0}, out + err
    else:
        assert counts[reason] > 0 and counts[({"refused", "dropped"} - {reason}).pop()] == 0
        assert err == (
            f"error: {counts[reason]} transactions were never stored: "
            f"{counts['refused']} refused, {counts['dropped']} dropped (see above)\n"
        ), err


async def test_no_server_at_the_target_is_an_error_naming_it_within_three_tries() -> None:
    # Nothing listening when the feed starts (a wrong port, no server started): it retried
    # for ever with backoff, holding and then dropping what it made, until stopped. As
    # `fraudwatch replay` does, connection refused before the server ever answered is tried
    # 3 times, 0.5 and 1 s apart, then the feed stops, counting what it held as dropped.
    url = f"http://127.0.0.1:{free_port()}"
    code, text, error = await _simulator(url)
    assert code == 2, (text, error)
    assert error.count("\n") == 1 and error.startswith(
        f"error: cannot connect to {url}/api/v1/transactions (3 tries, 0.5 and 1 s apart): "
        "ClientConnectorError: Cannot connect to host "
    ), error
    assert error.endswith(f"; is a server running at {url}?\n"), error
    gave_up, done = text.splitlines()
    held = int(re.findall(r"^gave up on (\d+) transactions", gave_up)[0])
    assert "; 3 tries; last: ClientConnectorError" in gave_up, gave_up
    assert done.startswith("done ") and f"dropped={held} " in done and "stored=0 " in done
    assert f"generated={held} " in done  # every one counted


async def test_a_target_that_drops_packets_is_given_up_on_after_three_connect_timeouts() -> None:
    # The client had no connect timeout of its own: each try to a host that drops packets (a
    # firewall, a wrong address on a routed network) waited out the request's 30 s, and
    # counted as a server that had gone away, retried with backoff until --duration ran out.
    # As `fraudwatch replay --target` does, a connection not made within the connect timeout
    # (10 s, replay's; short here) is one that cannot be made: 3 tries, then the feed stops.
    assert ClientOptions(target="http://x", api_key="k").connect_timeout_s == CONNECT_TIMEOUT_S
    with blackhole() as port:
        url = f"http://127.0.0.1:{port}"
        options = ClientOptions(
            target=url, api_key=API_KEY, rate=20, duration=60, connect_timeout_s=0.2
        )
        out = io.StringIO()
        with pytest.raises(TargetDown) as stopped:
            await asyncio.wait_for(run_client(options, out=out), timeout=30)
    assert str(stopped.value).startswith(
        f"cannot connect to {url}/api/v1/transactions (3 tries, 0.5 and 1 s apart): "
        "ConnectionTimeoutError: "
    ), stopped.value
    assert str(stopped.value).endswith(f"; is a server running at {url}?")
    gave_up, done = out.getvalue().splitlines()
    assert "; 3 tries; last: ConnectionTimeoutError" in gave_up, gave_up
    assert done.startswith("done ") and "stored=0 " in done
