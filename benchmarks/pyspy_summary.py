"""Where the time goes, from a `py-spy record --format raw --threads --idle` file.

Usage: .venv/bin/python benchmarks/pyspy_summary.py PROFILE.txt [--top 20]

Per thread: samples, the share spent idle (waiting in select/epoll or on a lock), then the
functions with the most samples on the CPU, by self time and by inclusive time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

# Leaf functions where a thread waits rather than computes (EpollSelector.select, Condition.wait).
# A thread-pool worker blocked on its (C) queue shows `_worker` itself as the leaf.
IDLE_LEAVES = frozenset({"select", "poll", "wait", "acquire", "sleep", "get", "_worker"})
_LINE = re.compile(r"^(.*) (\d+)$")
# "name (path/to/file.py:123)" → "name (file.py)": one entry per function, not per line.
_FRAME = re.compile(r"^(.*) \((?:.*/)?([^/:]+)(?::\d+)?\)$")


def _frame(text: str) -> str:
    match = _FRAME.match(text)
    return f"{match.group(1)} ({match.group(2)})" if match else text


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0].rsplit(".", 1)[-1]


def summarize(path: Path, top: int) -> list[str]:
    samples: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stack, count = match.group(1).split(";"), int(match.group(2))
        thread = stack[0] if stack[0].startswith(("thread", "process")) else "?"
        frames = [_frame(f) for f in stack[1:]] if thread != "?" else [_frame(f) for f in stack]
        samples[thread] += count
        if not frames or _function(frames[-1]) in IDLE_LEAVES:
            idle[thread] += count
            continue
        self_time[thread][frames[-1]] += count
        for name in set(frames):
            inclusive[thread][name] += count
    out: list[str] = []
    for thread, total in samples.most_common():
        busy = total - idle[thread]
        out.append(
            f"{thread}: {total} samples, {100 * idle[thread] / total:.0f} % idle, {busy} on CPU"
        )
        if busy < total * 0.02:
            continue
        out.append(f"  self (share of on-CPU samples), top {top}:")
        out += [
            f"    {100 * n / busy:5.1f} %  {name}" for name, n in self_time[thread].most_common(top)
        ]
        out.append(f"  inclusive, top {top}:")
        out += [
            f"    {100 * n / busy:5.1f} %  {name}" for name, n in inclusive[thread].most_common(top)
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    print("\n".join(summarize(args.profile, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
