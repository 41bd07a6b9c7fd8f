"""Defects found by trials from outside (issue 10, "Core"), one test each.

Every test here failed on the engine before the fix it names.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import MessagesState

from subagent_exec import SubagentResult, SubagentRuntime, SubagentStatus, TaskEvent

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

S = SubagentStatus


def spawner(
    runtime: SubagentRuntime,
    child: Callable[[], Any],
    spawned: list[str],
    *,
    then: float,
    name: str = "child",
    holders: list[SubagentResult] | None = None,
) -> Callable[[], Any]:
    """A graph_factory whose node starts one child (without waiting for it) and
    then awaits ``then`` seconds before answering."""

    def factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            child_id = executor(runtime, child, name=name).execute_async("child work")
            if holders is not None:
                holder = runtime.get(child_id)
                assert holder is not None
                holders.append(holder)
            spawned.append(child_id)
            await asyncio.sleep(then)
            return {"messages": [AIMessage(content="parent done")]}

        return graph_of(node)

    return factory


# -- 1 and 2: the whole tree, always ------------------------------------------------------


@pytest.mark.parametrize("removal", ["cleanup", "retain_max"])
def test_removing_a_finished_middle_node_keeps_its_subtree_stoppable(
    make_runtime: Callable[..., SubagentRuntime], removal: str
) -> None:
    """A -> B -> C; B ends without waiting for C and is removed: C must not be
    left running without a cancel reason once A is stopped."""
    runtime = make_runtime(max_workers=4, retain_max=0 if removal == "retain_max" else 1000)
    c_probe = Probe()
    c_ids: list[str] = []
    c_holders: list[SubagentResult] = []
    b_ids: list[str] = []
    b_holders: list[SubagentResult] = []
    b_factory = spawner(runtime, slow_graph(c_probe), c_ids, then=0.0, name="C", holders=c_holders)
    a_factory = spawner(runtime, b_factory, b_ids, then=30.0, name="B", holders=b_holders)
    a_id = executor(runtime, a_factory).execute_async("A")
    a_holder = runtime.get(a_id)
    assert wait_until(lambda: len(c_holders) == 1)
    assert terminal(b_holders[0]).status is S.COMPLETED
    if removal == "cleanup":
        runtime.cleanup(b_ids[0])
    assert runtime.get(b_ids[0]) is None
    c = c_holders[0]
    runtime.request_cancel(a_id, "stop A")
    terminal(a_holder)
    assert terminal(c).status is S.CANCELLED
    assert c.cancel_reason is not None and b_ids[0] in c.cancel_reason


def test_forgetting_a_middle_node_reattaches_its_children_to_its_parent() -> None:
    """The registry's tree (what stops follow) survives forgotten middle nodes."""
    import contextvars

    from subagent_exec._registry import Registry
    from subagent_exec._tasks import TaskSettings

    settings = TaskSettings(
        lock=threading.RLock(),
        cancel_grace_seconds=0.0,
        cleanup_timeout_seconds=1.0,
        time_out=lambda entry: None,
        release=lambda entry: None,
        ended=lambda entry: [],
        interrupt=lambda entries: None,
    )
    registry = Registry(retain_max=10, retain_ttl_seconds=None)
    entries: dict[str, Any] = {}
    for task_id, parent in [("A", None), ("B", "A"), ("C", "B"), ("D", "C"), ("E", "B")]:
        holder = SubagentResult(task_id=task_id, subagent_name="w", task="x", trace_id="t")
        entries[task_id] = registry.register(
            holder,
            entries.get(parent or ""),
            run=reply_graph(),  # never run here
            payload=None,
            timeout_seconds=1.0,
            context=contextvars.Context(),
            settings=settings,
        )
    registry.forget("B")
    assert [e.task_id for e in registry.descendants("A")] == ["C", "D", "E"]
    registry.forget("C")
    assert [e.task_id for e in registry.descendants("A")] == ["E", "D"]
    registry.forget("A")
    assert registry.descendants("A") == [] and registry.descendants("E") == []


@pytest.mark.parametrize("ending", ["completes", "fails"])
def test_a_task_that_ends_on_its_own_stops_what_it_left_running(
    runtime: SubagentRuntime, ending: str
) -> None:
    grandchild_probe = Probe()
    children: list[str] = []
    grandchildren: list[str] = []
    child_factory = spawner(runtime, slow_graph(grandchild_probe), grandchildren, then=30.0)

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            children.append(executor(runtime, child_factory).execute_async("child work"))
            while not grandchild_probe.started.is_set():  # the whole tree is running
                await asyncio.sleep(0.01)
            if ending == "fails":
                raise ValueError("parent broke")
            return {"messages": [AIMessage(content="parent done")]}

        return graph_of(node)

    parent = executor(runtime, parent_factory, name="parent").execute("root")
    assert parent.status is (S.COMPLETED if ending == "completes" else S.FAILED)
    for task_id in (*children, *grandchildren):
        holder = terminal(runtime.get(task_id))
        assert holder.status is S.CANCELLED, holder
        assert holder.cancel_reason is not None
        assert parent.task_id in holder.cancel_reason
        assert parent.status.value in holder.cancel_reason  # says how the parent ended
    assert grandchild_probe.saw("cleaned")


def test_a_child_the_parent_waited_for_is_not_affected(runtime: SubagentRuntime) -> None:
    children: list[str] = []

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            child = executor(runtime, reply_graph("child answer", delay=0.05))
            holder = await child.aexecute("child work")
            children.append(holder.task_id)
            return {"messages": [AIMessage(content=f"got {holder.result}")]}

        return graph_of(node)

    parent = executor(runtime, parent_factory).execute("root")
    assert parent.result == "got child answer"
    assert terminal(runtime.get(children[0])).status is S.COMPLETED


# -- 3: shutdown without cancel strands nothing --------------------------------------------


def test_shutdown_without_cancel_or_wait_still_runs_every_queued_task(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1)
    ex = executor(runtime, reply_graph("done", delay=0.1))
    ids = [ex.execute_async(f"task {i}") for i in range(4)]
    holders = [runtime.get(i) for i in ids]
    assert runtime.shutdown(cancel=False, wait=False)
    for holder in holders:
        assert terminal(holder).status is S.COMPLETED
    assert wait_until(lambda: runtime.stats()["free_slots"] == 1)
    assert runtime.shutdown(wait=True, timeout=SETTLE)  # nothing left to wait for


# -- 4, 5, 6: what is recorded ----------------------------------------------------------------


class ScriptedStream(Runnable[Any, Any]):
    """A Runnable (not a LangGraph graph) whose ``astream`` yields the given
    message lists as states, then waits, and yields ``on_cancel`` when its wait
    is cancelled (a library that still emits a chunk while unwinding)."""

    def __init__(self, states: list[list[Any]], on_cancel: list[Any] | None = None) -> None:
        self.states = states
        self.on_cancel = on_cancel

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError("only astream is used")

    async def astream(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        for messages in self.states:
            yield {"messages": [HumanMessage(content="go"), *messages]}
        if self.on_cancel is None:
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            yield {"messages": [HumanMessage(content="go"), *self.on_cancel]}
            raise


def test_a_message_that_arrives_after_the_stop_is_neither_recorded_nor_announced(
    runtime: SubagentRuntime,
) -> None:
    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    stream = ScriptedStream(
        [[AIMessage(content="before", id="m1")]],
        on_cancel=[AIMessage(content="before", id="m1"), AIMessage(content="late", id="m2")],
    )
    task_id = executor(runtime, lambda: stream).execute_async("go")
    holder = runtime.get(task_id)
    assert holder is not None and wait_until(lambda: len(holder.ai_messages) == 1)
    runtime.request_cancel(task_id, "stop")
    assert terminal(holder).status is S.CANCELLED
    assert [m["text"] for m in holder.ai_messages] == ["before"]
    assert wait_until(lambda: any(e.is_terminal and e.task_id == task_id for e in events))
    announced = [e.data["message"]["text"] for e in events if e.kind == "ai_message"]
    assert announced == ["before"]


def test_messages_without_an_id_are_told_apart_by_their_content(
    runtime: SubagentRuntime,
) -> None:
    first, second = AIMessage(content="first"), AIMessage(content="second")
    assert first.id is None and second.id is None
    # The values stream shows the list again and again; the message at the
    # same position changes once.
    stream = ScriptedStream([[first], [first], [second], [second, AIMessage(content="third")]])
    holder = executor(runtime, lambda: stream).execute("go")
    assert holder.status is S.COMPLETED, holder.error
    assert [m["text"] for m in holder.ai_messages] == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([{"text": "Part 1"}, {"text": " Part 2"}], "Part 1 Part 2"),
        ([{"type": "text", "text": "a"}, " b", {"type": "output_text", "text": " c"}], "a b c"),
        ([{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "answer"}], "answer"),
    ],
)
def test_text_comes_from_every_common_block_shape(
    runtime: SubagentRuntime, content: list[Any], expected: str
) -> None:
    stream = ScriptedStream([[AIMessage(content=content, id="m1")]])
    holder = executor(runtime, lambda: stream).execute("go")
    assert holder.result == expected
    assert holder.ai_messages[0]["text"] == expected


# -- 7, 8: what a reader may rely on ------------------------------------------------------------


def test_the_terminal_status_is_published_after_its_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subagent_exec._result as result_module

    holder = SubagentResult(task_id="t", subagent_name="w", task="x", trace_id="tr")
    seen_at_timestamp: list[SubagentStatus] = []
    real_now = result_module._now

    def now() -> Any:
        seen_at_timestamp.append(holder.status)  # what a lock-free reader would see
        return real_now()

    monkeypatch.setattr(result_module, "_now", now)
    holder._start()
    holder._finish(S.COMPLETED, result="answer")
    # started_at is written while the status is still PENDING, completed_at
    # while it is still RUNNING: nobody sees a status without its payload.
    assert seen_at_timestamp == [S.PENDING, S.RUNNING]
    assert holder.status is S.COMPLETED and holder.result == "answer"


def test_whoever_is_woken_by_the_end_sees_the_slot_free(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2)
    ex = executor(runtime, reply_graph("x"))
    for _ in range(30):
        holder = ex.execute("go")
        assert holder.is_terminal
        assert runtime.stats()["free_slots"] == 2  # at once, no waiting


def test_an_abandoned_sync_call_is_counted_before_the_status_is_written(
    runtime: SubagentRuntime, gate: threading.Event
) -> None:
    entered = threading.Semaphore(0)

    def factory() -> Any:
        def stuck(state: MessagesState) -> dict[str, Any]:  # a sync node
            entered.release()
            gate.wait(30)
            return {"messages": [AIMessage(content="late")]}

        return graph_of(stuck)  # type: ignore[arg-type]

    ex = executor(runtime, factory)
    for round_ in range(8):
        before = runtime.stats()["abandoned_threads"]
        task_id = ex.execute_async(f"go {round_}")
        holder = runtime.get(task_id)
        assert entered.acquire(timeout=SETTLE)
        runtime.request_cancel(task_id, "stop")
        assert terminal(holder).status is S.CANCELLED
        assert runtime.stats()["abandoned_threads"] == before + 1  # at once, no waiting


# -- 10, 11: abandoned cleanup, interpreter exit --------------------------------------------


@pytest.fixture
def noise() -> Iterator[list[str]]:
    """Everything unraisable or logged by asyncio while the test runs."""
    found: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        found.append(f"unraisable: {unraisable.exc_value!r} in {unraisable.object!r}")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(f"asyncio log: {record.getMessage()}")

    handler = Collect(level=logging.WARNING)
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    sys.unraisablehook = hook
    try:
        yield found
    finally:
        gc.collect()
        sys.unraisablehook = previous
        asyncio_logger.removeHandler(handler)


def _stubborn_graph(kind: str, entered: threading.Event) -> Callable[[], Any]:
    def factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            entered.set()
            if kind == "slow_finally":
                try:
                    await asyncio.sleep(30)
                finally:
                    await asyncio.sleep(60)
            else:  # swallows every cancel
                while True:
                    try:
                        await asyncio.sleep(30)
                    except asyncio.CancelledError:
                        continue
            return {"messages": [AIMessage(content="never")]}

        return graph_of(node)

    return factory


@pytest.mark.parametrize("kind", ["slow_finally", "swallows_cancel"])
def test_abandoned_cleanup_leaves_one_warning_and_nothing_else(
    make_runtime: Callable[..., SubagentRuntime],
    caplog: pytest.LogCaptureFixture,
    noise: list[str],
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = make_runtime(cleanup_timeout_seconds=0.3)
    entered = threading.Event()
    task_id = executor(runtime, _stubborn_graph(kind, entered)).execute_async("go")
    assert entered.wait(SETTLE)
    runtime.request_cancel(task_id, "stop")
    holder = terminal(runtime.get(task_id))
    assert holder.status is S.CANCELLED and holder.stop_reason == "cleanup_timeout"
    time.sleep(1.5)  # the loop closes after a last chance for leftovers
    gc.collect()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["subagent_exec"], [r.getMessage() for r in warnings]
    assert task_id in warnings[0].getMessage()
    assert noise == []


EXIT_SCRIPT = """
import asyncio, sys, threading, time
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime

entered = threading.Semaphore(0)

def factory(kind):
    async def node(state):
        entered.release()
        if kind == "slow_finally":
            try:
                await asyncio.sleep(600)
            finally:
                await asyncio.sleep(60)
        while True:
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                continue
    def make():
        graph = StateGraph(MessagesState)
        graph.add_node("n", node)
        graph.add_edge(START, "n")
        graph.add_edge("n", END)
        return graph.compile()
    return make

runtimes = [SubagentRuntime(name=f"exit{i}") for i in range(2)]  # cleanup limit: 10 s
for runtime in runtimes:
    for kind in ("slow_finally", "swallows"):
        config = SubagentConfig(name=kind, graph_factory=factory(kind))
        SubagentExecutor(config, runtime=runtime).execute_async("go")
for _ in range(4):
    entered.acquire()
print("exiting", flush=True)
started = time.monotonic()
sys.exit(0)
"""


def test_interpreter_exit_is_bounded_by_one_documented_figure(tmp_path: Any) -> None:
    """Two runtimes, each with a sub-agent whose finally: awaits 60 s and one that
    swallows every cancel (cleanup limit 10 s): exit takes EXIT_TIMEOUT_SECONDS
    plus about a second, for all runtimes together, and prints nothing else."""
    import subprocess

    from subagent_exec._exit import EXIT_TIMEOUT_SECONDS

    script = tmp_path / "exit_bound.py"
    script.write_text(EXIT_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "exiting"
    began = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - began
    assert process.returncode == 0, stderr
    assert took < EXIT_TIMEOUT_SECONDS + 2.5, f"exit took {took:.1f}s"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all("abandoning it" in line or "sync call" in line for line in lines), stderr
