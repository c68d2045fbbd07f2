"""What a page's JS heap holds, by kind: take a V8 heap snapshot over CDP and sum it up.

    .venv/bin/python benchmarks/heap_snapshot.py A.heapsnapshot [B.heapsnapshot]

With one file it prints the largest groups; with two, what changed between them, largest
change first. `benchmarks/dashboard_soak.py --snapshots` takes them during a soak and keeps
the summaries (not the files, tens of MB each) in its result JSON.

A group is a node's type and name as DevTools shows them: an object's constructor
(`Object` for literals and `JSON.parse` output, `Map`, `HTMLTableRowElement`, ...), `(string)`
for every string (the most frequent values are listed too), `(closure) NAME` for functions,
`(array) NAME` for backing stores, `(hidden) NAME` for V8's own, and so on.
Plain objects are also told apart by the properties they hold, so that alerts
(`{account_id, severity, ...}`) and their transactions are counted on their own, and nodes
that DevTools marks detached (DOM nodes no longer in the document) are counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from playwright.async_api import CDPSession

# Plain objects recognised by the properties they hold (all of them).
SHAPES = {
    "alert": ("account_id", "severity", "status", "transaction"),
    "transaction": ("account_id", "merchant_id", "amount", "timestamp"),
    "reason": ("code", "message"),
    "store entry": ("alert", "createdMs", "eventMs"),
    "table row": ("tr", "alert", "actionsCell"),
}
STRINGS = ("string", "concatenated string", "sliced string")
# Kinds whose names say something (a function's name, "system / Map", a Blink type).
NAMED = ("closure", "array", "hidden", "native")
ADDRESS = re.compile(r" @\d+")  # V8 names some nodes by address: not the same across snapshots


async def take(cdp: CDPSession, path: Path) -> None:
    """Write a heap snapshot of the page behind `cdp` to `path` (after a full GC)."""
    chunks: list[str] = []

    def on_chunk(event: dict[str, Any]) -> None:
        chunks.append(event["chunk"])

    cdp.on("HeapProfiler.addHeapSnapshotChunk", on_chunk)
    try:
        await cdp.send("HeapProfiler.enable")
        await cdp.send("HeapProfiler.collectGarbage")
        await cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    finally:
        cdp.remove_listener("HeapProfiler.addHeapSnapshotChunk", on_chunk)
        await cdp.send("HeapProfiler.disable")
    await asyncio.to_thread(path.write_text, "".join(chunks))


def summarize(path: Path) -> dict[str, Any]:
    """Counts and self sizes by group, by shape, and of detached nodes; totals."""
    data = json.loads(path.read_text())
    meta = data["snapshot"]["meta"]
    fields: list[str] = meta["node_fields"]
    types: list[str] = meta["node_types"][0]
    edge_fields: list[str] = meta["edge_fields"]
    edge_types: list[str] = meta["edge_types"][0]
    strings: list[str] = data["strings"]
    nodes: list[int] = data["nodes"]
    edges: list[int] = data["edges"]
    nf, ef = len(fields), len(edge_fields)
    f_type, f_name, f_size = fields.index("type"), fields.index("name"), fields.index("self_size")
    f_edges = fields.index("edge_count")
    f_detached = fields.index("detachedness") if "detachedness" in fields else None
    e_type, e_name = edge_fields.index("type"), edge_fields.index("name_or_index")
    property_edge = edge_types.index("property")

    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    shape_count: Counter[str] = Counter()
    shape_size: Counter[str] = Counter()
    detached: Counter[str] = Counter()
    values: Counter[str] = Counter()
    edge = 0
    for i in range(0, len(nodes), nf):
        kind = types[nodes[i + f_type]]
        name = strings[nodes[i + f_name]]
        n_edges = nodes[i + f_edges]
        self_size = nodes[i + f_size]
        if kind == "object":
            group = ADDRESS.sub("", name)
        elif kind in STRINGS:
            group = "(string)"
            values[name[:40]] += 1
        elif kind in NAMED:
            group = f"({kind}) {ADDRESS.sub('', name)[:60]}"
        else:
            group = f"({kind})"
        count[group] += 1
        size[group] += self_size
        if f_detached is not None and nodes[i + f_detached] == 2:
            detached[group] += 1
        if kind == "object" and name == "Object":
            props = {
                strings[edges[e + e_name]]
                for e in range(edge, edge + n_edges * ef, ef)
                if edges[e + e_type] == property_edge
            }
            for shape, wanted in SHAPES.items():
                if props.issuperset(wanted):
                    shape_count[shape] += 1
                    shape_size[shape] += self_size
        edge += n_edges * ef
    return {
        "nodes": len(nodes) // nf,
        "total_bytes": sum(size.values()),
        "groups": {g: {"count": count[g], "bytes": size[g]} for g in count},
        "shapes": {s: {"count": shape_count[s], "bytes": shape_size[s]} for s in SHAPES},
        "detached": dict(detached),
        "strings": dict(values.most_common(40)),
    }


def brief(summary: dict[str, Any], n: int = 100) -> dict[str, Any]:
    """The summary with only its `n` largest groups: what a result file keeps."""
    groups = summary["groups"]
    largest = sorted(groups, key=lambda g: groups[g]["bytes"], reverse=True)[:n]
    return {**summary, "groups": {g: groups[g] for g in largest}}


def top(summary: dict[str, Any], n: int = 25) -> list[tuple[str, int, int]]:
    groups = summary["groups"]
    ranked = sorted(groups, key=lambda g: groups[g]["bytes"], reverse=True)[:n]
    return [(g, groups[g]["count"], groups[g]["bytes"]) for g in ranked]


def diff(before: dict[str, Any], after: dict[str, Any], n: int = 25) -> list[tuple[str, int, int]]:
    """(group, change in count, change in bytes), largest change in bytes first."""
    names = set(before["groups"]) | set(after["groups"])
    zero = {"count": 0, "bytes": 0}
    rows = [
        (
            g,
            after["groups"].get(g, zero)["count"] - before["groups"].get(g, zero)["count"],
            after["groups"].get(g, zero)["bytes"] - before["groups"].get(g, zero)["bytes"],
        )
        for g in names
    ]
    rows = [r for r in rows if r[1] or r[2]]
    rows.sort(key=lambda r: abs(r[2]), reverse=True)
    return rows[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshots", nargs="+", type=Path, help="one or two .heapsnapshot files")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    summaries = [summarize(path) for path in args.snapshots[:2]]
    for path, s in zip(args.snapshots, summaries, strict=False):
        print(f"{path}: {s['nodes']:,} nodes, {s['total_bytes'] / 2**20:.2f} MB")
        print(f"  shapes: {s['shapes']}")
        print(f"  detached: {s['detached']}")
    if len(summaries) == 1:
        for g, c, b in top(summaries[0], args.top):
            print(f"{g[:60]:60} {c:9,} {b:12,}")
        return
    print(f"{'group':60} {'count':>9} {'bytes':>12}")
    for g, c, b in diff(*summaries, n=args.top):
        print(f"{g[:60]:60} {c:+9,} {b:+12,}")


if __name__ == "__main__":
    main()
