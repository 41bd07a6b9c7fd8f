"""Trees: children are recorded; stopping a task stops its whole subtree; a child
started under a stopped or stopping parent is CANCELLED at once and never runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import DepthError, SubagentRuntime, SubagentStatus, TaskEvent

from .helpers import SETTLE, Probe, executor, graph_of, reply_graph, slow_graph, terminal


def spawning_graph(
    runtime: SubagentRuntime,
    children: list[Callable[[], Any]],
    spawned: list[str],
    *,
    then_sleep: float = 30.0,
) -> Callable[[], Any]:
    """A graph_factory whose node starts one child per factory in ``children``
    (parent_id comes from the running sub-agent) and then awaits."""

    def factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            for index, child_factory in enumerate(children):
                ex = executor(runtime, child_factory, name=f"child{index}")
                spawned.append(ex.execute_async(f"child task {index}"))
            await asyncio.sleep(then_sleep)
            return {"messages": [AIMessage(content="parent done")]}

        return graph_of(node)

    return factory


def test_children_are_recorded_with_parent_trace_and_depth(runtime: SubagentRuntime) -> None:
    spawned: list[str] = []
    factory = spawning_graph(
        runtime, [reply_graph("a"), reply_graph("b")], spawned, then_sleep=0.05
    )
    parent = executor(runtime, factory, name="parent", trace_id="trace-42").execute("lead")
    assert parent.status is SubagentStatus.COMPLETED
    assert len(spawned) == 2
    assert parent.children == spawned
    for child_id in spawned:
        child = terminal(runtime.get(child_id))
        assert child.parent_id == parent.task_id
        assert child.trace_id == "trace-42"  # the tree shares one trace
        assert child.depth == 2
    listed = runtime.list_tasks(parent_id=parent.task_id)
    assert [h.task_id for h in listed] == spawned


def test_explicit_parent_id_is_recorded(runtime: SubagentRuntime) -> None:
    probe = Probe()
    parent_id = executor(runtime, slow_graph(probe)).execute_async("parent")
    child_id = executor(runtime, reply_graph("c")).execute_async("child", parent_id=parent_id)
    parent = runtime.get(parent_id)
    assert parent is not None and parent.children == [child_id]
    assert terminal(runtime.get(child_id)).parent_id == parent_id


def test_unknown_parent_is_refused_and_nothing_registered(runtime: SubagentRuntime) -> None:
    with pytest.raises(ValueError, match="parent_id"):
        executor(runtime, reply_graph()).execute_async("x", task_id="orphan", parent_id="nope")
    assert runtime.get("orphan") is None


def test_cancel_cascades_to_all_descendants(runtime: SubagentRuntime) -> None:
    grandchild_probe, child_probe = Probe(), Probe()
    grandchildren: list[str] = []
    children: list[str] = []
    child_factory = spawning_graph(runtime, [slow_graph(grandchild_probe)], grandchildren)
    parent_factory = spawning_graph(runtime, [child_factory, slow_graph(child_probe)], children)
    parent_id = executor(runtime, parent_factory, name="parent").execute_async("root")
    assert grandchild_probe.started.wait(SETTLE) and child_probe.started.wait(SETTLE)

    assert runtime.request_cancel(parent_id, "user stopped the tree")
    parent = terminal(runtime.get(parent_id))
    assert parent.status is SubagentStatus.CANCELLED
    assert parent.cancel_reason == "user stopped the tree"
    descendants = [*children, *grandchildren]
    assert len(descendants) == 3
    for task_id in descendants:
        holder = terminal(runtime.get(task_id))
        assert holder.status is SubagentStatus.CANCELLED
        assert holder.cancel_reason is not None
        assert parent_id in holder.cancel_reason  # names the ancestor that was stopped
        assert "user stopped the tree" in holder.cancel_reason
    assert grandchild_probe.saw("cleaned") and child_probe.saw("cleaned")


def test_cancelling_a_child_leaves_the_parent_running(runtime: SubagentRuntime) -> None:
    child_probe = Probe()
    children: list[str] = []
    parent_id = executor(
        runtime, spawning_graph(runtime, [slow_graph(child_probe)], children)
    ).execute_async("root")
    assert child_probe.started.wait(SETTLE)
    assert runtime.request_cancel(children[0], "only the child")
    assert terminal(runtime.get(children[0])).status is SubagentStatus.CANCELLED
    parent = runtime.get(parent_id)
    assert parent is not None and parent.status is SubagentStatus.RUNNING
    assert not parent.cancel_event.is_set()


def test_child_of_a_terminal_parent_is_cancelled_at_once_and_never_runs(
    runtime: SubagentRuntime,
) -> None:
    parent = executor(runtime, reply_graph("done")).execute("parent")
    assert parent.status is SubagentStatus.COMPLETED
    probe = Probe()
    child_id = executor(runtime, slow_graph(probe)).execute_async("late", parent_id=parent.task_id)
    child = runtime.get(child_id)
    assert child is not None
    assert child.status is SubagentStatus.CANCELLED  # at once, no wait
    assert child.cancel_reason is not None and parent.task_id in child.cancel_reason
    assert child.started_at is None
    assert probe.factory_calls == 0


def test_child_of_a_stopping_parent_is_cancelled_at_once_and_never_runs(
    runtime: SubagentRuntime,
) -> None:
    parent_probe, child_probe = Probe(), Probe()
    from_cleanup: list[str] = []

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            parent_probe.started.set()
            try:
                await asyncio.sleep(30)
            finally:
                # Spawning from inside the cleanup of a cancelled parent.
                child = executor(runtime, slow_graph(child_probe), name="late-child")
                from_cleanup.append(child.execute_async("spawned during cleanup"))
                await asyncio.sleep(0.3)
            return {"messages": [AIMessage(content="never")]}

        return graph_of(node)

    parent_id = executor(runtime, parent_factory).execute_async("parent")
    assert parent_probe.started.wait(SETTLE)
    runtime.request_cancel(parent_id, "stop")
    parent = runtime.get(parent_id)
    assert parent is not None and parent.stopping
    # From outside too, while the parent is still unwinding.
    outside = executor(runtime, slow_graph(child_probe)).execute_async("x", parent_id=parent_id)
    assert runtime.get(outside).status is SubagentStatus.CANCELLED  # type: ignore[union-attr]
    terminal(parent)
    assert len(from_cleanup) == 1
    for child_id in (outside, *from_cleanup):
        child = terminal(runtime.get(child_id), timeout=0.01)
        assert child.status is SubagentStatus.CANCELLED
        assert child.started_at is None
    assert child_probe.factory_calls == 0


@pytest.mark.parametrize("round_", range(5))
def test_spawning_children_while_the_parent_is_cancelled_orphans_none(
    make_runtime: Callable[..., SubagentRuntime], round_: int
) -> None:
    """One thread spawns children of P in a loop while another cancels P.

    Every child ends CANCELLED: by cascade if it was registered before the
    cancel, or at once (never started) if after. None is left running, and no
    child registered after P's cancel ever starts.
    """
    runtime = make_runtime(max_workers=3)
    events: list[TaskEvent] = []
    runtime.subscribe(events.append)
    parent_probe, child_probe = Probe(), Probe()
    parent_id = executor(runtime, slow_graph(parent_probe)).execute_async("parent")
    assert parent_probe.started.wait(SETTLE)
    child_ex = executor(runtime, slow_graph(child_probe), name="child")
    spawned: list[str] = []
    go = threading.Barrier(2)

    def spawner() -> None:
        go.wait()
        refused_at_once = 0
        for i in range(2000):
            child_id = child_ex.execute_async(f"child {i}", parent_id=parent_id)
            spawned.append(child_id)
            holder = runtime.get(child_id)
            if holder is not None and holder.status is SubagentStatus.CANCELLED:
                refused_at_once += 1
                if refused_at_once >= 10:
                    return
            time.sleep(0)  # let the canceller in between two spawns

    thread = threading.Thread(target=spawner)
    thread.start()
    go.wait()
    while len(spawned) < 3 + round_ * 4:
        time.sleep(0.0005)
    assert runtime.request_cancel(parent_id, "stop the tree")
    thread.join(SETTLE)
    assert not thread.is_alive()

    terminal(runtime.get(parent_id))
    for child_id in spawned:
        child = terminal(runtime.get(child_id))
        assert child.status is SubagentStatus.CANCELLED, child
        assert child.cancel_reason is not None and parent_id in child.cancel_reason
    cancel_seq = next(
        e.seq
        for e in _settled(events, spawned)
        if e.kind == "cancel_requested" and e.task_id == parent_id
    )
    late = {e.task_id for e in events if e.kind == "created" and e.seq > cancel_seq}
    assert late, "the cancel came after every spawn: the race was not exercised"
    started = {e.task_id for e in events if e.kind == "started"}
    assert not late & started, "a child registered after its parent's cancel was started"
    for child_id in late:
        holder = runtime.get(child_id)
        assert holder is not None and holder.started_at is None


def _settled(events: list[TaskEvent], task_ids: list[str]) -> list[TaskEvent]:
    """The event list once every task's terminal event has been delivered."""
    from .helpers import wait_until

    wanted = set(task_ids)
    assert wait_until(lambda: wanted <= {e.task_id for e in list(events) if e.is_terminal})
    return list(events)


def test_depth_limit_refuses_deeper_children(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, max_depth=2)
    errors: list[BaseException] = []

    def child_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            try:
                executor(runtime, reply_graph(), name="too-deep").execute_async(
                    "grandchild", task_id="grandchild"
                )
            except DepthError as exc:
                errors.append(exc)
            return {"messages": [AIMessage(content="child done")]}

        return graph_of(node)

    children: list[str] = []
    parent = executor(runtime, spawning_graph(runtime, [child_factory], children, then_sleep=0.2))
    holder = parent.execute("root")
    assert holder.status is SubagentStatus.COMPLETED
    assert terminal(runtime.get(children[0])).status is SubagentStatus.COMPLETED
    assert len(errors) == 1
    assert "max_depth=2" in str(errors[0])
    assert runtime.get("grandchild") is None
    assert len(runtime.list_tasks()) == 2
