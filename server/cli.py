"""The `fraudwatch` command: demo, serve, users, keys, backup, replay, backtest, rules."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import gc
import getpass
import logging
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from server import backtest, backup, replay, rules_check, server_file
from server.api_keys import SCOPES, KeyRing, check_name, parse_scopes
from server.auth import check_password, check_user_name, create_user, load_or_create_api_key
from server.config import ConfigError, Settings, load_settings, unknown_environment
from server.rules_reload import reload_on_sighup
from server.store.base import ApiKey
from server.store.errors import DatabaseUnusable
from server.store.sqlite import SqliteStore

log = logging.getLogger(__name__)
T = TypeVar("T")
DEMO_USER = "analyst"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./fraudwatch-data)")
    parser.add_argument("--config", type=Path, help="TOML settings file")


def _server_flags(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudwatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="server + built-in simulator + demo login")
    _server_flags(demo)
    demo.add_argument("--rate", type=float, help="simulated transactions per second (default 50)")
    demo.add_argument("--seed", type=int, help="simulator seed (default 7)")

    serve = commands.add_parser("serve", help="server fed by the ingest API")
    _server_flags(serve)

    users = commands.add_parser("users", help="manage analyst accounts")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="create a user, or reset their password")
    _common(add)
    add.add_argument("name")
    add.add_argument(
        "--role",
        choices=["analyst", "admin", "viewer"],
        help="a new user's role (default analyst); unset, a reset keeps the user's role",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin, one line (the way without a terminal)",
    )

    keys = commands.add_parser("keys", help="manage API keys for machine clients")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print it (only once)")
    _common(create)
    create.add_argument("name")
    create.add_argument(
        "--scopes", required=True, help=f"comma-separated, from: {', '.join(SCOPES)}"
    )
    _common(key_commands.add_parser("list", help="list keys (never the keys themselves)"))
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    _common(revoke)
    revoke.add_argument("name")

    backup.register(commands)
    replay.register(commands)
    backtest.register(commands)
    rules_check.register(commands)
    return parser


def _settings(
    args: argparse.Namespace, sources: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    flags = {
        name: getattr(args, name, None)
        for name in ("host", "port", "data_dir", "rate", "seed")
        if getattr(args, name, None) is not None
    }
    flags.update(overrides)
    return load_settings(flags, config_file=args.config, sources=sources)


async def _in_store(settings: Settings, job: Callable[[SqliteStore], Awaitable[T]]) -> T:
    store = SqliteStore(settings.db_path)
    await store.start(lambda _events: None)
    try:
        return await job(store)
    finally:
        await store.close()


async def _with_store(settings: Settings, name: str, password: str, role: str | None) -> str:
    """Create `name` or reset their password; returns the role they have now. Without
    `role`, an existing user keeps theirs (a password reset must not demote an admin)."""
    store = SqliteStore(settings.db_path)
    await store.start(lambda _events: None)
    try:
        if role is None:
            existing = await store.get_user(name)
            role = existing.role if existing is not None else "analyst"
        await create_user(store, name, password, role)  # type: ignore[arg-type]
        return role
    finally:
        await store.close()


def _new_database_note(settings: Settings) -> None:
    # Right before a first `serve`, but a mistyped --data-dir does it too: the user or key
    # then works nowhere, and the server's 401 does not say why.
    print(
        f"note: {settings.db_path} did not exist and was created: if a server already runs, "
        "check --data-dir (or --config): it uses another database",
        file=sys.stderr,
    )


def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)

    def ring(store: SqliteStore) -> KeyRing:
        return KeyRing(store, None, settings.api_key_cache_ttl)

    data_dir = settings.data_dir
    missing = not settings.db_path.exists() and (data_dir.is_dir() or not data_dir.exists())
    if args.keys_command != "create" and missing:
        # Opening the store would create an empty database in a mistyped --data-dir, list
        # no keys and answer a revoke with "no live API key": say what is wrong instead.
        # (A data_dir that is a file is named by the store's own error.)
        print(
            f"error: no database at {settings.db_path}: is the data directory right?",
            file=sys.stderr,
        )
        return 2
    if args.keys_command == "create":
        # Before the store is opened: a refused name or scope must not leave a database.
        check_name(args.name)
        parse_scopes(args.scopes)
        key = asyncio.run(
            _in_store(settings, lambda store: ring(store).create(args.name, args.scopes.split(",")))
        )
        # The key alone on stdout, so `KEY=$(fraudwatch keys create ...)` works.
        print(key)
        if missing:
            _new_database_note(settings)
        print(
            f"API key {args.name!r} created; it is shown only this once (only its hash is kept).",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "revoke":
        if not asyncio.run(_in_store(settings, lambda store: ring(store).revoke(args.name))):
            keys = asyncio.run(_in_store(settings, lambda store: store.list_api_keys()))
            gone = next((k for k in keys if k.name == args.name and k.revoked_at), None)
            problem = f"already revoked at {gone.revoked_at}" if gone else "no such key"
            print(
                f"error: no live API key named {args.name!r}: {problem} "
                "(see `fraudwatch keys list`)",
                file=sys.stderr,
            )
            return 1
        print(
            f"API key {args.name!r} revoked; a running server refuses it within "
            f"{settings.api_key_cache_ttl:g} s (api_key_cache_ttl)."
        )
        return 0
    keys = asyncio.run(_in_store(settings, lambda store: store.list_api_keys()))
    print(_key_table(keys))
    return 0


def _key_table(keys: Sequence[ApiKey]) -> str:
    rows = [("NAME", "SCOPES", "CREATED", "LAST USED", "STATUS")]
    for key in keys:
        status = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        used = key.last_used_at or "never"
        rows.append((key.name, ",".join(key.scopes), key.created_at, used, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    lines.append(
        "(and the bootstrap key, from the 'api_key' setting or DATA_DIR/api-key: all scopes)"
    )
    return "\n".join(lines)


def _demo_password(settings: Settings) -> str:
    # Kept beside the database so every demo start can print the same login.
    path = settings.data_dir / "demo-password"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(9)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    asyncio.run(_with_store(settings, DEMO_USER, password, "analyst"))
    return password


def has_terminal() -> bool:
    """Whether getpass can ask on a terminal without echoing: this process has a
    controlling terminal (/dev/tty opens, where getpass prompts and reads whatever stdin
    is), or stdin is one."""
    if sys.stdin is not None and sys.stdin.isatty():
        return True
    if os.name != "posix":  # getpass reads the console there
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


# Allocations between two collections of the youngest generation (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect cyclic garbage less often in the server process.

    Every transaction allocates a few dozen short-lived objects, nearly all freed by
    reference counting; at the default threshold the collector still walked the young
    generation every 700 allocations. With everything alive at start-up frozen out of the
    collector's walks and a threshold of 50,000, the event loop's CPU per transaction in
    benchmarks/e2e.py fell from 53-55 to 44-45 us (two runs each, alternated).
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on `host`'s addresses (as aiohttp would: every address the name has,
    address reuse on, IPv6 sockets IPv6 only), so that a port in use fails here, before the
    command announces a server or starts one. Raises OSError naming the address."""
    sockets: list[socket.socket] = []
    try:
        try:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"cannot listen on {where}:{port}: {reason}") from None
            sock.listen(128)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _run(
    settings: Settings,
    sources: dict[str, str],
    sockets: list[socket.socket],
    banner: Sequence[str],
) -> None:
    from server.app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for line in banner:
        print(line, flush=True)
    tune_gc()
    app = create_app(settings, sources)
    app.cleanup_ctx.append(reload_on_sighup)
    serve(app, sockets)


SHUTDOWN_TIMEOUT_S = 10.0


def serve(app: web.Application, sockets: Sequence[socket.socket]) -> None:
    """Run `app` on `sockets` until SIGINT or SIGTERM, then stop it: as aiohttp's
    `web.run_app` does, but a signal during start-up still closes what start-up opened.
    run_app starts the app (`runner.setup()`: its cleanup contexts, the store, the model,
    the detector's state rebuilt from the store) before the `try` whose `finally` cleans up,
    so a Ctrl-C while a large store was replayed exited 0 without a word, the store never
    closed."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, sockets))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass  # the runner's handlers raise GracefulExit on SIGINT and SIGTERM
    finally:
        try:
            if not main.done():
                main.cancel()  # into wherever it waits: its `finally` stops the app
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            # As run_app: whatever tasks are left are cancelled before the loop closes.
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()


async def _serve(app: web.Application, sockets: Sequence[socket.socket]) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
        keepalive_timeout=75.0,  # run_app's
    )
    serving = False
    try:
        await runner.setup()
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        serving = True
        await asyncio.Future()  # until a signal: GracefulExit, then this task is cancelled
    except asyncio.CancelledError:
        if not serving:
            log.info("stopped while starting: closing what start-up had opened")
        raise
    finally:
        # Also after a failed or interrupted start: the cleanup contexts that were entered
        # are exited (the store closed), in reverse order, and only those.
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Offline tools: they need no settings or store, and report their own errors.
    if args.command == "replay":
        return replay.run(args)
    if args.command == "backtest":
        return backtest.run(args)
    if args.command == "backup":
        return backup.run(args)
    if args.command == "rules":
        return rules_check.run(args)
    try:
        if args.command in ("demo", "serve"):
            sources: dict[str, str] = {}
            settings = (
                _settings(args, sources, simulator=True, simulator_labels=True)
                if args.command == "demo"
                else _settings(args, sources)
            )
            for name in unknown_environment():
                print(
                    f"warning: environment {name} is not a setting, and is ignored "
                    "(docs/settings.md lists them)",
                    file=sys.stderr,
                )
            # Bad rule files stop the start here, with every problem listed, before anything
            # is written to the data directory.
            rules_check.configured_rules(settings, sources)
            # One server per data directory: a second (another --port) shared the database
            # and overwrote the first's detector snapshot, model and server.json, whose
            # removal at its stop then hid the first from `fraudwatch backup`. The lock is
            # held until this process exits.
            if server_file.hold(settings.data_dir) is None:
                other = server_file.running_server(settings.data_dir, check_alive=False)
                which = f" (pid {other.pid}, http://{other.host}:{other.port}/)" if other else ""
                print(
                    f"error: a server already runs on data directory {settings.data_dir}"
                    f"{which}: two would overwrite each other's detector state and model. "
                    "Stop it first, or give this one another --data-dir",
                    file=sys.stderr,
                )
                return 2
            if settings.api_key is None:
                settings = dataclasses.replace(
                    settings, api_key=load_or_create_api_key(settings.data_dir)
                )
            # A port in use stops it here too, before a banner says it serves there.
            sockets = listen(settings.host, settings.port)
            with contextlib.ExitStack() as bound:
                for sock in sockets:
                    bound.callback(sock.close)
                port = sockets[0].getsockname()[1]
                url = f"http://{settings.host}:{port}/"
                banner = [f"fraudwatch {args.command}: {url}", f"  API key:  {settings.api_key}"]
                if args.command == "demo":
                    banner.insert(1, f"  login:    {DEMO_USER} / {_demo_password(settings)}")
                    banner.append(f"  simulator: {settings.rate:g} tx/s (seed {settings.seed})")
                banner.append(f"  data dir: {settings.data_dir.resolve()}")
                # Where `fraudwatch backup` finds this server to ask it for a snapshot.
                server_file.write(settings.data_dir, settings.host, port)
                bound.callback(server_file.remove, settings.data_dir)
                _run(settings, sources, sockets, banner)
            return 0
        if args.command == "users":
            settings = _settings(args)
            # Checked before asking, and before the store is opened: a refusal must not leave
            # a new database behind in a mistyped --data-dir.
            check_user_name(args.name)
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            elif not has_terminal():
                # A script, cron, a container run without -t: getpass would warn that it
                # cannot hide the input, prompt on stderr and read stdin. Say how instead.
                print(
                    "error: no terminal to ask for the password on: give it on stdin with "
                    f"--password-stdin (one line: printf '%s\\n' \"$PASSWORD\" | fraudwatch "
                    f"users add {args.name} --password-stdin)",
                    file=sys.stderr,
                )
                return 2
            else:
                try:
                    password = getpass.getpass(f"Password for {args.name}: ")
                    again = getpass.getpass("Again: ")
                except EOFError:  # Ctrl-D at a prompt
                    print("\nerror: no password given", file=sys.stderr)
                    return 2
                if again != password:
                    print("error: passwords differ", file=sys.stderr)
                    return 2
            check_password(password)
            created = not settings.db_path.exists()
            role = asyncio.run(_with_store(settings, args.name, password, args.role))
            print(f"user {args.name} ({role}) saved in {settings.db_path}")
            if created:
                _new_database_note(settings)
            return 0
        if args.command == "keys":
            return _keys(args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        hint = " (is another server on that port?)" if exc.errno == errno.EADDRINUSE else ""
        # The file it is about: "File exists" alone left the operator to guess (a data dir
        # that is a file, a key file unreadable).
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}{hint}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
