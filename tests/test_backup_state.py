"""The detector state in a backup of a running server: what a restored server remembers
of each account, checked on real `fraudwatch` processes and files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import urllib.parse
from pathlib import Path

from tests.conftest import API_KEY, card_testing
from tests.live_server import BASE, LiveServer, post_transactions, start_live
from tests.test_cli import fraudwatch

# The default interval: in a test's lifetime the running server writes no periodic snapshot.
INTERVAL = {"state_snapshot_interval": 300}


def _settings_of(server: LiveServer) -> dict[str, str]:
    """The environment the server runs with, for a `fraudwatch backup` beside it: its
    port and its `api_key`, as an operator runs both with one configuration."""
    port = urllib.parse.urlsplit(server.url).port
    return {**os.environ, "FRAUDWATCH_API_KEY": API_KEY, "FRAUDWATCH_PORT": str(port)}


async def test_a_backup_of_a_running_server_restores_each_accounts_history(
    tmp_path: Path,
) -> None:
    """Three tiny charges on one account: the first before a restart (so on disk there is a
    snapshot, as there is after any restart or periodic snapshot), the second to the running
    server, a backup, then the third to a server started on the backup. It is the third
    tiny charge in ten minutes and card testing must fire on it, as without the restore."""
    data, dest = tmp_path / "data", tmp_path / "backup"
    probes = card_testing("ct", "acct-backup", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        assert not (await post_transactions(server.url, probes[:1]))[0]["reasons"]
        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert (data / "detector-state.msgpack").exists()  # the first charge is in it

        server = await start_live(data, stack, **INTERVAL)
        assert not (await post_transactions(server.url, probes[1:2]))[0]["reasons"]
        done = await asyncio.to_thread(
            fraudwatch, "backup", str(dest), "--data-dir", str(data), env=_settings_of(server)
        )
        assert done.returncode == 0, done.stderr
        assert server.stop() == 0

        restored = await start_live(dest, stack, **INTERVAL)
        verdict = (await post_transactions(restored.url, probes[2:]))[0]
        assert restored.stop() == 0
    # The snapshot as last written (before the second charge) lacked the second charge: a
    # server started on it replays it from the database copy. The one written for the
    # backup has it already, and nothing is left to replay.
    assert "detector state: replayed" not in restored.output()
    assert [r["code"] for r in verdict["reasons"]] == ["card_testing"], (verdict, done.stdout)
    assert verdict["reasons"][0]["observed"] == 3
    note = f"detector state: written for this backup by the server at {server.url} ("
    assert note in done.stdout and done.stderr == "", (done.stdout, done.stderr)


async def test_with_no_server_running_the_snapshot_it_wrote_at_shutdown_is_copied(
    tmp_path: Path,
) -> None:
    data, dest = tmp_path / "data", tmp_path / "backup"
    probes = card_testing("ct", "acct-stopped", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, probes[:2])
        env = _settings_of(server)
        assert server.stop() == 0
        done = await asyncio.to_thread(
            fraudwatch, "backup", str(dest), "--data-dir", str(data), env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # nothing to warn about: the file on disk is current
        assert (
            "detector state: copied as on disk, as the server wrote it when it stopped: "
            f"no server answered at {server.url}\n"
        ) in done.stdout
        restored = await start_live(dest, stack, **INTERVAL)
        verdict = (await post_transactions(restored.url, probes[2:]))[0]
        assert restored.stop() == 0
    assert [r["code"] for r in verdict["reasons"]] == ["card_testing"], verdict


async def test_a_server_that_refuses_the_snapshot_is_warned_about_and_the_backup_made(
    tmp_path: Path,
) -> None:
    data, dest = tmp_path / "data", tmp_path / "backup"
    wrong = tmp_path / "wrong-key"
    wrong.write_text("fw_not-a-key\n", encoding="utf-8")
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, card_testing("ct", "acct-refused", n=2, at=BASE))
        done = await asyncio.to_thread(
            fraudwatch, "backup", str(dest), "--data-dir", str(data), "--key-file", str(wrong),
            env=_settings_of(server),
        )  # fmt: skip
        assert server.stop() == 0
    # The database copy is whole; the state is what was on disk (here: none yet), and the
    # operator is told why and what it means.
    assert done.returncode == 0, done.stderr
    assert "backup complete" in done.stdout
    assert f"the server at {server.url} answered 401" in done.stdout
    assert done.stderr.startswith("warning: detector state none on disk to copy: "), done.stderr
    assert "state_snapshot_interval older than the database" in done.stderr


async def test_a_backup_finds_the_server_running_on_its_data_dir(tmp_path: Path) -> None:
    # Started with a port of its own (--port, as the live server is) while the backup's
    # settings say 8000: the server records where it listens in DATA_DIR/server.json, and the
    # backup asks it there; the file is not copied, and the server removes it as it stops.
    data, dest = tmp_path / "data", tmp_path / "backup"
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, card_testing("ct", "acct-found", n=2, at=BASE))
        assert (data / "server.json").exists()
        env = {**os.environ, "FRAUDWATCH_API_KEY": API_KEY}
        env.pop("FRAUDWATCH_PORT", None)
        done = await asyncio.to_thread(
            fraudwatch, "backup", str(dest), "--data-dir", str(data), env=env
        )
        assert done.returncode == 0, done.stderr
        assert server.stop(signal.SIGTERM) == 0
    note = f"detector state: written for this backup by the server at {server.url} ("
    assert note in done.stdout and done.stderr == "", (done.stdout, done.stderr)
    assert "server.json" in done.stdout  # named among the skipped
    assert not (dest / "server.json").exists()
    assert not (data / "server.json").exists()
