"""One runtime process of a cluster, for tests/test_cluster.py and the
benchmark: a SubagentRuntime(cluster=...) on the PostgreSQL store named on
the command line, driven by JSON lines on stdin (one reply line each on
stdout). Not a test module: started as a subprocess."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from subagent_exec import (
    ClusterOptions,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    TaskEvent,
)
from subagent_exec.testing import ScriptedChatModel


def main() -> None:
    dsn, heartbeat, dead_after, poll = sys.argv[1], *map(float, sys.argv[2:5])
    flush = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    from subagent_exec import PostgresStore

    store = PostgresStore(dsn, flush_interval_seconds=flush)
    runtime = SubagentRuntime(
        max_workers=8,
        store=store,
        cluster=ClusterOptions(
            heartbeat_seconds=heartbeat, dead_after_seconds=dead_after, poll_seconds=poll
        ),
    )
    agents = {
        "slow": SubagentExecutor(
            SubagentConfig(name="slow", model=ScriptedChatModel(default="never", latency=600)),
            runtime=runtime,
        ),
        "quick": SubagentExecutor(
            SubagentConfig(name="quick", model=ScriptedChatModel(default="ok", latency=0.01)),
            runtime=runtime,
        ),
    }
    seen: list[dict[str, Any]] = []
    seen_lock = threading.Lock()
    #: When each task's cancel_event was set here (time.time()), for the benchmark.
    cancel_seen: dict[str, float] = {}

    def on_event(event: TaskEvent) -> None:
        with seen_lock:
            seen.append({"seq": event.seq, "kind": event.kind, "task_id": event.task_id,
                         "at": time.time(), "ts": event.timestamp})

    runtime.subscribe(on_event)

    def watch_cancel(task_id: str) -> None:
        holder = runtime.get(task_id)
        if holder is not None and holder.cancel_event.wait(120):
            cancel_seen[task_id] = time.time()

    def handle(cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        if op == "start":
            holder = agents[cmd.get("agent", "slow")].start(
                cmd.get("task", "work"), parent_id=cmd.get("parent_id")
            )
            if cmd.get("watch_cancel"):
                threading.Thread(target=watch_cancel, args=(holder.task_id,),
                                 daemon=True).start()
            return {"task_id": holder.task_id, "status": holder.status.value}
        if op == "cancel":
            sent = time.time()
            return {"ok": runtime.request_cancel(cmd["task_id"], cmd.get("reason")),
                    "sent": sent}
        if op == "get":
            got = runtime.get(cmd["task_id"])
            if got is None:
                return None
            return {"status": got.status.value, "stop_reason": got.stop_reason,
                    "cancel_reason": got.cancel_reason, "error": got.error,
                    "stored": got.stored, "parent_id": got.parent_id, "depth": got.depth,
                    "trace_id": got.trace_id}
        if op == "list_all":  # no paging: the same in every process of a cluster
            return [t.task_id for t in runtime.list_tasks()]
        if op == "list":
            return [t.task_id for t in runtime.list_tasks(limit=cmd.get("limit", 100))]
        if op == "wait":
            got = runtime.wait_terminal_blocking(cmd["task_id"], timeout=cmd.get("timeout", 30))
            return {"status": got.status.value, "at": time.time(),
                    "cancel_reason": got.cancel_reason, "stop_reason": got.stop_reason}
        if op == "events":
            with seen_lock:
                if cmd.get("task_id") is None:
                    return list(seen)
                return [e for e in seen if e["task_id"] == cmd["task_id"]]
        if op == "cancel_seen":
            return cancel_seen.get(cmd["task_id"])
        if op == "process":
            return {"process_id": runtime.store.process_id, "last_seq": runtime.last_event_seq}
        if op == "quit":
            return {"ok": runtime.shutdown(wait=True, timeout=20)}
        raise ValueError(f"unknown op {op!r}")

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            reply = {"ok": True, "value": handle(cmd)}
        except Exception as exc:  # the test sees it
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
        if cmd["op"] == "quit":
            return


if __name__ == "__main__":
    main()
