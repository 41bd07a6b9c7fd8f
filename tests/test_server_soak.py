"""Soak, bounded in time: 200 runs started and stopped over HTTP while a client
watches the event stream; afterwards the server is back to its baseline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from subagent_exec import SubagentRuntime
from subagent_exec.server import SubagentRouter

from .server_support import LiveServer, make_app, non_pool_threads, sse_events, wait_for

RUNS = 200
#: The bound of the whole soak (typically ~15 s on 2 busy cores).
TIME_BOUND_SECONDS = 120.0
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
USER = "soak"


@pytest.fixture
def soak_server() -> Iterator[tuple[LiveServer, SubagentRouter, SubagentRuntime]]:
    runtime = SubagentRuntime(
        max_workers=8, max_depth=3, cleanup_timeout_seconds=3.0, retain_max=5000, name="soak"
    )
    # A short keep-alive lets the watcher notice the end of the soak promptly.
    app, router = make_app(runtime, keepalive_seconds=0.5)
    server = LiveServer(app).start()
    yield server, router, runtime
    server.stop()
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


@pytest.mark.timeout(TIME_BOUND_SECONDS + 60)
def test_200_runs_started_and_stopped_leave_the_server_at_baseline(
    soak_server: tuple[LiveServer, SubagentRouter, SubagentRuntime],
) -> None:
    server, router, runtime = soak_server
    client = server.client(USER)
    baseline_threads = non_pool_threads((runtime.name,))
    baseline_tasks = server.loop_task_count()

    # A watcher follows every event of the soak, as a run page would.
    watched: dict[str, str] = {}  # task id -> terminal kind
    expected: set[str] = set()  # every task id, filled in once the soak is over
    soak_over = threading.Event()

    def watch() -> None:
        with server.client(USER).stream("GET", "/events") as response:
            for event in sse_events(response, keepalives=True):
                if event.event == "task" and event.kind in TERMINAL:
                    watched[event.data["task_id"]] = event.kind
                if soak_over.is_set() and expected <= watched.keys():
                    return

    watcher = threading.Thread(target=watch, name="soak-watcher")
    watcher.start()
    wait_for(lambda: router.event_buffer.client_count == 1, "watcher connected")

    started = time.monotonic()
    roots = []
    for index in range(RUNS):
        response = client.post("/runs")
        assert response.status_code == 202, response.text
        root = response.json()["task_id"]
        roots.append(root)
        if index % 5 == 0:
            # Some runs get their sub-agents first, so the stop cascades.
            wait_for(
                lambda root=root: client.get("/tasks", params={"parent_id": root}).json()["tasks"],
                "sub-agents",
            )
        stop = client.post(f"/tasks/{root}/stop")
        assert stop.status_code == 202, stop.text
    wait_for(
        lambda: not client.get("/tasks", params={"status": "pending,running"}).json()["tasks"],
        "every run ends",
        timeout=60,
    )
    elapsed = time.monotonic() - started
    tasks = client.get("/tasks").json()["tasks"]
    expected.update(t["task_id"] for t in tasks)
    soak_over.set()
    watcher.join(30)
    assert not watcher.is_alive(), "the watcher saw every terminal event"

    by_id = {t["task_id"]: t for t in tasks}
    assert all(by_id[root]["status"] == "cancelled" for root in roots)
    assert all(t["status"] in TERMINAL for t in tasks)
    assert len(tasks) > RUNS, "the cascading stops reached sub-agents"
    assert watched == {t["task_id"]: t["status"] for t in tasks}

    stats = runtime.stats()
    assert (stats["pending"], stats["running"], stats["active"], stats["queued"]) == (0, 0, 0, 0)
    assert stats["free_slots"] == runtime.max_workers
    assert stats["abandoned_threads"] == 0
    assert stats["worker_threads"] <= runtime.max_workers * runtime.max_depth
    wait_for(lambda: router.event_buffer.client_count == 0, "watcher's stream unregistered")
    wait_for(lambda: server.loop_task_count() == baseline_tasks, "server tasks at baseline")
    wait_for(
        lambda: non_pool_threads((runtime.name,)) == baseline_threads, "threads at baseline"
    )
    assert elapsed < TIME_BOUND_SECONDS, f"soak took {elapsed:.1f} s"
    print(f"\nsoak: {RUNS} runs, {len(tasks)} tasks, {elapsed:.1f} s")
