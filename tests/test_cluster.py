"""Several runtime processes on one PostgreSQL store (issue 18): views,
stops across processes (trees spread over them too), dead processes marked
interrupted exactly once, event order. Each runtime is a subprocess
(tests/cluster_child.py) on the real PostgreSQL the session starts."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .cluster_support import Node, until


@pytest.fixture
def nodes(postgres_dsn: str) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def start(*names: str, **options: Any) -> Any:
        """Start processes together (each takes seconds to import); one Node
        for one name, else a tuple."""
        new = [Node(postgres_dsn, name, **options) for name in names]
        started.extend(new)
        ready = [node.wait_ready() for node in new]
        return ready[0] if len(ready) == 1 else tuple(ready)

    yield start
    for node in started:
        node.close()


def status(node: Node, task_id: str) -> str | None:
    got = node.call("get", task_id=task_id)
    return None if got is None else got["status"]


def test_every_process_sees_every_task_and_other_processes_events(
    nodes: Callable[..., Node],
) -> None:
    a, b = nodes("A", "B")
    mine = a.call("start", agent="quick", task="from A")["task_id"]
    theirs = b.call("start", agent="quick", task="from B")["task_id"]
    for node in (a, b):
        until(lambda n=node: status(n, mine) == "completed" and status(n, theirs) == "completed",
              what="both tasks completed, seen from both processes")
        listed = node.call("list", limit=10)
        assert mine in listed and theirs in listed
    # A's events reached B's subscribers through the store, in seq order, once each.
    kinds = until(lambda: [e["kind"] for e in b.call("events", task_id=mine)][-1:] == ["completed"]
                  and b.call("events", task_id=mine), what="A's events at B")
    assert [e["kind"] for e in kinds] == ["created", "started", "ai_message", "completed"]
    seqs = [e["seq"] for e in kinds]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The two processes number their events apart: no seq is used twice.
    a_seqs = {e["seq"] for e in a.call("events", task_id=mine)}
    b_seqs = {e["seq"] for e in b.call("events", task_id=theirs)}
    assert a_seqs.isdisjoint(b_seqs)


def test_a_stop_sent_to_another_process_reaches_the_task(nodes: Callable[..., Node]) -> None:
    a, b = nodes("A", "B")
    task = a.call("start", agent="slow")["task_id"]
    until(lambda: status(b, task) == "running", what="B sees A's task running")
    assert b.call("cancel", task_id=task, reason="stop from B")["ok"] is True
    ended = b.call("wait", task_id=task, timeout=20)
    assert ended["status"] == "cancelled" and ended["cancel_reason"] == "stop from B"
    assert status(a, task) == "cancelled"
    # Same answers as locally: a finished task, an unknown one.
    assert b.call("cancel", task_id=task)["ok"] is False
    assert b.call("cancel", task_id="no-such-task")["ok"] is False
    # One terminal event, seen by both.
    assert [e["kind"] for e in a.call("events", task_id=task)].count("cancelled") == 1
    until(lambda: [e["kind"] for e in b.call("events", task_id=task)].count("cancelled") == 1,
          what="the terminal event at B")


def test_a_stop_cascades_over_a_tree_spread_over_processes(nodes: Callable[..., Node]) -> None:
    a, b, c = nodes("A", "B", "C")
    root = a.call("start", agent="slow", task="root")["task_id"]
    local_child = a.call("start", agent="slow", task="child in A", parent_id=root)["task_id"]
    until(lambda: status(c, root) == "running", what="C sees the root")
    remote_child = c.call("start", agent="slow", task="child in C", parent_id=root)["task_id"]
    grandchild = c.call("start", agent="slow", task="grandchild", parent_id=remote_child)[
        "task_id"]
    got = c.call("get", task_id=remote_child)
    assert got["parent_id"] == root and got["depth"] == 2
    assert c.call("get", task_id=grandchild)["depth"] == 3
    until(lambda: status(a, remote_child) == "running", what="A sees C's child")
    until(lambda: status(b, grandchild) == "running", what="B sees the grandchild")
    assert b.call("cancel", task_id=root, reason="tree stop")["ok"] is True
    for task in (root, local_child, remote_child, grandchild):
        assert b.call("wait", task_id=task, timeout=20)["status"] == "cancelled", task
    assert c.call("get", task_id=remote_child)["cancel_reason"] == "was cancelled: tree stop"


def test_a_child_submitted_under_a_stopped_remote_parent_never_runs(
    nodes: Callable[..., Node],
) -> None:
    a, c = nodes("A", "C")
    root = a.call("start", agent="slow")["task_id"]
    until(lambda: status(c, root) == "running", what="C sees the root")
    assert a.call("cancel", task_id=root, reason="gone")["ok"] is True
    until(lambda: status(c, root) == "cancelled", what="C sees the root cancelled")
    child = c.call("start", agent="slow", parent_id=root)
    assert child["status"] == "cancelled"


def test_a_killed_process_has_its_tasks_marked_interrupted_exactly_once(
    nodes: Callable[..., Node], postgres_dsn: str,
) -> None:
    a, b, c = nodes("A", "B", "C")
    doomed = [a.call("start", agent="slow")["task_id"] for _ in range(3)]
    for task in doomed:
        until(lambda t=task: status(b, t) == "running", what="B sees A's tasks")
    a.kill(signal.SIGKILL)
    for task in doomed:
        for node in (b, c):
            got = until(lambda n=node, t=task: (g := n.call("get", task_id=t))
                        and g["status"] == "failed" and g, what="the task marked interrupted")
            assert got["stop_reason"] == "interrupted"
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for task in doomed:
            kinds = [r[0] for r in conn.execute(
                "SELECT kind FROM subagent_events WHERE task_id = %s ORDER BY seq", (task,))]
            assert kinds.count("failed") == 1, kinds
        reaped = conn.execute(
            "SELECT count(*) FROM subagent_processes WHERE reaped_by IS NOT NULL "
            "AND process_id IN (SELECT process_id FROM subagent_tasks WHERE task_id = %s)",
            (doomed[0],),
        ).fetchone()
        assert reaped == (1,)
    # Waiters in the survivors see the end too.
    assert b.call("wait", task_id=doomed[0], timeout=5)["status"] == "failed"


def test_a_silent_process_is_declared_gone_after_dead_after_seconds(
    nodes: Callable[..., Node],
) -> None:
    a, b = nodes("A", "B")
    task = a.call("start", agent="slow")["task_id"]
    until(lambda: status(b, task) == "running", what="B sees A's task")
    a.kill(signal.SIGSTOP)  # alive (its pid exists) but silent: only the heartbeat tells
    try:
        got = until(lambda: (g := b.call("get", task_id=task)) and g["status"] == "failed" and g,
                    timeout=10, what="the silent process declared gone")
        assert got["stop_reason"] == "interrupted"
    finally:
        a.kill(signal.SIGKILL)


def test_a_stop_whose_notification_is_missed_is_caught_by_the_poll(
    nodes: Callable[..., Node], postgres_dsn: str,
) -> None:
    a = nodes("A")
    task = a.call("start", agent="slow")["task_id"]
    until(lambda: status(a, task) == "running", what="the task running")
    process_id = a.call("process")["process_id"]
    import psycopg

    # The request as another process writes it, but no NOTIFY goes with it.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO subagent_stop_requests (task_id, process_id, reason, requested_at) "
            "VALUES (%s, %s, 'polled', extract(epoch from now()))",
            (task, process_id),
        )
    until(lambda: status(a, task) == "cancelled", timeout=5, what="the poll's stop")
    assert a.call("get", task_id=task)["cancel_reason"] == "polled"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        handled = conn.execute(
            "SELECT count(*) FROM subagent_stop_requests WHERE handled_at IS NOT NULL"
        ).fetchone()
    assert handled == (1,)


def test_lost_connections_are_made_again(
    nodes: Callable[..., Node], postgres_dsn: str,
) -> None:
    a, b = nodes("A", "B")
    task = a.call("start", agent="slow")["task_id"]
    until(lambda: status(b, task) == "running", what="B sees A's task")
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 8  # both processes' own connections at least
    # B's lookup connection is made again; A's listener comes back and its poll
    # finds the request (its notification may have been sent to nobody).
    assert b.call("cancel", task_id=task, reason="after the outage")["ok"] is True

    def ended() -> bool:
        try:
            return status(a, task) == "cancelled"
        except AssertionError:  # a pooled store connection still broken: once
            return False

    until(ended, timeout=10, what="the stop handled after reconnecting")


def test_every_process_lists_the_same_tasks_without_paging(nodes: Callable[..., Node]) -> None:
    a, b = nodes("A", "B")
    ids = [a.call("start", agent="quick", task=f"a{i}")["task_id"] for i in range(2)]
    ids.append(b.call("start", agent="slow", task="b")["task_id"])
    # The same list in both, in seq order (across processes, creation order up
    # to the feed's lag: docs/deploy.md).
    listed = until(lambda: (x := a.call("list_all")) == b.call("list_all") and len(x) == 3 and x,
                   what="one list everywhere")
    assert sorted(listed) == sorted(ids)
    assert listed.index(ids[0]) < listed.index(ids[1])  # one process's: in creation order


def test_which_processes_count_as_gone(postgres_dsn: str) -> None:
    import socket
    import time

    import psycopg

    from subagent_exec import PostgresStore
    from subagent_exec._cluster._members import dead_processes

    store = PostgresStore(postgres_dsn)  # the schema, and a process row of its own
    try:
        me, here, now = store.process_id, socket.gethostname(), time.time()
        no_pid = 2**22 + 12345  # above Linux's pid_max default: never a live process
        rows = [
            ("fresh, pid gone", here, no_pid, now, None),  # a heartbeat just now: not yet
            ("missed two, pid gone", here, no_pid, now - 1.0, None),
            ("missed two, pid alive", here, 1, now - 1.0, None),
            ("other host, pid gone", "elsewhere", no_pid, now - 1.0, None),
            ("silent too long", "elsewhere", 1, now - 20.0, None),
            ("stopped", "elsewhere", 1, now, now),
        ]
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for process_id, host, pid, beat, stopped in rows:
                conn.execute(
                    "INSERT INTO subagent_processes (process_id, host, pid, started_at, "
                    "heartbeat_at, stopped_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (process_id, host, pid, beat, beat, stopped),
                )
            conn.execute("UPDATE subagent_processes SET heartbeat_at = %s WHERE process_id = %s",
                         (time.time(), me))
            gone = set(dead_processes(conn, me, dead_after=15.0, missed_after=0.6))
        assert gone == {"missed two, pid gone", "silent too long", "stopped"}
    finally:
        store.close()


def test_the_cluster_benchmark_runs(postgres_dsn: str, tmp_path: Any) -> None:
    """Smoke test of ``python -m benchmarks.cluster`` (figures not judged here)."""
    import json
    import subprocess
    import sys

    from .cluster_support import REPO

    output = tmp_path / "cluster.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--trials", "3", "--dsn", postgres_dsn,
         "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    run = report["runs"][0]
    assert run["stop_to_cancel_event_ms"]["n"] == 3 and run["stop_to_terminal_in_b_ms"]["n"] == 3
    assert run["event_lag_ms"]["n"] == 12  # four events of each stopped task reached B
    assert "| stop_to_cancel_event_ms |" in done.stdout
