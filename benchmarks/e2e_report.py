"""The benchmark's figures: per phase from the loader's log and the clients' receive times,
then the table and the floors."""

from __future__ import annotations

import array
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from e2e_clients import CLIENTS, VERDICT_CLIENTS
from e2e_loader import FIXED_RATE

FLOOR_TPS = 10_000.0
FLOOR_P99_MS = 100.0
FLOOR_RATIO = 3.0
# The fixed rate counts as sustained when every request is answered and the last answer comes
# within this long of the last send: a server that falls behind builds a backlog instead.
SUSTAINED_TAIL_S = 1.0


def _pct(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 2)


def _phase_figures(phase: dict[str, Any], received: list[array.array[int]]) -> dict[str, Any]:
    rows = phase["requests"]
    ok = [r for r in rows if r[4] == 200]
    answered = sum(r[5] for r in ok)
    last_answer = max((r[3] for r in ok), default=phase["ended_ns"])
    elapsed = max((last_answer - phase["started_ns"]) / 1e9, 1e-9)
    http_ms = sorted((r[3] - r[2]) / 1e6 for r in ok)
    delivered = [0] * VERDICT_CLIENTS
    latencies: list[float] = []
    last_receive = 0
    for slot, times in enumerate(received):
        for start, n, sent, *_ in ok:
            part = times[start : start + n]
            got = n - part.count(0)
            delivered[slot] += got
            if got:
                last_receive = max(last_receive, max(part))
                latencies.extend((t - sent) / 1e6 for t in part if t)
    latencies.sort()
    loop_s = phase["cpu_s"].get("server_loop", 0.0)
    last_send = max((r[2] for r in rows), default=phase["started_ns"])
    delivery_span = max((last_receive - phase["started_ns"]) / 1e9, elapsed)
    return {
        "seconds": round(elapsed, 2),
        "name": phase["name"],
        "requests": len(rows),
        "sent": sum(r[1] for r in rows),
        "failed_requests": len(rows) - len(ok),
        "answered": answered,
        "flagged": sum(r[6] for r in ok),
        "answered_per_s": round(answered / elapsed, 1),
        "http_ms": {"p50": _pct(http_ms, 0.5), "p99": _pct(http_ms, 0.99)},
        "delivered": delivered,
        "delivered_pct": round(100 * min(delivered) / answered, 2) if answered else None,
        "verdicts_delivered_per_s": round(sum(delivered) / delivery_span, 1),
        "ingest_to_client_ms": {
            "p50": _pct(latencies, 0.5),
            "p99": _pct(latencies, 0.99),
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "server_cpu_cores": round(phase["cpu_s"].get("server", 0.0) / elapsed, 2),
        "clients_cpu_cores": round(phase["cpu_s"].get("clients", 0.0) / elapsed, 2),
        "softirq_cpu_cores": round(phase["cpu_s"].get("softirq", 0.0) / elapsed, 2),
        "others_cpu_cores": round(max(0.0, phase["cpu_s"].get("others", 0.0)) / elapsed, 2),
        # Event-loop CPU per transaction, and the rate it allows if that thread had a core:
        # figures a busy shared machine distorts far less than the rates above.
        "loop_cpu_us_per_tx": round(1e6 * loop_s / answered, 1) if answered else None,
        "loop_bound_tx_per_s": round(answered / loop_s) if loop_s and answered else None,
        "loop_kernel_pct": round(100 * phase["cpu_s"].get("server_loop_kernel", 0.0) / loop_s)
        if loop_s
        else None,
        "cpu_s": phase["cpu_s"],
        "max_schedule_lag_s": round(phase["max_lag_s"], 3),
        # How long after the last request went out the last answer came: a backlog shows here.
        "tail_s": round((last_answer - last_send) / 1e9, 3),
        "drain_s": phase["drain_s"],
        "errors": phase["errors"],
    }


def summarize(
    design: str,
    work: Path,
    phases: list[dict[str, Any]],
    metrics: dict[str, float],
    peak_rss: float | None,
    final_drain: float | None,
) -> dict[str, Any]:
    received = []
    for slot in range(VERDICT_CLIENTS):
        times = array.array("q")
        with open(work / f"received-{slot}.bin", "rb") as f:
            times.frombytes(f.read())
        received.append(times)
    clients = json.loads((work / "clients.json").read_text())
    figures = {p["name"]: _phase_figures(p, received) for p in phases}
    fixed = figures["fixed"]
    fixed["sustained"] = (
        fixed["answered"] == fixed["sent"]
        and fixed["tail_s"] <= SUSTAINED_TAIL_S
        and fixed["max_schedule_lag_s"] <= SUSTAINED_TAIL_S
    )
    flagged = sum(f["flagged"] for f in figures.values())
    alerts = clients["alerts"]
    return {
        "design": design,
        "phases": figures,
        "peak_rss_mib": peak_rss,
        "final_drain_s": final_drain,
        "alerts_expected": flagged,
        "alerts_delivered_min": min(alerts),
        "alerts_delivered_max": max(alerts),
        "client_disconnects": [c for c in clients["closed"] if c],
        # Everything the server wrote to the clients over the run, both phases.
        "ws_frames": {
            "verdict_subscribers": sum(clients["frames"][:VERDICT_CLIENTS]),
            "alert_only": sum(clients["frames"][VERDICT_CLIENTS:]),
        },
        "ws_mib": {
            "verdict_subscribers": round(sum(clients["chars"][:VERDICT_CLIENTS]) / 2**20, 1),
            "alert_only": round(sum(clients["chars"][VERDICT_CLIENTS:]) / 2**20, 1),
        },
        "client_errors": clients["errors"][:20],
        "server_metrics": {
            k: v
            for k, v in metrics.items()
            if k.endswith(("_dropped_total", "_disconnects_total", "transactions_total"))
        },
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or abs(value) >= 100 or value == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.1f}{unit}"


def _max(r: dict[str, Any]) -> dict[str, Any]:
    return r["phases"]["max"]  # type: ignore[no-any-return]


def _fixed(r: dict[str, Any]) -> dict[str, Any]:
    return r["phases"]["fixed"]  # type: ignore[no-any-return]


# (label, figure, unit, show batched/naive): the table report() prints.
ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None], str, bool]] = [
    ("max: transactions answered/s", lambda r: _max(r)["answered_per_s"], "", True),
    (
        f"max: verdicts delivered/s ({VERDICT_CLIENTS} subscribers)",
        lambda r: _max(r)["verdicts_delivered_per_s"],
        "",
        True,
    ),
    ("max: delivered/answered, worst subscriber", lambda r: _max(r)["delivered_pct"], " %", False),
    ("max: HTTP answer p50", lambda r: _max(r)["http_ms"]["p50"], " ms", False),
    ("max: HTTP answer p99", lambda r: _max(r)["http_ms"]["p99"], " ms", False),
    ("max: ingest→client p50", lambda r: _max(r)["ingest_to_client_ms"]["p50"], " ms", False),
    ("max: ingest→client p99", lambda r: _max(r)["ingest_to_client_ms"]["p99"], " ms", False),
    ("max: failed requests", lambda r: _max(r)["failed_requests"], "", False),
    ("max: server CPU", lambda r: _max(r)["server_cpu_cores"], " cores", False),
    ("max: clients process CPU", lambda r: _max(r)["clients_cpu_cores"], " cores", False),
    (
        "max: kernel softirq CPU (loopback TCP)",
        lambda r: _max(r)["softirq_cpu_cores"],
        " cores",
        False,
    ),
    ("max: CPU of unrelated processes", lambda r: _max(r)["others_cpu_cores"], " cores", False),
    ("max: event-loop CPU per transaction", lambda r: _max(r)["loop_cpu_us_per_tx"], " µs", False),
    ("max: share of it in the kernel", lambda r: _max(r)["loop_kernel_pct"], " %", False),
    (
        "max: tx/s if the event loop had a core",
        lambda r: _max(r)["loop_bound_tx_per_s"],
        "",
        True,
    ),
    (
        f"fixed {FIXED_RATE:,.0f}/s: transactions answered/s",
        lambda r: _fixed(r)["answered_per_s"],
        "",
        False,
    ),
    ("fixed: verdicts delivered/s", lambda r: _fixed(r)["verdicts_delivered_per_s"], "", False),
    (
        "fixed: delivered/answered, worst subscriber",
        lambda r: _fixed(r)["delivered_pct"],
        " %",
        False,
    ),
    ("fixed: ingest→client p50", lambda r: _fixed(r)["ingest_to_client_ms"]["p50"], " ms", False),
    ("fixed: ingest→client p99", lambda r: _fixed(r)["ingest_to_client_ms"]["p99"], " ms", False),
    ("fixed: HTTP answer p50", lambda r: _fixed(r)["http_ms"]["p50"], " ms", False),
    ("fixed: HTTP answer p99", lambda r: _fixed(r)["http_ms"]["p99"], " ms", False),
    ("fixed: failed requests", lambda r: _fixed(r)["failed_requests"], "", False),
    ("fixed: server CPU", lambda r: _fixed(r)["server_cpu_cores"], " cores", False),
    ("fixed: CPU of unrelated processes", lambda r: _fixed(r)["others_cpu_cores"], " cores", False),
    ("alerts expected (flagged verdicts)", lambda r: r["alerts_expected"], "", False),
    (
        f"alerts delivered, worst of {CLIENTS} clients",
        lambda r: r["alerts_delivered_min"],
        "",
        False,
    ),
    ("peak RSS (server, VmHWM)", lambda r: r["peak_rss_mib"], " MiB", False),
]


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    names = list(results)
    both = "batched" in results and "naive" in results
    header = [*names, "batched/naive"] if both else names
    body: list[tuple[str, list[str]]] = []
    for label, figure, unit, ratio in ROWS:
        cells = [_fmt(figure(results[n]), unit) for n in names]
        if both:
            b, n = figure(results["batched"]), figure(results["naive"])
            cells.append(f"{b / n:,.1f}x" if ratio and b is not None and n else "")
        body.append((label, cells))
    width = max(len(label) for label, _ in body)
    lines = [f"{'':{width}}  " + "  ".join(f"{h:>13}" for h in header)]
    lines += [f"{label:{width}}  " + "  ".join(f"{c:>13}" for c in cells) for label, cells in body]
    for name in names:
        fixed = _fixed(results[name])
        if not fixed["sustained"]:
            lines.append(
                f"note: {name} did not sustain {FIXED_RATE:,.0f} tx/s: {fixed['answered']:,} of "
                f"{fixed['sent']:,} answered, the last {fixed['tail_s']:.1f} s after the last send"
            )
        for phase in results[name]["phases"].values():
            for error, count in phase["errors"].items():
                lines.append(f"note: {name}, {phase['name']} phase: {count} x {error}")
    return lines


def floors(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each floor: what it asks, what was measured, and met (True/False; None: not measurable)."""
    out: dict[str, dict[str, Any]] = {}
    if "batched" in results:
        mx, fx = _max(results["batched"]), _fixed(results["batched"])
        out["throughput"] = {
            "want": f">= {FLOOR_TPS:,.0f} tx/s answered, every verdict to all "
            f"{VERDICT_CLIENTS} subscribers",
            "got": f"{mx['answered_per_s']:,.0f} tx/s, worst subscriber {mx['delivered_pct']} %",
            "met": mx["answered_per_s"] >= FLOOR_TPS and mx["delivered_pct"] == 100.0,
        }
        p99 = fx["ingest_to_client_ms"]["p99"]
        out["latency"] = {
            "want": f"ingest→client p99 <= {FLOOR_P99_MS:.0f} ms at {FIXED_RATE:,.0f} tx/s",
            "got": f"p99 {_fmt(p99)} ms; {'' if fx['sustained'] else 'not '}sustained",
            "met": p99 is not None and p99 <= FLOOR_P99_MS and fx["sustained"],
        }
    if "batched" in results and "naive" in results:
        naive = _max(results["naive"])
        batched_tps = _max(results["batched"])["answered_per_s"]
        ratio = batched_tps / naive["answered_per_s"] if naive["answered_per_s"] else None
        met: bool | None = ratio is not None and ratio >= FLOOR_RATIO
        got = "no naive answers" if ratio is None else f"{ratio:,.1f}x"
        if naive["failed_requests"] or ratio is None:
            met = None  # a baseline that fails requests is not a baseline
            got += f"; {naive['failed_requests']} naive requests failed"
        out["versus_naive"] = {
            "want": f">= {FLOOR_RATIO:.0f}x the naive design's answered tx/s",
            "got": got,
            "met": met,
        }
    return out


def floor_lines(checked: dict[str, dict[str, Any]]) -> list[str]:
    words = {True: "met", False: "MISSED", None: "NOT MEASURED"}
    return [
        f"floor {name}: {words[f['met']]} (want {f['want']}; got {f['got']})"
        for name, f in checked.items()
    ]
