"""Issue 18's figures: several runtime processes on one PostgreSQL store.

``python -m benchmarks.cluster [--trials N] [--flush SECONDS ...]`` starts a
PostgreSQL server of its own (tests/postgres_support.py: initdb in a
temporary directory, 127.0.0.1), two runtime processes A and B
(tests/cluster_child.py, ``cluster=True``), and measures on loopback:

* **stop latency**: a sub-agent of A is inside a long model call; B calls
  ``request_cancel`` on it. Time from that call (in B) to the task's
  ``cancel_event`` set in A, and to ``wait_terminal_blocking`` returning in
  B with the terminal status (the event came back through the store).
* **event lag**: for every event of A's tasks, from its publication in A
  (``TaskEvent.timestamp``) to B's subscriber being called with it.

One clock (one host), so the differences are direct. Writes a JSON report
next to the other results and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.core import percentile  # noqa: E402
from tests.cluster_support import Node, until  # noqa: E402
from tests.postgres_support import create_database, start_postgres  # noqa: E402


def measure(dsn: str, trials: int, flush: float) -> dict[str, Any]:
    timings = ("1.0", "5.0", "1.0")  # heartbeat, dead_after, poll: the fallback stays idle
    a = Node(dsn, "A", timings=timings, flush=flush)
    b = Node(dsn, "B", timings=timings, flush=flush)
    try:
        a.wait_ready()
        b.wait_ready()
        to_cancel_event: list[float] = []
        to_terminal_in_b: list[float] = []
        tasks = []
        for _ in range(trials):
            task = a.call("start", agent="slow", watch_cancel=True)["task_id"]
            tasks.append(task)
            until(lambda t=task: (b.call("get", task_id=t) or {}).get("status") == "running",
                  what="B sees the task running")
            sent = b.call("cancel", task_id=task, reason="bench")
            assert sent["ok"] is True
            ended = b.call("wait", task_id=task, timeout=30)
            assert ended["status"] == "cancelled", ended
            seen_at = until(lambda t=task: a.call("cancel_seen", task_id=t),
                            what="A's cancel_event")
            to_cancel_event.append((seen_at - sent["sent"]) * 1000)
            to_terminal_in_b.append((ended["at"] - sent["sent"]) * 1000)
        time.sleep(max(0.5, 3 * flush))
        wanted = set(tasks)
        lags = [(e["at"] - e["ts"]) * 1000 for e in b.call("events")
                if e["task_id"] in wanted]
        return {
            "flush_interval_s": flush,
            "trials": trials,
            "stop_to_cancel_event_ms": _summary(to_cancel_event),
            "stop_to_terminal_in_b_ms": _summary(to_terminal_in_b),
            "event_lag_ms": _summary(lags),
        }
    finally:
        a.close()
        b.close()


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 50), 2),
        "p99": round(percentile(ordered, 99), 2),
        "max": round(ordered[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--flush", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/issue18-cluster.json"))
    parser.add_argument("--dsn", help="an empty PostgreSQL database to use (default: start one)")
    args = parser.parse_args(argv)
    if args.dsn:
        runs = [measure(args.dsn, args.trials, flush) for flush in args.flush[:1]]
    else:
        servers = start_postgres()
        server = next(servers)
        try:
            runs = [measure(server.dsn(create_database(server)), args.trials, flush)
                    for flush in args.flush]
        finally:
            servers.close()
    report = {
        "schema": 1,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "runs": runs,
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"load average {report['machine']['load_average']}")
    print("| flush interval | figure | p50 ms | p99 ms | max ms | n |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        for figure in ("stop_to_cancel_event_ms", "stop_to_terminal_in_b_ms", "event_lag_ms"):
            s = run[figure]
            print(f"| {run['flush_interval_s']} s | {figure} | {s['p50']} | {s['p99']} | "
                  f"{s['max']} | {s['n']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
