"""request_cancel: PENDING and RUNNING tasks, cooperative checkpoints,
interrupting the in-flight await, protected and bounded cleanup, and sync
calls that cannot be interrupted."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import MessagesState

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
    TaskEvent,
    get_current_task_id,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

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

#: "Quickly", for a stop that should take milliseconds: generous for a busy CI box.
QUICK = 1.5


def agent(
    runtime: SubagentRuntime,
    model: Any,
    tools: list[Any],
    *,
    name: str = "agent",
    max_turns: int = 50,
    timeout_seconds: float = 900.0,
) -> SubagentExecutor:
    config = SubagentConfig(
        name=name, model=model, max_turns=max_turns, timeout_seconds=timeout_seconds
    )
    return SubagentExecutor(config, tools=tools, runtime=runtime)


def cancel_and_time(runtime: SubagentRuntime, task_id: str, reason: str) -> float:
    started = time.monotonic()
    assert runtime.request_cancel(task_id, reason) is True
    terminal(runtime.get(task_id))
    return time.monotonic() - started


# -- unknown / terminal ---------------------------------------------------------------


def test_cancel_unknown_task_is_false(runtime: SubagentRuntime) -> None:
    assert runtime.request_cancel("no-such-task") is False
    assert runtime.request_cancel("no-such-task", "why") is False


def test_cancel_terminal_task_is_false_and_changes_nothing(runtime: SubagentRuntime) -> None:
    holder = executor(runtime, reply_graph("fine")).execute("go")
    assert holder.status is SubagentStatus.COMPLETED
    stamp = holder.completed_at
    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    assert runtime.request_cancel(holder.task_id, "too late") is False
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.completed_at == stamp
    assert holder.cancel_reason is None
    assert not holder.cancel_event.is_set()
    time.sleep(0.05)
    assert events == []


# -- PENDING --------------------------------------------------------------------------


def test_cancel_pending_is_cancelled_at_once_and_never_started(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1)
    blocker_probe, queued_probe = Probe(), Probe()
    blocker = executor(runtime, slow_graph(blocker_probe)).execute_async("block")
    assert blocker_probe.started.wait(SETTLE)

    model_factory_calls: list[int] = []

    def model_factory() -> ScriptedChatModel:
        model_factory_calls.append(1)
        return ScriptedChatModel(default="should never run")

    via_graph = executor(runtime, slow_graph(queued_probe)).execute_async("queued graph")
    via_model = agent(runtime, model_factory, []).execute_async("queued model")
    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    for task_id in (via_graph, via_model):
        holder = runtime.get(task_id)
        assert holder is not None and holder.status is SubagentStatus.PENDING
        assert runtime.request_cancel(task_id, "changed my mind") is True
        # Terminal at once: no wait needed, and the reason is kept.
        assert holder.status is SubagentStatus.CANCELLED
        assert holder.completed_at is not None
        assert holder.cancel_reason == "changed my mind"
        assert holder.wait(0)
    assert runtime.stats()["queued"] == 0

    # Free the worker: nothing that was cancelled may start on it.
    runtime.request_cancel(blocker)
    terminal(runtime.get(blocker))
    follow_up = executor(runtime, reply_graph("after")).execute("after")
    assert follow_up.status is SubagentStatus.COMPLETED
    for task_id in (via_graph, via_model):
        holder = runtime.get(task_id)
        assert holder is not None
        assert holder.status is SubagentStatus.CANCELLED
        assert holder.started_at is None
    assert queued_probe.factory_calls == 0
    assert model_factory_calls == []
    assert wait_until(lambda: any(e.task_id == follow_up.task_id for e in events))
    assert not [e for e in events if e.kind == "started" and e.task_id in (via_graph, via_model)]


# -- RUNNING: interrupting the in-flight await -------------------------------------------


def test_cancel_running_async_tool_ends_quickly_after_its_cleanup(
    runtime: SubagentRuntime,
) -> None:
    probe = Probe()

    @tool
    async def crawl(url: str) -> str:
        """Crawl a site (takes long)."""
        probe.started.set()
        try:
            await asyncio.sleep(30)
            return "crawled"
        finally:
            await asyncio.sleep(0.2)  # cleanup that itself awaits
            probe.note("cleaned")

    model = ScriptedChatModel(script={"crawl": [tool_call("crawl", {"url": "x"}), "done"]})
    task_id = agent(runtime, model, [crawl]).execute_async("crawl the site")
    assert probe.started.wait(SETTLE)
    holder = runtime.get(task_id)
    assert holder is not None and holder.status is SubagentStatus.RUNNING

    elapsed = cancel_and_time(runtime, task_id, "user pressed stop")
    assert elapsed < QUICK + 0.2
    assert holder.status is SubagentStatus.CANCELLED
    # The status is written only once the coroutine has unwound.
    assert probe.saw("cleaned")
    assert holder.cancel_reason == "user pressed stop"
    assert holder.completed_at is not None
    assert holder.error is None
    assert model.call_count == 1  # the final model turn never ran


def test_cancel_during_a_long_model_call_ends_quickly(runtime: SubagentRuntime) -> None:
    model = ScriptedChatModel(script={"think": "a long answer"}, latency=30.0)
    task_id = agent(runtime, model, []).execute_async("think hard")
    assert wait_until(lambda: model.call_count == 1)
    elapsed = cancel_and_time(runtime, task_id, "enough")
    holder = runtime.get(task_id)
    assert holder is not None
    assert holder.status is SubagentStatus.CANCELLED
    assert elapsed < QUICK
    assert holder.cancel_reason == "enough"


def test_cancel_reaches_every_parallel_branch(runtime: SubagentRuntime) -> None:
    probe = Probe()

    @tool
    async def fetch(n: int) -> str:
        """Fetch page n."""
        probe.note(f"start{n}")
        try:
            await asyncio.sleep(30)
            return "page"
        finally:
            probe.note(f"clean{n}")

    reply = AIMessage(
        content="",
        tool_calls=[
            {"name": "fetch", "args": {"n": i}, "id": None, "type": "tool_call"} for i in range(3)
        ],
    )
    model = ScriptedChatModel(script={"fetch": [reply, "done"]})
    task_id = agent(runtime, model, [fetch]).execute_async("fetch three pages")
    assert wait_until(lambda: all(probe.saw(f"start{i}") for i in range(3)))
    cancel_and_time(runtime, task_id, "stop all")
    assert all(probe.saw(f"clean{i}") for i in range(3))


# -- RUNNING: cooperative checkpoints (interrupt disabled by a long grace) ---------------


@pytest.mark.parametrize("kind", ["state_graph", "plain_runnable"])
def test_cancel_is_checked_before_streaming_starts(
    make_runtime: Callable[..., SubagentRuntime], kind: str
) -> None:
    """The stop arrives while the graph is being built: no step may run.

    A plain Runnable (allowed by ``graph_factory``) has no first "input" chunk
    that a per-chunk check could catch, so only the check before streaming
    stops it.
    """
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=30.0)
    probe = Probe()

    async def must_not_run(state: Any) -> dict[str, Any]:
        probe.note("ran")
        return {"messages": [AIMessage(content="no")]}

    def factory() -> Any:
        task_id = get_current_task_id()
        assert task_id is not None
        runtime.request_cancel(task_id, "stopped while building")
        if kind == "state_graph":
            return graph_of(must_not_run)
        return RunnableLambda(must_not_run)

    holder = executor(runtime, factory).execute("build then stop", timeout=SETTLE)
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.cancel_reason == "stopped while building"
    assert not probe.saw("ran")


def test_cancel_is_checked_at_every_chunk(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=30.0)
    probe = Probe()

    async def first(state: MessagesState) -> dict[str, Any]:
        task_id = get_current_task_id()
        assert task_id is not None
        runtime.request_cancel(task_id, "stop after step one")
        return {"messages": [AIMessage(content="step one")]}

    async def second(state: MessagesState) -> dict[str, Any]:
        probe.note("second ran")
        return {"messages": [AIMessage(content="step two")]}

    started = time.monotonic()
    holder = executor(runtime, lambda: graph_of(first, second)).execute("two steps")
    assert holder.status is SubagentStatus.CANCELLED
    assert not probe.saw("second ran")
    assert time.monotonic() - started < 10  # far below the 30 s grace: the check stopped it


def test_cancel_is_checked_at_model_call_entry(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=30.0)
    first_model = ScriptedChatModel(default="first")
    second_model = ScriptedChatModel(default="second")

    async def node(state: MessagesState) -> dict[str, Any]:
        await first_model.ainvoke([HumanMessage(content="one")])
        task_id = get_current_task_id()
        assert task_id is not None
        runtime.request_cancel(task_id, "no second call")
        await second_model.ainvoke([HumanMessage(content="two")])
        return {"messages": [AIMessage(content="both")]}

    holder = executor(runtime, lambda: graph_of(node)).execute("two calls")
    assert holder.status is SubagentStatus.CANCELLED
    assert first_model.call_count == 1
    assert second_model.call_count == 0


def test_cancel_is_checked_at_tool_call_entry(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=30.0)
    ran: list[str] = []

    @tool
    async def launch(target: str) -> str:
        """Irreversible action: its body must never run after a stop."""
        ran.append(target)
        return "launched"

    async def node(state: MessagesState) -> dict[str, Any]:
        task_id = get_current_task_id()
        assert task_id is not None
        runtime.request_cancel(task_id, "abort launch")
        await launch.ainvoke({"target": "moon"})
        return {"messages": [AIMessage(content="launched")]}

    holder = executor(runtime, lambda: graph_of(node)).execute("launch")
    assert holder.status is SubagentStatus.CANCELLED
    assert ran == []


def test_with_grace_the_model_call_in_flight_finishes_but_no_tool_starts(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """``cancel_grace_seconds`` lets the current await finish; a call that has
    not started never starts."""
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=5.0)
    ran: list[str] = []

    @tool
    async def delete_files(path: str) -> str:
        """Must never run once a stop was requested."""
        ran.append(path)
        return "deleted"

    model = ScriptedChatModel(
        script={"clean": [tool_call("delete_files", {"path": "/tmp/x"}), "done"]}, latency=0.4
    )
    task_id = agent(runtime, model, [delete_files]).execute_async("clean up")
    assert wait_until(lambda: model.call_count == 1)
    elapsed = cancel_and_time(runtime, task_id, "stop before deleting")
    holder = runtime.get(task_id)
    assert holder is not None and holder.status is SubagentStatus.CANCELLED
    assert ran == []
    assert elapsed < 4.0  # stopped by the checkpoint, not by the 5 s grace
    # The in-flight model call was allowed to finish: its AI message was recorded.
    assert [m["tool_calls"][0]["name"] for m in holder.ai_messages] == ["delete_files"]


def test_grace_interrupts_a_long_await_after_the_grace_period(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, cancel_grace_seconds=0.3)
    probe = Probe()
    task_id = executor(runtime, slow_graph(probe, seconds=30)).execute_async("long")
    assert probe.started.wait(SETTLE)
    elapsed = cancel_and_time(runtime, task_id, "grace then stop")
    holder = runtime.get(task_id)
    assert holder is not None and holder.status is SubagentStatus.CANCELLED
    assert 0.25 <= elapsed < 0.3 + QUICK
    assert probe.saw("cleaned") and not probe.saw("finished")


# -- cleanup: protected from a second cancel, bounded in time ---------------------------


def test_cleanup_survives_a_second_cancel_a_deadline_and_a_shutdown(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, cleanup_timeout_seconds=5.0)
    probe = Probe()
    ex = executor(runtime, slow_graph(probe, seconds=30, cleanup=0.6), timeout_seconds=0.4)
    tid = ex.execute_async("clean carefully")
    assert probe.started.wait(SETTLE)
    holder = runtime.get(tid)
    assert holder is not None
    assert runtime.request_cancel(tid, "first") is True
    time.sleep(0.1)
    # Still unwinding: the stop is visible at once, the status is not written yet.
    assert holder.cancel_event.is_set() and holder.stopping
    assert not holder.is_terminal
    # A second cancel is accepted but must not interrupt the cleanup.
    assert runtime.request_cancel(tid, "second") is True
    # Nor may a shutdown that cancels everything; it waits for the cleanup.
    assert runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)
    assert holder.is_terminal
    assert probe.saw("cleaned"), "a later stop interrupted the cleanup"
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.cancel_reason == "first"
    # The 0.4 s deadline passed during cleanup and changed nothing.
    assert holder.error is None


def test_cleanup_is_bounded_by_cleanup_timeout(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, cleanup_timeout_seconds=0.3)
    probe = Probe()
    tid = executor(runtime, slow_graph(probe, seconds=30, cleanup=30)).execute_async("hang")
    assert probe.started.wait(SETTLE)
    elapsed = cancel_and_time(runtime, tid, "stop")
    holder = runtime.get(tid)
    assert holder is not None
    assert holder.status is SubagentStatus.CANCELLED
    assert 0.25 <= elapsed < 0.3 + QUICK
    assert holder.error is not None and "CleanupTimeout" in holder.error
    assert holder.stop_reason == "cleanup_timeout"
    # The worker is free again for the next task.
    assert executor(runtime, reply_graph("next")).execute("next", timeout=SETTLE).result == "next"


# -- sync calls that cannot be interrupted -----------------------------------------------


def test_blocking_sync_tool_neither_delays_the_status_nor_holds_the_slot(
    make_runtime: Callable[..., SubagentRuntime], gate: threading.Event
) -> None:
    runtime = make_runtime(max_workers=1)
    entered = threading.Event()

    @tool
    def legacy_io(path: str) -> str:
        """A sync call nothing in Python can interrupt."""
        entered.set()
        gate.wait(30)
        return "read"

    model = ScriptedChatModel(script={"read": [tool_call("legacy_io", {"path": "x"}), "done"]})
    tid = agent(runtime, model, [legacy_io]).execute_async("read the file")
    assert entered.wait(SETTLE)
    elapsed = cancel_and_time(runtime, tid, "stop the blocked one")
    assert elapsed < QUICK
    holder = runtime.get(tid)
    assert holder is not None and holder.status is SubagentStatus.CANCELLED

    # The only worker slot is free although the sync call is still blocked.
    other = executor(runtime, reply_graph("other")).execute("other", timeout=SETTLE)
    assert other.status is SubagentStatus.COMPLETED
    assert not gate.is_set()
    stats = runtime.stats()
    assert stats["abandoned_threads"] == 1
    assert stats["abandoned_threads_total"] == 1

    gate.set()  # the abandoned call returns; it is no longer counted as live
    assert wait_until(lambda: runtime.stats()["abandoned_threads"] == 0)
    assert runtime.stats()["abandoned_threads_total"] == 1
    assert holder.status is SubagentStatus.CANCELLED


def test_time_sleep_tool_is_abandoned_on_cancel(runtime: SubagentRuntime) -> None:
    entered = threading.Event()

    @tool
    def nap(seconds: float) -> str:
        """Sleeps in a sync call."""
        entered.set()
        time.sleep(seconds)
        return "rested"

    model = ScriptedChatModel(script={"nap": [tool_call("nap", {"seconds": 1.5}), "done"]})
    tid = agent(runtime, model, [nap]).execute_async("nap now")
    assert entered.wait(SETTLE)
    elapsed = cancel_and_time(runtime, tid, "wake up")
    assert elapsed < 1.0  # well before the 1.5 s sleep ends
    # Counted once the worker has closed the loop (just after the status write).
    assert wait_until(lambda: runtime.stats()["abandoned_threads"] == 1, timeout=1.0)


def test_sync_graph_node_is_abandoned_too(
    make_runtime: Callable[..., SubagentRuntime], gate: threading.Event
) -> None:
    runtime = make_runtime(max_workers=1)
    entered = threading.Event()

    def blocking_node(state: MessagesState) -> dict[str, Any]:
        entered.set()
        gate.wait(30)
        return {"messages": [AIMessage(content="late")]}

    tid = executor(runtime, lambda: graph_of(blocking_node)).execute_async("block")  # type: ignore[arg-type]
    assert entered.wait(SETTLE)
    assert cancel_and_time(runtime, tid, "stop") < QUICK
    holder = runtime.get(tid)
    assert holder is not None and holder.status is SubagentStatus.CANCELLED
    assert wait_until(lambda: runtime.stats()["abandoned_threads"] == 1)
    gate.set()
    # The late return of the abandoned call changes nothing.
    time.sleep(0.1)
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.ai_messages == []


def test_cancel_and_failure_logs_carry_task_and_trace_ids(
    runtime: SubagentRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="subagent_exec")
    probe = Probe()
    task_id = executor(runtime, slow_graph(probe), trace_id="trace-7").execute_async("x")
    assert probe.started.wait(SETTLE)
    runtime.request_cancel(task_id, "logged stop")
    terminal(runtime.get(task_id))

    async def broken(state: MessagesState) -> dict[str, Any]:
        raise KeyError("missing")

    failed = executor(runtime, lambda: graph_of(broken), trace_id="trace-8").execute("fail")
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"task={task_id}" in m and "trace=trace-7" in m and "logged stop" in m for m in messages
    ), messages
    assert any(
        f"task={failed.task_id}" in m and "trace=trace-8" in m and "KeyError" in m for m in messages
    ), messages
