"""`fraudwatch backup` as operators run it: real `fraudwatch` processes on real files, the
backup taken while a live server is being fed, and a new server started on the copy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from server.backup import DATA_FILES, DB_NAME, classify
from tests.conftest import API_KEY, AUTH
from tests.live_server import Loader, alert_ids, events, start_live
from tests.test_cli import fraudwatch

PASSWORD = "carol-s3cret-enough"
# The bootstrap key from DATA_DIR/api-key (api_key unset), a model that is in use after a
# handful of labels, and detector snapshots every second, so that all of them are files.
SETTINGS: dict[str, Any] = {
    "api_key": "",
    "model_min_labels": 10,
    "model_min_frauds": 2,
    "state_snapshot_interval": 1,
}


def _without_latency(verdict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verdict.items() if k != "latency_ms"}


async def _model(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/scorecard") as resp:
        assert resp.status == 200
        model: dict[str, Any] = (await resp.json())["model"]
        return model


async def _log_in(http: aiohttp.ClientSession, url: str) -> int:
    """Sign in as carol; the status of the dashboard she is sent to (200: signed in)."""
    form = {"username": "carol", "password": PASSWORD}
    async with http.post(f"{url}/login", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    return await _dashboard(http, url)


async def _dashboard(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/", allow_redirects=False) as resp:
        return resp.status


def _consistent(db: Path) -> None:
    """What a torn copy would break: every alert its transaction names, an unbroken seq."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM transactions WHERE alert_id IS NOT NULL "
            "AND alert_id NOT IN (SELECT id FROM alerts)"
        ).fetchone()[0]
        assert orphans == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    seqs = [seq for seq, _ in events(db)]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_backup_taken_while_the_server_is_fed_restarts_with_its_state(
    tmp_path: Path,
) -> None:
    data, dest = tmp_path / "data", tmp_path / "backup"
    data.mkdir()
    # The bootstrap key the loader sends, kept in DATA_DIR/api-key as the server keeps it.
    (data / "api-key").write_text(API_KEY + "\n", encoding="utf-8")
    (data / "api-key").chmod(0o600)
    with contextlib.ExitStack() as stack:
        live = await start_live(data, stack, **SETTINGS)
        added = await asyncio.to_thread(
            fraudwatch, "users", "add", "carol", "--password-stdin", "--data-dir", str(data),
            input=PASSWORD + "\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        created = await asyncio.to_thread(
            fraudwatch, "keys", "create", "feeder", "--scopes", "read", "--data-dir", str(data)
        )
        assert created.returncode == 0, created.stderr
        feeder = created.stdout.strip()
        carol = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with carol, aiohttp.ClientSession(headers=AUTH) as http:
            assert await _log_in(carol, live.url) == 200
            async with Loader(live.url, clients=3) as loader:
                await loader.until(1500, within=60)
                # Labels for the first 100 answered: the card-testing ones (which alerted)
                # as fraud, the rest legitimate; the model learns them and saves itself.
                labelled = list(loader.verdicts.items())[:100]
                labels = [
                    {"transaction_id": tx_id, "label": "fraud" if v["alert_id"] else "legitimate"}
                    for tx_id, v in labelled
                ]
                async with http.post(f"{live.url}/api/v1/labels", json=labels) as resp:
                    assert resp.status == 200, await resp.text()
                for _ in range(300):
                    model = await _model(http, live.url)
                    if model["model_version"] >= len(labels):
                        break
                    await asyncio.sleep(0.1)
                assert model["active"], model
                before = dict(loader.verdicts)
                answered_at_start = len(loader.verdicts)
                backed_up = await asyncio.to_thread(
                    fraudwatch, "backup", str(dest), "--data-dir", str(data)
                )
                answered_at_end = len(loader.verdicts)
            assert backed_up.returncode == 0, backed_up.stderr
            # The feed went on during the backup, and the copy took more than one step.
            assert answered_at_end > answered_at_start, (answered_at_start, answered_at_end)
            out = backed_up.stdout
            steps = re.search(r"in (\d+) steps? \(longest", out)
            assert steps is not None and int(steps.group(1)) > 1, out
            assert "integrity_check ok" in out and "backup complete" in out, out
            for name in ("session.key", "api-key", "model.json", "detector-state.msgpack"):
                assert re.search(rf"^  {re.escape(name)}\s", out, re.M), (name, out)
                # Secrets stay readable by the owner alone.
                assert stat.S_IMODE((dest / name).stat().st_mode) == stat.S_IMODE(
                    (data / name).stat().st_mode
                )
            assert stat.S_IMODE(dest.stat().st_mode) == 0o700
            assert sorted(p.name for p in dest.iterdir()) == sorted(
                [DB_NAME, "session.key", "api-key", "model.json", "detector-state.msgpack"]
            )
        assert live.stop() == 0
        # What the server left in DATA_DIR is all either copied or transient.
        names, _transient, others = classify(data)
        assert others == [] and set(names) <= {name for name, _ in DATA_FILES}

        _consistent(dest / DB_NAME)
        with contextlib.closing(sqlite3.connect(dest / DB_NAME)) as conn:
            (journal,) = conn.execute("PRAGMA journal_mode").fetchone()
        assert journal == "wal"

        restored = await start_live(dest, stack, **SETTINGS)
        assert f"detector state restored from {dest / 'detector-state.msgpack'}" in (
            restored.output()
        )
        carol = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with carol, aiohttp.ClientSession(headers=AUTH) as http:
            # Every transaction answered before the backup began: re-sent, it answers the
            # verdict it was first answered with (so it is stored, with its alert id).
            ids = list(before)
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                records = [loader.accepted[tx_id] for tx_id in chunk]
                async with http.post(f"{restored.url}/api/v1/transactions", json=records) as resp:
                    assert resp.status == 200, await resp.text()
                    results = (await resp.json())["results"]
                assert [_without_latency(r) for r in results] == [
                    _without_latency(before[tx_id]) for tx_id in chunk
                ]
            alerted = {v["alert_id"] for v in before.values() if v["alert_id"]}
            assert alerted and alerted <= alert_ids(dest / DB_NAME)
            some = sorted(alerted)[0]
            async with http.get(f"{restored.url}/api/v1/alerts/{some}") as resp:
                assert resp.status == 200
            # The model as it was: the same labels learnt, in use.
            again = await _model(http, restored.url)
            kept = ("active", "model_version", "calibration")
            assert {k: again[k] for k in kept} == {k: model[k] for k in kept}
            # The user and the named key, from the database; the bootstrap key (the loader's
            # and this client's) from DATA_DIR/api-key.
            assert await _log_in(carol, restored.url) == 200
            headers = {"Authorization": f"Bearer {feeder}"}
            async with http.get(f"{restored.url}/api/v1/alerts", headers=headers) as resp:
                assert resp.status == 200
        assert restored.stop() == 0


async def test_a_session_survives_the_restore(tmp_path: Path) -> None:
    """session.key and the sessions table travel together: a signed-in analyst stays in."""
    data, dest = tmp_path / "data", tmp_path / "backup"
    added = fraudwatch(
        "users", "add", "carol", "--password-stdin", "--data-dir", str(data),
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    with contextlib.ExitStack() as stack:
        live = await start_live(data, stack)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as carol:
            assert await _log_in(carol, live.url) == 200
        assert live.stop() == 0
        done = await asyncio.to_thread(fraudwatch, "backup", str(dest), "--data-dir", str(data))
        assert done.returncode == 0, done.stderr
        restored = await start_live(dest, stack)
        async with aiohttp.ClientSession(cookie_jar=jar) as carol:
            assert await _dashboard(carol, restored.url) == 200
        assert restored.stop() == 0


def make_database(data: Path) -> subprocess.CompletedProcess[str]:
    # `keys list` no longer makes one in a data directory without it.
    return fraudwatch("keys", "create", "backups", "--scopes", "backup", "--data-dir", str(data))


def test_a_server_that_is_not_a_url_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert make_database(data).returncode == 0
    dest = tmp_path / "dest"
    for server in ("notaurl", "127.0.0.1:8000", "http://127.0.0.1:port"):
        done = fraudwatch("backup", str(dest), "--data-dir", str(data), "--server", server)
        assert done.returncode == 2, (server, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip() == (
            f"error: --server {server!r} is not a URL like http://127.0.0.1:8000"
        )
        assert not dest.exists()


def test_the_restore_command_keeps_the_settings_file(tmp_path: Path) -> None:
    # Restored as printed without it, a server ran with the default thresholds and rule
    # pack: the backed-up one's settings silently gone.
    data = tmp_path / "data"
    assert make_database(data).returncode == 0
    config = tmp_path / "etc dir" / "fraudwatch.toml"
    config.parent.mkdir()
    config.write_text('data_dir = "../data"\nreview_threshold = 0.55\n', encoding="utf-8")
    dest = tmp_path / "dest"
    done = fraudwatch("backup", str(dest), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(
        f"; restore with: fraudwatch serve --config '{config}' --data-dir {dest}"
    )
    plain = fraudwatch("backup", str(tmp_path / "plain"), "--data-dir", str(data))
    assert plain.stdout.splitlines()[-1].endswith(
        f"; restore with: fraudwatch serve --data-dir {tmp_path / 'plain'}"
    )


def test_a_destination_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert make_database(data).returncode == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me", encoding="utf-8")
    done = fraudwatch("backup", str(dest), "--data-dir", str(data))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"error: {dest} is not empty: back up to a new or empty directory"
    )
    assert [p.name for p in dest.iterdir()] == ["precious.txt"]
    assert (dest / "precious.txt").read_text(encoding="utf-8") == "keep me"

    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    done = fraudwatch("backup", str(a_file), "--data-dir", str(data))
    assert done.returncode == 2
    assert "exists and is not a directory" in done.stderr

    done = fraudwatch("backup", str(data / "inside"), "--data-dir", str(data))
    assert done.returncode == 2 and "inside the data directory" in done.stderr
    assert not (data / "inside").exists()


def test_no_database_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    done = fraudwatch("backup", str(dest), "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "no database at" in done.stderr
    assert not dest.exists() and not (tmp_path / "nowhere").exists()


def test_temporary_files_are_skipped_and_strangers_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert make_database(data).returncode == 0
    (data / "model.json").write_text("{}", encoding="utf-8")
    (data / "model.json.tmp").write_text("{half", encoding="utf-8")
    (data / "detector-state.msgpack.bad").write_bytes(b"damaged")
    (data / "notes.txt").write_text("mine", encoding="utf-8")
    (data / "rules").mkdir()
    dest = tmp_path / "empty"
    dest.mkdir()  # an empty directory is as good as a new one
    done = fraudwatch("backup", str(dest), "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dest.iterdir()) == [DB_NAME, "model.json"]
    assert (dest / "model.json").read_text(encoding="utf-8") == "{}"
    assert (
        "skipped (temporary, or in the database copy): detector-state.msgpack.bad, model.json.tmp"
    ) in done.stdout
    assert "left out (not fraudwatch's files): notes.txt, rules/" in done.stdout


def test_the_copy_is_checked_and_a_bad_one_is_not_reported_as_a_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert make_database(data).returncode == 0
    db = data / DB_NAME
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE ballast (n INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("CREATE INDEX ballast_text ON ballast (text)")
        conn.executemany(
            "INSERT INTO ballast (text) VALUES (?)", [(f"row {i}" * 9,) for i in range(3000)]
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    # A page in the middle of the file overwritten: the backup copies pages as they are,
    # so only the check of the copy can tell.
    with db.open("r+b") as f:
        f.seek((pages // 2) * page_size)
        f.write(os.urandom(page_size))
    for dest, reason in ((tmp_path / "damaged", "failed integrity_check"),):
        done = fraudwatch("backup", str(dest), "--data-dir", str(data))
        assert done.returncode == 1, done.stdout
        assert reason in done.stderr and "does not hold a usable backup" in done.stderr
        assert done.stdout == ""
        assert [p.name for p in dest.iterdir()] == []  # no database, no temporary file
    # Not a database at all: SQLite refuses it, and the message says so.
    db.write_bytes(os.urandom(8192))
    done = fraudwatch("backup", str(tmp_path / "garbage"), "--data-dir", str(data))
    assert done.returncode == 1 and "not a database" in done.stderr, done.stderr
    assert list((tmp_path / "garbage").iterdir()) == []
