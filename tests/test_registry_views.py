"""``stats()`` and ``list_tasks`` answer from indexes kept with the status
transitions (``_views.py``), never by scanning what is retained. These tests
check the indexes against the registry itself (``list_tasks()`` without a
filter walks it) after random submissions, nesting, stops, failures,
completions, clean-ups and retention evictions; and that a view's cost does
not grow with what is retained."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from langgraph.graph import MessagesState

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)

from .helpers import SETTLE, graph_of, reply_node

STATUSES = [s.value for s in SubagentStatus]
THREADS = ["thread-a", "thread-b"]


async def _fail(state: MessagesState) -> dict[str, Any]:
    raise RuntimeError("planned failure")


def _executors(runtime: SubagentRuntime) -> dict[str, SubagentExecutor]:
    graphs = {
        "long": graph_of(reply_node("late", delay=30.0)),
        "quick": graph_of(reply_node("quick")),
        "failing": graph_of(_fail),
    }
    return {
        name: SubagentExecutor(
            SubagentConfig(name=name, graph_factory=lambda g=graph: g), runtime=runtime
        )
        for name, graph in graphs.items()
    }


def _mismatches(runtime: SubagentRuntime, ids: list[str]) -> list[str]:
    """Where the indexes disagree with a walk of the registry (empty: none)."""
    everything = runtime.list_tasks()
    stats = runtime.stats()
    problems = []
    for status in STATUSES:
        walked = [h for h in everything if h.status.value == status]
        if stats[status] != len(walked):
            problems.append(f"stats()[{status}]={stats[status]}, registry has {len(walked)}")
        if runtime.list_tasks(status=status) != walked:
            problems.append(f"list_tasks(status={status})")
    pair = ["pending", "running"]
    if runtime.list_tasks(status=pair) != [h for h in everything if h.status.value in pair]:
        problems.append("list_tasks(status=[pending, running])")
    if stats["registered"] != len(everything):
        problems.append("stats()['registered']")
    for thread_id in THREADS:
        of_thread = [h for h in everything if h.thread_id == thread_id]
        if runtime.list_tasks(thread_id=thread_id) != of_thread:
            problems.append(f"list_tasks(thread_id={thread_id})")
        running = [h for h in of_thread if h.status.value == "running"]
        if runtime.list_tasks(thread_id=thread_id, status="running") != running:
            problems.append(f"list_tasks(thread_id={thread_id}, status=running)")
    for parent_id in ids:
        children = [h for h in everything if h.parent_id == parent_id]
        if runtime.list_tasks(parent_id=parent_id) != children:
            problems.append(f"list_tasks(parent_id={parent_id})")
        terminal = [h for h in children if h.is_terminal]
        done = ["completed", "failed", "cancelled", "timed_out"]
        if runtime.list_tasks(parent_id=parent_id, status=done) != terminal:
            problems.append(f"list_tasks(parent_id={parent_id}, status=terminal)")
    return problems


def _consistent_soon(runtime: SubagentRuntime, ids: list[str]) -> list[str]:
    """Statuses move on worker threads meanwhile: a real mismatch stays."""
    deadline = time.monotonic() + SETTLE
    while True:
        problems = _mismatches(runtime, ids)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.01)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_views_agree_with_the_registry_through_random_work(
    seed: int, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    rng = random.Random(seed)
    runtime = make_runtime(max_workers=3, max_depth=3, retain_max=15)
    executors = _executors(runtime)
    holders: list[SubagentResult] = []
    for step in range(120):
        action = rng.random()
        live = [h for h in holders if not h.is_terminal]
        if action < 0.45 or not holders:
            parent = rng.choice(holders) if holders and rng.random() < 0.6 else None
            parent_id = parent.task_id if parent is not None else None
            if parent is not None and parent.depth >= 3:
                parent_id = None
            if parent_id is not None and runtime.get(parent_id) is None:
                parent_id = None  # forgotten by retention meanwhile
            kind = rng.choice(["long", "long", "quick", "failing"])
            thread_id = rng.choice([*THREADS, None]) if parent_id is None else None
            holders.append(
                executors[kind].start(f"step {step}", parent_id=parent_id, thread_id=thread_id)
            )
        elif action < 0.5 and step % 7 == 0:
            runtime.cancel_thread(rng.choice(THREADS), "random thread stop")
        elif action < 0.75 and live:
            target = rng.choice(live)
            runtime.request_cancel(target.task_id, "random stop")
            target.wait(SETTLE)
        elif action < 0.9:
            runtime.cleanup(rng.choice(holders).task_id)
        elif step % 10 == 0:
            assert _consistent_soon(runtime, [h.task_id for h in holders]) == []
    assert _consistent_soon(runtime, [h.task_id for h in holders]) == []
    for holder in holders:
        runtime.request_cancel(holder.task_id, "end of test")
    for holder in holders:
        assert holder.wait(SETTLE)
    assert _consistent_soon(runtime, [h.task_id for h in holders]) == []
    assert runtime.stats()["pending"] == runtime.stats()["running"] == 0


def test_views_agree_after_ttl_expiry(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=2, retain_ttl_seconds=0.2)
    quick = _executors(runtime)["quick"]
    first = [quick.execute(f"old {i}") for i in range(5)]
    time.sleep(0.3)
    fresh = [quick.execute(f"new {i}") for i in range(3)]
    assert runtime.get(first[0].task_id) is None  # forgotten (get applies the TTL)
    assert runtime.list_tasks(status="completed") == fresh
    assert runtime.stats()["completed"] == 3


def _timed(view: Callable[[], Any], calls: int = 30) -> float:
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        view()
        best = min(best, time.perf_counter() - started)
    return best


def test_view_costs_do_not_grow_with_what_is_retained(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """Same answers at 200 and at 20,000 retained tasks: a view that scanned
    the registry would take ~100 times longer at the second; the indexes take
    the same time (the fastest of 30 calls, so machine noise cannot fail it)."""
    runtime = make_runtime(max_workers=1, retain_max=100_000)
    long_runs = _executors(runtime)["long"]
    blocker = long_runs.start("blocker")
    deadline = time.monotonic() + SETTLE
    while blocker.status is not SubagentStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    parent = long_runs.start("parent")  # queued behind the blocker
    runtime.request_cancel(parent.task_id, "stopped while queued")
    children = [long_runs.start(f"child {i}", parent_id=parent.task_id) for i in range(10)]

    def fill(total: int) -> None:
        while runtime.stats()["registered"] < total:
            filler = long_runs.start("filler")
            runtime.request_cancel(filler.task_id, "stopped while queued")

    views = {
        "stats": runtime.stats,
        "running": lambda: runtime.list_tasks(status="running"),
        "children": lambda: runtime.list_tasks(parent_id=parent.task_id),
    }
    fill(200)
    small = {name: _timed(view) for name, view in views.items()}
    fill(20_000)
    large = {name: _timed(view) for name, view in views.items()}
    assert runtime.list_tasks(status="running") == [blocker]
    assert runtime.list_tasks(parent_id=parent.task_id) == children
    for name in views:
        # 5x headroom for noise; a scan would be ~100x.
        assert large[name] < 5 * small[name] + 50e-6, (name, small[name], large[name])
    runtime.request_cancel(blocker.task_id, "done")


def test_a_child_of_a_forgotten_parent_is_still_listed_under_it(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=3, max_depth=3)
    executors = _executors(runtime)
    parent = executors["long"].start("parent")
    child = executors["long"].start("child", parent_id=parent.task_id)
    grandchild = executors["long"].start("grandchild", parent_id=child.task_id)
    # The middle node ends (stopping its child too) and is forgotten.
    runtime.request_cancel(child.task_id, "stop the middle")
    assert child.wait(SETTLE) and grandchild.wait(SETTLE)
    assert runtime.cleanup(child.task_id)
    # Listed by the parent it was started under, as before the indexes.
    assert runtime.list_tasks(parent_id=child.task_id) == [grandchild]
    assert runtime.list_tasks(parent_id=parent.task_id) == []
    runtime.request_cancel(parent.task_id, "done")
