"""What a person trying `fraudwatch demo` sees in its first minute, on a fresh data directory.

Starts `python -m server demo` on a new data directory and a free port, as a user would,
and measures:

- start-up: from the process's start to its banner and to `/healthz` answering 200 (the
  dashboard can be opened), in wall time and in the CPU time the process used to get there
  (a busy host's wall time says little);
- when the simulator went live (its `simulator: live` log line, after the warm-up that
  scores the stream's recent past), and the first alert, from when the dashboard could open;
- the alerts the dashboard has 10 s and `--seconds` (60) s after it could open, by severity
  and by scenario (the simulator's ground truth, stored as labels `simulator_label_delay`
  later: the demo runs that much longer before it is read);
- the fraudulent transactions of that minute (event time) that raised an alert;
- the stop: SIGINT (Ctrl-C), its exit status and how long it took.

    python benchmarks/demo_start.py [--seconds 60] [--rate 50] [--seed 7] [--history S]
                                    [--keep DIR]

`--history` sets `simulator_history` (0: the demo as it was before the warm-up). Writes
benchmarks/results/demo-start-<time>.json. About `--seconds` + 40 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import commit, write_results  # noqa: E402

LABEL_WAIT_S = 35  # simulator_label_delay (30 s) and the labeller's 1 s tick, with room


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def cpu_time(pid: int) -> float:
    """CPU seconds the process has used (all its threads): what a busy host's wall time
    says little about."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(
    data: Path, seconds: float, rate: float, seed: int, history: float | None
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDWATCH_")}
    if history is not None:
        env["FRAUDWATCH_SIMULATOR_HISTORY"] = str(history)
    args = [sys.executable, "-m", "server", "demo", "--port", str(port), "--data-dir",
            str(data), "--rate", str(rate), "--seed", str(seed)]  # fmt: skip
    started_wall, started = time.time(), time.monotonic()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    output: list[str] = []
    banner_at: list[float] = []

    live_at: list[float] = []
    live_cpu: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "data dir:" in line and not banner_at:
                banner_at.append(time.monotonic() - started)
            if "simulator: live" in line and not live_at:
                live_at.append(time.monotonic() - started)
                live_cpu.append(cpu_time(proc.pid))
            output.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() - started > 120:
            raise SystemExit("demo did not start:\n" + "".join(output))
        time.sleep(0.02)
    ready = time.monotonic() - started
    ready_wall = started_wall + ready
    ready_cpu = cpu_time(proc.pid)
    load = os.getloadavg()[0]
    time.sleep(seconds + LABEL_WAIT_S)
    stop_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    stopped = time.monotonic() - stop_at
    reader.join(timeout=5)

    db = sqlite3.connect(f"file:{data / 'fraudwatch.db'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT a.created_at, a.severity, l.label, l.scenario "
        "FROM alerts a LEFT JOIN labels l ON l.transaction_id = a.transaction_id"
    ).fetchall()
    end = ready_wall + seconds
    first = min((stamp(r[0]) - ready_wall for r in rows), default=None)
    by_10 = [r for r in rows if stamp(r[0]) <= ready_wall + 10]
    by_end = [r for r in rows if stamp(r[0]) <= end]
    frauds = db.execute(
        "SELECT count(*), count(t.alert_id) FROM transactions t JOIN labels l "
        "ON l.transaction_id = t.id WHERE l.label = 'fraud' "
        "AND t.event_time_us > ? AND t.event_time_us <= ?",
        (int(ready_wall * 1e6), int(end * 1e6)),
    ).fetchone()
    past = db.execute(
        "SELECT count(*) FROM transactions WHERE event_time_us <= ?", (int(ready_wall * 1e6),)
    ).fetchone()[0]
    db.close()

    def scenario(r: Any) -> str:
        if r[2] is None:
            return "(no label yet)"
        return f"{r[3] or 'everyday'} ({r[2]})"

    def fraud_scenarios(alerts: list[Any]) -> int:
        return len({r[3] for r in alerts if r[2] == "fraud"})

    return {
        "rate": rate,
        "seed": seed,
        "simulator_history": history,
        "seconds": seconds,
        "banner_s": round(banner_at[0], 2) if banner_at else None,
        "ready_s": round(ready, 2),
        "ready_cpu_s": round(ready_cpu, 2),
        "load_average_at_ready": round(load, 2),
        "live_after_ready_s": round(live_at[0] - ready, 2) if live_at else None,
        "warm_up_cpu_s": round(live_cpu[0] - ready_cpu, 2) if live_cpu else None,
        "transactions_before_ready": past,
        "first_alert_after_ready_s": None if first is None else round(first, 2),
        "alerts_by_10s": len(by_10),
        "by_10s_severity": dict(Counter(r[1] for r in by_10)),
        "by_10s_fraud_scenarios": fraud_scenarios(by_10),
        "alerts_by_end": len(by_end),
        "by_end_severity": dict(Counter(r[1] for r in by_end)),
        "by_end_scenario": dict(Counter(scenario(r) for r in by_end).most_common()),
        "by_end_fraud_scenarios": fraud_scenarios(by_end),
        "frauds_in_window": frauds[0],
        "frauds_alerted": frauds[1],
        "stop_exit_code": code,
        "stop_s": round(stopped, 2),
        "log_tail": output[-12:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--history", type=float, help="simulator_history, seconds (default: the setting's)"
    )
    parser.add_argument("--keep", type=Path, help="data directory to use (must not exist)")
    args = parser.parse_args()
    if args.keep is not None:
        result = measure(args.keep, args.seconds, args.rate, args.seed, args.history)
    else:
        with tempfile.TemporaryDirectory() as work:
            data = Path(work) / "data"
            result = measure(data, args.seconds, args.rate, args.seed, args.history)
    result["commit"] = commit()
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=1))
    print("".join(result["log_tail"]))
    print("results:", write_results("demo-start", result))


if __name__ == "__main__":
    main()
