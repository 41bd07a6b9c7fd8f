"""SubagentExecutor end to end: max_turns, final text, AI messages, errors,
execute / aexecute / execute_async, the default runtime, events, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import MessagesState

import subagent_exec
from subagent_exec import (
    RuntimeClosedError,
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
    both_backends,
    executor,
    graph_of,
    leaked_threads,
    reply_graph,
    slow_graph,
    terminal,
    thread_snapshot,
    wait_until,
)


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def agent(runtime: SubagentRuntime, model: Any, **kwargs: Any) -> SubagentExecutor:
    tools = kwargs.pop("tools", [lookup])
    config = SubagentConfig(name="agent", model=model, **kwargs)
    return SubagentExecutor(config, tools, runtime=runtime)


# -- max_turns ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_turns", [1, 3, 12])
def test_max_turns_bounds_the_number_of_model_calls(
    runtime: SubagentRuntime, max_turns: int
) -> None:
    model = ScriptedChatModel(script={"loop": [tool_call("lookup", {"key": "k"})]})
    holder = agent(runtime, model, max_turns=max_turns).execute("loop forever")
    assert model.call_count == max_turns
    assert holder.status is SubagentStatus.FAILED
    assert holder.stop_reason == "max_turns"
    assert holder.error is not None
    assert holder.error.startswith("MaxTurnsExceeded")
    assert f"max_turns={max_turns}" in holder.error


def test_a_run_that_needs_exactly_max_turns_completes(runtime: SubagentRuntime) -> None:
    model = ScriptedChatModel(
        script={"two": [tool_call("lookup", {"key": "a"}), "answer after two turns"]}
    )
    holder = agent(runtime, model, max_turns=2).execute("two turns")
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "answer after two turns"
    assert holder.stop_reason is None
    assert model.call_count == 2


def test_max_turns_keeps_the_partial_answer(runtime: SubagentRuntime) -> None:
    thinking = AIMessage(
        content="partial findings so far",
        tool_calls=[{"name": "lookup", "args": {"key": "k"}, "id": None, "type": "tool_call"}],
    )
    model = ScriptedChatModel(script={"loop": [thinking]})
    holder = agent(runtime, model, max_turns=2).execute("loop")
    assert holder.status is SubagentStatus.FAILED
    assert holder.stop_reason == "max_turns"
    assert holder.result == "partial findings so far"


# -- final text and AI messages ------------------------------------------------------------


def test_final_text_from_a_string_answer_and_ai_messages(runtime: SubagentRuntime) -> None:
    model = ScriptedChatModel(
        script={
            "research": [
                tool_call("lookup", {"key": "a"}),
                tool_call("lookup", {"key": "b"}),
                "The answer is 42.",
            ]
        }
    )
    holder = agent(runtime, model).execute("research this")
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "The answer is 42."
    assert len(holder.ai_messages) == 3  # each AI message once, despite values streaming
    assert all(isinstance(m, dict) for m in holder.ai_messages)
    ids = [m["id"] for m in holder.ai_messages]
    assert len(set(ids)) == 3
    assert [c["args"] for m in holder.ai_messages[:2] for c in m["tool_calls"]] == [
        {"key": "a"},
        {"key": "b"},
    ]
    assert holder.ai_messages[-1]["text"] == "The answer is 42."


@both_backends
def test_final_text_from_content_blocks(runtime: SubagentRuntime) -> None:
    blocks = AIMessage(
        content=[
            {"type": "text", "text": "Part one."},
            {"type": "tool_use", "id": "x", "name": "noop", "input": {}},
            {"type": "text", "text": " Part two."},
        ]
    )
    holder = executor(runtime, lambda: graph_of(_answer(blocks))).execute("blocks")
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "Part one. Part two."


@both_backends
def test_final_text_is_from_the_last_ai_message(runtime: SubagentRuntime) -> None:
    graph = lambda: graph_of(  # noqa: E731
        _answer(AIMessage(content="first")), _answer(AIMessage(content="second"))
    )
    holder = executor(runtime, graph).execute("two answers")
    assert holder.result == "second"
    assert [m["text"] for m in holder.ai_messages] == ["first", "second"]


@both_backends
def test_a_run_without_ai_message_says_so(runtime: SubagentRuntime) -> None:
    async def silent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [HumanMessage(content="only a human note")]}

    holder = executor(runtime, lambda: graph_of(silent), name="quiet").execute("say nothing")
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result is not None and "without producing any AI message" in holder.result
    assert "quiet" in holder.result
    assert holder.ai_messages == []


@both_backends
def test_a_last_ai_message_without_text_says_so(runtime: SubagentRuntime) -> None:
    holder = executor(runtime, lambda: graph_of(_answer(AIMessage(content="")))).execute("empty")
    assert holder.result is not None and "no text" in holder.result


def _answer(message: AIMessage) -> Callable[[MessagesState], Any]:
    async def node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [message.model_copy()]}

    return node


# -- failures ---------------------------------------------------------------------------------


@both_backends
def test_an_exception_fails_with_type_and_message(runtime: SubagentRuntime) -> None:
    async def broken(state: MessagesState) -> dict[str, Any]:
        raise ValueError("bad input in node")

    holder = executor(runtime, lambda: graph_of(broken)).execute("break")
    assert holder.status is SubagentStatus.FAILED
    assert holder.error == "ValueError: bad input in node"
    assert holder.completed_at is not None


@both_backends
def test_a_failing_graph_factory_fails_the_task(runtime: SubagentRuntime) -> None:
    def factory() -> Any:
        raise RuntimeError("cannot build")

    holder = executor(runtime, factory).execute("x")
    assert holder.status is SubagentStatus.FAILED
    assert holder.error == "RuntimeError: cannot build"


@both_backends
def test_a_plain_runnable_from_graph_factory_works(runtime: SubagentRuntime) -> None:
    async def answer(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [*state["messages"], AIMessage(content="plain runnable answer")]}

    holder = executor(runtime, lambda: RunnableLambda(answer)).execute("plain")
    assert holder.status is SubagentStatus.COMPLETED, holder.error
    assert holder.result == "plain runnable answer"


def test_inherit_uses_the_parent_model(runtime: SubagentRuntime) -> None:
    parent = ScriptedChatModel(default="from the parent model")
    ex = SubagentExecutor(
        SubagentConfig(name="child", model="inherit"), parent_model=parent, runtime=runtime
    )
    assert ex.execute("anything").result == "from the parent model"
    assert parent.call_count == 1


def test_current_task_id_inside_the_run(runtime: SubagentRuntime) -> None:
    seen: list[str | None] = []

    async def node(state: MessagesState) -> dict[str, Any]:
        seen.append(get_current_task_id())
        return {"messages": [AIMessage(content="ok")]}

    holder = executor(runtime, lambda: graph_of(node)).execute("who am i")
    assert seen == [holder.task_id]
    assert get_current_task_id() is None


# -- execute / aexecute / execute_async ------------------------------------------------------


@both_backends
def test_execute_blocks_until_terminal(runtime: SubagentRuntime) -> None:
    holder = executor(runtime, reply_graph("sync result", delay=0.1)).execute("sync")
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "sync result"
    assert holder.started_at is not None and holder.completed_at is not None


def test_execute_with_a_timeout_cancels_the_subagent(runtime: SubagentRuntime) -> None:
    probe = Probe()
    started = time.monotonic()
    holder = executor(runtime, slow_graph(probe)).execute("slow", timeout=0.2)
    assert time.monotonic() - started < 3
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.cancel_reason is not None and "timeout" in holder.cancel_reason
    assert probe.saw("cleaned")


def test_execute_async_returns_at_once(runtime: SubagentRuntime) -> None:
    probe = Probe()
    started = time.monotonic()
    task_id = executor(runtime, slow_graph(probe, seconds=2)).execute_async(
        "background", task_id="my-id"
    )
    assert time.monotonic() - started < 0.5
    assert task_id == "my-id"
    holder = runtime.get(task_id)
    assert holder is not None and not holder.is_terminal
    with pytest.raises(ValueError, match="already registered"):
        executor(runtime, reply_graph()).execute_async("again", task_id="my-id")
    runtime.request_cancel(task_id)


def test_aexecute_does_not_block_the_callers_loop(runtime: SubagentRuntime) -> None:
    ex = executor(runtime, reply_graph("async result", delay=0.3))

    async def main() -> tuple[Any, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        result = await ex.aexecute("async")
        stop.set()
        await ticking
        return result, ticks

    holder, ticks = asyncio.run(main())
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "async result"
    assert ticks >= 10  # ~30 possible in 0.3 s; a blocked loop would give 1


def test_cancelling_aexecute_cancels_the_child_and_waits_for_it(runtime: SubagentRuntime) -> None:
    probe = Probe()
    ex = executor(runtime, slow_graph(probe, seconds=30, cleanup=0.3))
    seen_at_propagation: list[SubagentStatus] = []

    async def main() -> None:
        waiting = asyncio.create_task(ex.aexecute("child"))
        await asyncio.get_running_loop().run_in_executor(None, probe.started.wait, SETTLE)
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            child = runtime.list_tasks()[0]
            seen_at_propagation.append(child.status)
            raise

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    # The CancelledError reached the caller only after the child had stopped.
    assert seen_at_propagation == [SubagentStatus.CANCELLED]
    assert probe.saw("cleaned")
    child = runtime.list_tasks()[0]
    assert child.cancel_reason is not None and "caller" in child.cancel_reason


# -- the default runtime ------------------------------------------------------------------------


@pytest.fixture
def default_runtime() -> Iterator[SubagentRuntime]:
    runtime = subagent_exec.configure(max_workers=2, cleanup_timeout_seconds=2.0)
    yield runtime
    current = subagent_exec.get_default_runtime()
    for each in {runtime, current}:
        assert each.shutdown(cancel=True, wait=True, timeout=30)


def test_module_functions_use_the_default_runtime(default_runtime: SubagentRuntime) -> None:
    assert subagent_exec.get_default_runtime() is default_runtime
    probe = Probe()
    ex = SubagentExecutor(SubagentConfig(name="bg", graph_factory=slow_graph(probe)))
    task_id = ex.execute_async("background")
    assert probe.started.wait(SETTLE)
    holder = subagent_exec.get_background_task_result(task_id)
    assert holder is not None and holder.status is SubagentStatus.RUNNING
    assert subagent_exec.list_background_tasks() == [holder]
    assert subagent_exec.list_background_tasks(status="running") == [holder]
    assert subagent_exec.list_background_tasks(status=["completed", "failed"]) == []
    assert subagent_exec.list_background_tasks(parent_id="someone-else") == []
    with pytest.raises(ValueError, match="status must be one of"):
        subagent_exec.list_background_tasks(status="finished")
    events: list[TaskEvent] = []
    unsubscribe = subagent_exec.subscribe(events.append)
    assert subagent_exec.cleanup_background_task(task_id) is False  # still running
    assert subagent_exec.request_cancel_background_task(task_id, "module stop") is True
    terminal(holder)
    assert holder.status is SubagentStatus.CANCELLED
    assert wait_until(lambda: any(e.kind == "cancelled" for e in events))
    unsubscribe()
    assert subagent_exec.cleanup_background_task(task_id) is True
    assert subagent_exec.get_background_task_result(task_id) is None


def test_configure_replaces_the_default_runtime(default_runtime: SubagentRuntime) -> None:
    probe = Probe()
    old_task = SubagentExecutor(
        SubagentConfig(name="old", graph_factory=slow_graph(probe))
    ).execute_async("on the old runtime")
    assert probe.started.wait(SETTLE)
    old_holder = default_runtime.get(old_task)
    new = subagent_exec.configure(max_workers=1, retain_max=5)
    try:
        assert subagent_exec.get_default_runtime() is new
        assert new.max_workers == 1 and new.retain_max == 5
        assert default_runtime.closed
        assert terminal(old_holder).status is SubagentStatus.CANCELLED  # cancelled by configure
        # Executors without an explicit runtime follow the new default.
        ex = SubagentExecutor(SubagentConfig(name="new", graph_factory=reply_graph("fresh")))
        holder = ex.execute("on the new runtime")
        assert holder.result == "fresh"
        assert new.get(holder.task_id) is holder
        assert default_runtime.get(holder.task_id) is None
    finally:
        new.shutdown(cancel=True, wait=True, timeout=30)


# -- events ----------------------------------------------------------------------------------


def test_subscribe_delivers_each_tasks_events_in_order_from_another_thread(
    runtime: SubagentRuntime,
) -> None:
    events: list[TaskEvent] = []
    threads: set[str] = set()

    def on_event(event: TaskEvent) -> None:
        threads.add(threading.current_thread().name)
        events.append(event)

    runtime.subscribe(on_event)
    model = ScriptedChatModel(script={"work": [tool_call("lookup", {"key": "a"}), "done"]})
    completed = agent(runtime, model).execute("work")
    probe = Probe()
    cancelled = executor(runtime, slow_graph(probe)).execute_async("to be cancelled")
    assert probe.started.wait(SETTLE)
    runtime.request_cancel(cancelled, "stop it")
    terminal(runtime.get(cancelled))
    assert wait_until(lambda: sum(e.is_terminal for e in events) == 2)
    time.sleep(0.05)  # nothing may follow a terminal event

    assert threading.current_thread().name not in threads
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    kinds = [e.kind for e in events if e.task_id == completed.task_id]
    assert kinds == ["created", "started", "ai_message", "ai_message", "completed"]
    kinds = [e.kind for e in events if e.task_id == cancelled]
    assert kinds == ["created", "started", "cancel_requested", "cancelled"]
    request = next(e for e in events if e.kind == "cancel_requested")
    assert request.data["reason"] == "stop it"
    assert all(e.trace_id and e.subagent_name for e in events)


def test_a_slow_subscriber_does_not_block_a_subagent(
    runtime: SubagentRuntime, gate: threading.Event
) -> None:
    delivered: list[TaskEvent] = []

    def stuck_until_released(event: TaskEvent) -> None:
        gate.wait(30)
        delivered.append(event)

    unsubscribe = runtime.subscribe(stuck_until_released)
    graph = lambda: graph_of(*[_answer(AIMessage(content=f"m{i}")) for i in range(5)])  # noqa: E731
    holder = executor(runtime, graph).execute("chatty", timeout=SETTLE)
    # The sub-agent finished while its subscriber was still stuck on event one.
    assert holder.status is SubagentStatus.COMPLETED
    assert delivered == []
    gate.set()
    assert wait_until(lambda: len(delivered) == 8)
    assert [e.kind for e in delivered] == [
        "created",
        "started",
        *["ai_message"] * 5,
        "completed",
    ]
    unsubscribe()


def test_a_failing_subscriber_does_not_break_anything(runtime: SubagentRuntime) -> None:
    good: list[TaskEvent] = []

    def bad(event: TaskEvent) -> None:
        raise RuntimeError("subscriber bug")

    runtime.subscribe(bad)
    runtime.subscribe(good.append)
    holder = executor(runtime, reply_graph("fine")).execute("x")
    assert holder.status is SubagentStatus.COMPLETED
    assert wait_until(lambda: any(e.kind == "completed" for e in good))


def test_unsubscribe_stops_delivery(runtime: SubagentRuntime) -> None:
    events: list[TaskEvent] = []
    unsubscribe = runtime.subscribe(events.append)
    executor(runtime, reply_graph()).execute("first")
    assert wait_until(lambda: any(e.kind == "completed" for e in events))
    unsubscribe()
    count = len(events)
    executor(runtime, reply_graph()).execute("second")
    time.sleep(0.1)
    assert len(events) == count


# -- shutdown --------------------------------------------------------------------------------


def test_shutdown_cancels_everything_and_leaves_no_thread_behind() -> None:
    before = thread_snapshot()
    runtime = SubagentRuntime(max_workers=2)
    runtime.subscribe(lambda event: None)
    probes = [Probe() for _ in range(4)]
    ids = [executor(runtime, slow_graph(p, cleanup=0.1)).execute_async("x") for p in probes]
    assert probes[0].started.wait(SETTLE) and probes[1].started.wait(SETTLE)
    assert runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)
    for task_id in ids:
        holder = runtime.get(task_id)
        assert holder is not None and holder.status is SubagentStatus.CANCELLED
    assert probes[0].saw("cleaned") and probes[1].saw("cleaned")
    assert probes[2].factory_calls == 0 and probes[3].factory_calls == 0
    # Once shutdown(wait=True) has returned, nothing of the runtime is alive.
    assert sorted(t.name for t in thread_snapshot() - before) == []
    with pytest.raises(RuntimeClosedError, match="shut down"):
        executor(runtime, reply_graph()).execute_async("after shutdown")
    with pytest.raises(RuntimeClosedError):
        executor(runtime, reply_graph()).execute("after shutdown")
    with pytest.raises(RuntimeClosedError):
        asyncio.run(executor(runtime, reply_graph()).aexecute("after shutdown"))
    with pytest.raises(RuntimeClosedError):
        runtime.subscribe(lambda event: None)
    assert runtime.list_tasks() == [runtime.get(i) for i in ids]  # still readable


def test_runtime_as_a_context_manager_leaves_no_thread_behind() -> None:
    before = thread_snapshot()
    probe = Probe()
    with SubagentRuntime(max_workers=2) as runtime:
        runtime.subscribe(lambda event: None)
        task_id = executor(runtime, slow_graph(probe)).execute_async("x")
        done = executor(runtime, reply_graph("ok")).execute("y")
        assert probe.started.wait(SETTLE)
    assert runtime.closed
    assert done.status is SubagentStatus.COMPLETED
    assert runtime.get(task_id).status is SubagentStatus.CANCELLED  # type: ignore[union-attr]
    assert leaked_threads(before, timeout=0.0) == []


def test_shutdown_without_cancel_lets_running_work_finish(runtime: SubagentRuntime) -> None:
    holder_id = executor(runtime, reply_graph("finished", delay=0.2)).execute_async("x")
    assert runtime.shutdown(cancel=False, wait=True, timeout=SETTLE)
    holder = runtime.get(holder_id)
    assert holder is not None and holder.status is SubagentStatus.COMPLETED


def test_shutdown_reports_a_timeout_when_work_does_not_stop_in_time(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """Code that blocks its own loop cannot be interrupted; ``shutdown`` with a
    ``timeout`` says so (False) instead of hanging, and a later wait succeeds."""
    runtime = make_runtime(max_workers=1)
    entered = threading.Event()

    async def hogs_its_loop(state: MessagesState) -> dict[str, Any]:
        entered.set()
        time.sleep(0.8)
        return {"messages": [AIMessage(content="late")]}

    task_id = executor(runtime, lambda: graph_of(hogs_its_loop)).execute_async("hog")
    assert entered.wait(SETTLE)
    assert runtime.shutdown(cancel=True, wait=True, timeout=0.2) is False
    assert runtime.shutdown(cancel=True, wait=True, timeout=SETTLE) is True
    holder = runtime.get(task_id)
    assert holder is not None and holder.status is SubagentStatus.CANCELLED
