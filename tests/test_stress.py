"""Bounded stress: 2,000 tasks through max_workers=8 with random cancels.

Every task ends terminal, none is lost, exactly one terminal event each, the
slots are all given back, and after shutdown the thread count is where it
started. Measured at about 5 s on 2 shared cores; bounded at 60 s.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentRuntime, SubagentStatus, TaskEvent

from .helpers import executor, graph_of, leaked_threads, thread_snapshot, wait_until

N_TASKS = 2000
WORKERS = 8


@pytest.mark.timeout(120)
def test_two_thousand_tasks_with_random_cancels() -> None:
    rng = random.Random(20240607)
    before_count = threading.active_count()
    before = thread_snapshot()

    async def tiny(state: MessagesState) -> dict[str, Any]:
        for _ in range(3):
            await asyncio.sleep(0.0005 * rng.random())
        return {"messages": [AIMessage(content="ok")]}

    graph = graph_of(tiny)  # compiled once; a graph without checkpointer is reusable
    runtime = SubagentRuntime(max_workers=WORKERS, retain_max=N_TASKS)
    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    ex = executor(runtime, lambda: graph, name="stress")
    started = time.monotonic()

    ids: list[str] = []
    submitted = threading.Event()

    def submit_all() -> None:
        for i in range(N_TASKS):
            ids.append(ex.execute_async(f"task {i}"))
        submitted.set()

    cancel_results: dict[str, bool] = {}

    def cancel_randomly() -> None:
        picker = random.Random(7)
        while not submitted.is_set() or len(cancel_results) < N_TASKS // 4:
            if ids:
                task_id = ids[picker.randrange(len(ids))]
                cancel_results[task_id] = runtime.request_cancel(task_id, "random cancel")
            time.sleep(0.0005)
            if submitted.is_set() and len(cancel_results) >= N_TASKS // 4:
                return

    threads = [threading.Thread(target=submit_all), threading.Thread(target=cancel_randomly)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()

    holders = [runtime.get(task_id) for task_id in ids]
    assert len(ids) == len(set(ids)) == N_TASKS
    for holder in holders:
        assert holder is not None, "a task was lost"
        assert holder.wait(60), f"{holder!r} never ended"
    elapsed = time.monotonic() - started

    statuses = [h.status for h in holders if h is not None]
    assert all(s.is_terminal for s in statuses)
    assert set(statuses) <= {SubagentStatus.COMPLETED, SubagentStatus.CANCELLED}
    assert statuses.count(SubagentStatus.CANCELLED) > 0
    assert statuses.count(SubagentStatus.COMPLETED) > 0
    for task_id, accepted in cancel_results.items():
        if accepted:
            holder = runtime.get(task_id)
            assert holder is not None and holder.status is SubagentStatus.CANCELLED

    # Every slot came back; nothing is queued; the registry holds them all.
    assert wait_until(lambda: runtime.stats()["free_slots"] == WORKERS)
    stats = runtime.stats()
    assert stats["active"] == 0 and stats["queued"] == 0
    assert stats["registered"] == stats["submitted_total"] == N_TASKS

    assert wait_until(lambda: sum(e.is_terminal for e in list(events)) >= N_TASKS, timeout=30)
    terminal_events: dict[str, int] = {}
    for event in events:
        if event.is_terminal:
            terminal_events[event.task_id] = terminal_events.get(event.task_id, 0) + 1
    assert set(terminal_events) == set(ids)
    assert set(terminal_events.values()) == {1}
    # Per task, in seq order: created first, terminal last, never started after a
    # stop was requested while it was still PENDING.
    kinds_by_task: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        kinds_by_task.setdefault(event.task_id, []).append(event.kind)
    for kinds in kinds_by_task.values():
        assert kinds[0] == "created" and kinds[-1] in ("completed", "cancelled"), kinds
        if "started" in kinds and "cancel_requested" in kinds:
            assert kinds.index("started") < kinds.index("cancel_requested"), kinds

    assert runtime.shutdown(cancel=True, wait=True, timeout=30)
    assert leaked_threads(before) == []
    assert threading.active_count() <= before_count
    print(f"\n{N_TASKS} tasks in {elapsed:.1f}s: {stats}")
