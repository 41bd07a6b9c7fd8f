"""Deadlines: ``timeout_seconds`` counts from RUNNING, ends in TIMED_OUT, the run
is interrupted, nothing later changes the status, and no thread waits for it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentRuntime, SubagentStatus, TaskEvent

from .helpers import (
    SETTLE,
    Probe,
    executor,
    graph_of,
    reply_graph,
    slow_graph,
    terminal,
    wait_until,
)


def test_deadline_times_out_and_interrupts_the_run(runtime: SubagentRuntime) -> None:
    probe = Probe()
    holder = executor(runtime, slow_graph(probe, seconds=30), timeout_seconds=0.3).execute("slow")
    assert holder.status is SubagentStatus.TIMED_OUT
    assert holder.started_at is not None and holder.completed_at is not None
    took = (holder.completed_at - holder.started_at).total_seconds()
    assert 0.28 <= took < 2.0
    assert probe.saw("cleaned") and not probe.saw("finished")  # interrupted, unwound
    assert holder.error is not None and holder.error.startswith("TimeoutError")
    assert "timeout_seconds=0.3" in holder.error
    assert holder.cancel_event.is_set()


def test_deadline_counts_from_running_not_from_submission(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1)
    first = executor(runtime, reply_graph("first", delay=0.6)).execute_async("first")
    # Queued for ~0.6 s, longer than its own 0.4 s deadline; it then needs 0.1 s.
    second = executor(runtime, reply_graph("second", delay=0.1), timeout_seconds=0.4)
    queued = second.execute_async("second")
    assert terminal(runtime.get(first)).status is SubagentStatus.COMPLETED
    holder = terminal(runtime.get(queued))
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "second"
    assert holder.started_at is not None
    assert (holder.started_at - holder.created_at).total_seconds() >= 0.4


def test_run_that_swallows_the_interrupt_and_completes_late_stays_timed_out(
    runtime: SubagentRuntime,
) -> None:
    finished_late = threading.Event()

    async def stubborn(state: MessagesState) -> dict[str, Any]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            # Misbehaving user code: swallows the interrupt and answers anyway.
            await asyncio.sleep(0.1)
            finished_late.set()
        return {"messages": [AIMessage(content="late answer")]}

    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    ex = executor(runtime, lambda: graph_of(stubborn), timeout_seconds=0.2)
    holder = ex.execute("stubborn")
    assert finished_late.is_set()
    assert holder.status is SubagentStatus.TIMED_OUT
    stamp = holder.completed_at
    time.sleep(0.1)
    assert holder.status is SubagentStatus.TIMED_OUT
    assert holder.completed_at == stamp
    assert wait_until(lambda: any(e.task_id == holder.task_id and e.is_terminal for e in events))
    time.sleep(0.1)  # anything wrongly published later would arrive by now
    kinds = [e.kind for e in events if e.task_id == holder.task_id]
    assert kinds.count("timed_out") == 1
    assert not {"completed", "failed", "cancelled"} & set(kinds)


def test_completion_before_the_deadline_is_not_overwritten(runtime: SubagentRuntime) -> None:
    holder = executor(runtime, reply_graph("quick", delay=0.05), timeout_seconds=0.3).execute("q")
    assert holder.status is SubagentStatus.COMPLETED
    time.sleep(0.4)  # past the deadline
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.error is None
    assert not holder.cancel_event.is_set()


def test_cancel_before_the_deadline_wins_over_the_deadline(runtime: SubagentRuntime) -> None:
    probe = Probe()
    ex = executor(runtime, slow_graph(probe, seconds=30, cleanup=0.4), timeout_seconds=0.3)
    task_id = ex.execute_async("x")
    assert probe.started.wait(SETTLE)
    runtime.request_cancel(task_id, "user stop")
    holder = terminal(runtime.get(task_id))
    assert holder.status is SubagentStatus.CANCELLED  # the deadline fired during cleanup
    assert holder.cancel_reason == "user stop"


def test_no_thread_is_spent_waiting_for_deadlines(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """Six running sub-agents with long deadlines use six worker threads, not
    twelve: the deadline is a timer on each sub-agent's own loop."""
    n = 6
    runtime = make_runtime(max_workers=n)
    before = threading.active_count()
    probes = [Probe() for _ in range(n)]
    ids = [
        executor(runtime, slow_graph(p, seconds=30), timeout_seconds=600).execute_async(f"t{i}")
        for i, p in enumerate(probes)
    ]
    assert all(p.started.wait(SETTLE) for p in probes)
    time.sleep(0.05)
    grown = threading.active_count() - before
    assert grown <= n + 1, f"{grown} new threads for {n} running sub-agents"
    for task_id in ids:
        runtime.request_cancel(task_id)
    for task_id in ids:
        assert terminal(runtime.get(task_id)).status is SubagentStatus.CANCELLED


def test_timeout_cascades_to_children(runtime: SubagentRuntime) -> None:
    child_probe = Probe()
    child_ids: list[str] = []

    async def parent_node(state: MessagesState) -> dict[str, Any]:
        child = executor(runtime, slow_graph(child_probe, seconds=30), name="child")
        child_ids.append(child.execute_async("child work"))
        await asyncio.sleep(30)
        return {"messages": [AIMessage(content="never")]}

    parent = executor(runtime, lambda: graph_of(parent_node), name="parent", timeout_seconds=0.3)
    holder = parent.execute("parent work")
    assert holder.status is SubagentStatus.TIMED_OUT
    child = terminal(runtime.get(child_ids[0]))
    assert child.status is SubagentStatus.CANCELLED
    assert child.cancel_reason is not None
    assert holder.task_id in child.cancel_reason and "timed out" in child.cancel_reason
