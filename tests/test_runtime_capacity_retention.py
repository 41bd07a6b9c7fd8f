"""Capacity (max_workers, FIFO, max_pending, slot lending for nested waits),
isolation between sub-agents, and retention of finished results."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import (
    CapacityError,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
)

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


class Concurrency:
    """Counts how many graph nodes run at the same moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.order: list[str] = []

    def factory(self, label: str, seconds: float) -> Callable[[], Any]:
        def make() -> Any:
            async def node(state: MessagesState) -> dict[str, Any]:
                with self._lock:
                    self.now += 1
                    self.peak = max(self.peak, self.now)
                    self.order.append(label)
                try:
                    await asyncio.sleep(seconds)
                finally:
                    with self._lock:
                        self.now -= 1
                return {"messages": [AIMessage(content=label)]}

            return graph_of(node)

        return make


# -- capacity ----------------------------------------------------------------------------


def test_at_most_max_workers_run_at_once(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=3)
    counter = Concurrency()
    ids = [
        executor(runtime, counter.factory(f"t{i}", 0.15)).execute_async(f"t{i}") for i in range(9)
    ]
    time.sleep(0.05)
    statuses = [runtime.get(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses.count(SubagentStatus.RUNNING) == 3
    assert statuses.count(SubagentStatus.PENDING) == 6
    for task_id in ids:
        assert terminal(runtime.get(task_id)).status is SubagentStatus.COMPLETED
    assert counter.peak == 3


def test_pending_tasks_start_in_fifo_order(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=1)
    counter = Concurrency()
    labels = [f"t{i}" for i in range(8)]
    ids = [executor(runtime, counter.factory(lbl, 0.01)).execute_async(lbl) for lbl in labels]
    for task_id in ids:
        terminal(runtime.get(task_id))
    assert counter.order == labels
    starts = [runtime.get(i).started_at for i in ids]  # type: ignore[union-attr]
    assert starts == sorted(starts)  # type: ignore[type-var]


def test_max_pending_refuses_with_a_clear_error_and_registers_nothing(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, max_pending=2)
    probe = Probe()
    running = executor(runtime, slow_graph(probe)).execute_async("running")
    assert probe.started.wait(SETTLE)
    waiting = [executor(runtime, reply_graph()).execute_async(f"w{i}") for i in range(2)]
    with pytest.raises(CapacityError, match="max_pending=2"):
        executor(runtime, reply_graph()).execute_async("one too many", task_id="refused")
    assert runtime.get("refused") is None
    assert len(runtime.list_tasks()) == 3
    assert runtime.stats()["submitted_total"] == 3

    # A cancelled queued task frees its place in the queue.
    runtime.request_cancel(waiting[0])
    accepted = executor(runtime, reply_graph("ok")).execute_async("now fits")
    runtime.request_cancel(running)
    assert terminal(runtime.get(accepted)).result == "ok"
    assert terminal(runtime.get(waiting[1])).status is SubagentStatus.COMPLETED


def test_max_pending_zero_accepts_only_what_can_start_now(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, max_pending=0)
    probes = [Probe(), Probe()]
    for p in probes:
        executor(runtime, slow_graph(p)).execute_async("x")
    with pytest.raises(CapacityError):
        executor(runtime, reply_graph()).execute_async("no room")


def test_nested_waits_lend_their_slot_so_parents_never_deadlock(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """max_workers=2, two parents, each awaiting two children at once: every
    worker is a waiting parent, yet every child runs on a lent slot."""
    runtime = make_runtime(max_workers=2)
    counter = Concurrency()
    child_ex = executor(runtime, counter.factory("child", 0.05), name="child")

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            results = await asyncio.gather(
                child_ex.aexecute("first child"), child_ex.aexecute("second child")
            )
            text = ", ".join(f"{r.status.value}:{r.result}" for r in results)
            return {"messages": [AIMessage(content=text)]}

        return graph_of(node)

    parent_ex = executor(runtime, parent_factory, name="parent")
    parents = [parent_ex.execute_async(f"parent {i}") for i in range(2)]
    for task_id in parents:
        holder = terminal(runtime.get(task_id), timeout=10)
        assert holder.status is SubagentStatus.COMPLETED, holder.error
        assert holder.result == "completed:child, completed:child"
        assert len(holder.children) == 2
    # Lent slots never let more than max_workers sub-agents do work at once.
    assert counter.peak <= 2
    stats = runtime.stats()
    assert stats["completed"] == 6


def test_nested_chain_to_max_depth_completes_on_one_worker(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, max_depth=3)

    def level(depth: int) -> Callable[[], Any]:
        def make() -> Any:
            async def node(state: MessagesState) -> dict[str, Any]:
                if depth == 3:
                    return {"messages": [AIMessage(content="leaf")]}
                child = executor(runtime, level(depth + 1), name=f"level{depth + 1}")
                result = await child.aexecute("go deeper")
                return {"messages": [AIMessage(content=f"{depth}>{result.result}")]}

            return graph_of(node)

        return make

    holder = executor(runtime, level(1), name="level1").execute("root", timeout=10)
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "1>2>leaf"


# -- isolation ----------------------------------------------------------------------------


@pytest.mark.parametrize("blocking", ["in_the_loop", "sync_tool"])
def test_a_blocked_subagent_does_not_slow_another(
    make_runtime: Callable[..., SubagentRuntime], gate: threading.Event, blocking: str
) -> None:
    runtime = make_runtime(max_workers=2)
    entered = threading.Event()

    async def blocks_its_own_loop(state: MessagesState) -> dict[str, Any]:
        entered.set()
        time.sleep(1.0)  # blocking code inside an async node: stalls this loop only
        return {"messages": [AIMessage(content="unblocked")]}

    def blocks_a_sync_node(state: MessagesState) -> dict[str, Any]:
        entered.set()
        gate.wait(30)
        return {"messages": [AIMessage(content="unblocked")]}

    node: Any = blocks_its_own_loop if blocking == "in_the_loop" else blocks_a_sync_node
    stuck = executor(runtime, lambda: graph_of(node), name="stuck").execute_async("stuck")
    assert entered.wait(SETTLE)

    async def busy(state: MessagesState) -> dict[str, Any]:
        for _ in range(10):
            await asyncio.sleep(0.02)  # 0.2 s of async work
        return {"messages": [AIMessage(content="busy done")]}

    started = time.monotonic()
    holder = executor(runtime, lambda: graph_of(busy), name="busy").execute("busy", timeout=5)
    took = time.monotonic() - started
    assert holder.status is SubagentStatus.COMPLETED
    assert took < 0.8, f"0.2 s of async work took {took:.2f}s next to a blocked sub-agent"
    gate.set()
    assert terminal(runtime.get(stuck)).status is SubagentStatus.COMPLETED


def test_each_subagent_runs_on_its_own_loop_and_thread(runtime: SubagentRuntime) -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(3, timeout=SETTLE)

    async def node(state: MessagesState) -> dict[str, Any]:
        with lock:
            seen.append((id(asyncio.get_running_loop()), threading.current_thread().name))
        await asyncio.to_thread(barrier.wait)  # all three are running at once
        return {"messages": [AIMessage(content="ok")]}

    ex = executor(runtime, lambda: graph_of(node))
    ids = [ex.execute_async(f"t{i}") for i in range(3)]
    for task_id in ids:
        assert terminal(runtime.get(task_id)).status is SubagentStatus.COMPLETED
    assert len({loop for loop, _ in seen}) == 3
    assert len({thread for _, thread in seen}) == 3


def test_model_factory_is_called_inside_the_subagents_loop_once_per_run(
    runtime: SubagentRuntime,
) -> None:
    from subagent_exec import SubagentConfig
    from subagent_exec.testing import ScriptedChatModel

    calls: list[tuple[int | None, str]] = []

    def factory() -> ScriptedChatModel:
        try:
            loop_id: int | None = id(asyncio.get_running_loop())
        except RuntimeError:
            loop_id = None
        calls.append((loop_id, threading.current_thread().name))
        return ScriptedChatModel(default="made here")

    ex = SubagentExecutor(SubagentConfig(name="m", model=factory), runtime=runtime)
    first, second = ex.execute("one"), ex.execute("two")
    assert first.result == second.result == "made here"
    assert len(calls) == 2
    assert all(loop_id is not None for loop_id, _ in calls)
    assert threading.current_thread().name not in {name for _, name in calls}


# -- retention ----------------------------------------------------------------------------


def test_retain_max_evicts_the_oldest_terminal_results(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, retain_max=2)
    ex = executor(runtime, reply_graph())
    done = [ex.execute(f"t{i}").task_id for i in range(4)]
    assert runtime.get(done[0]) is None and runtime.get(done[1]) is None
    assert runtime.get(done[2]) is not None and runtime.get(done[3]) is not None


def test_retain_max_never_evicts_unfinished_tasks(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, retain_max=0)
    probe = Probe()
    running = executor(runtime, slow_graph(probe)).execute_async("running")
    assert probe.started.wait(SETTLE)
    queued = executor(runtime, reply_graph()).execute_async("queued")
    cancelled = executor(runtime, reply_graph()).execute_async("cancelled")
    runtime.request_cancel(cancelled)  # terminal at once, so evicted at once
    assert runtime.get(cancelled) is None
    assert runtime.get(running) is not None and runtime.get(queued) is not None
    assert [h.task_id for h in runtime.list_tasks()] == [running, queued]


def test_cleanup_background_task(runtime: SubagentRuntime) -> None:
    probe = Probe()
    running = executor(runtime, slow_graph(probe)).execute_async("running")
    assert probe.started.wait(SETTLE)
    finished = executor(runtime, reply_graph()).execute("finished")
    assert runtime.cleanup(running) is False  # not terminal: kept
    assert runtime.get(running) is not None
    assert runtime.cleanup(finished.task_id) is True
    assert runtime.get(finished.task_id) is None
    assert runtime.cleanup(finished.task_id) is False  # already gone
    assert runtime.cleanup("never-existed") is False
    # The holder the caller kept is still readable after cleanup.
    assert finished.status is SubagentStatus.COMPLETED


def test_ttl_evicts_terminal_results_after_retain_ttl_seconds(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, retain_ttl_seconds=60)
    probe = Probe()
    running = executor(runtime, slow_graph(probe)).execute_async("running")
    assert probe.started.wait(SETTLE)
    finished = executor(runtime, reply_graph()).execute("finished").task_id
    now = datetime.now(UTC)
    # Freeze time only after the loops are done with their work.
    with freeze_time(now + timedelta(seconds=30)):
        assert runtime.get(finished) is not None  # younger than the TTL
    with freeze_time(now + timedelta(seconds=120)):
        assert [h.task_id for h in runtime.list_tasks()] == [running]
        assert runtime.get(finished) is None
        assert runtime.get(running) is not None  # unfinished: never evicted


def test_ttl_evicts_in_completion_order(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=1, retain_ttl_seconds=10)
    ex = executor(runtime, reply_graph())
    with freeze_time("2031-05-01 10:00:00", real_asyncio=True) as frozen:
        old = ex.execute("old").task_id
        frozen.tick(timedelta(seconds=8))
        young = ex.execute("young").task_id
        frozen.tick(timedelta(seconds=5))  # old is 13 s old, young 5 s
        assert runtime.get(old) is None
        assert runtime.get(young) is not None
        frozen.tick(timedelta(seconds=6))
        assert runtime.list_tasks() == []


def test_execute_and_aexecute_return_results_that_retention_already_evicted(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """With ``retain_max=0`` a task is forgotten the moment it ends; the caller
    of ``execute``/``aexecute`` still gets its holder. A child started from a
    stopping parent ends (CANCELLED) inside ``execute_async`` itself, so a
    lookup by id afterwards would always miss it."""
    runtime = make_runtime(max_workers=2, retain_max=0)
    outcomes: list[SubagentResult] = []
    errors: list[BaseException] = []
    parent_started = threading.Event()
    child = executor(runtime, reply_graph("child"), name="child")

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            parent_started.set()
            try:
                await asyncio.sleep(30)
            finally:
                try:
                    outcomes.append(await child.aexecute("from a stopping parent"))
                except BaseException as exc:
                    errors.append(exc)
            return {"messages": [AIMessage(content="never")]}

        return graph_of(node)

    parent_id = executor(runtime, parent_factory, name="parent").execute_async("parent")
    assert parent_started.wait(SETTLE)
    runtime.request_cancel(parent_id, "stop")
    assert wait_until(lambda: bool(outcomes or errors))
    assert errors == []
    assert outcomes[0].status is SubagentStatus.CANCELLED
    # Sync execute from many threads: each call gets its own finished holder.
    results: list[SubagentResult] = []

    def run_many() -> None:
        for _ in range(30):
            results.append(child.execute("quick", timeout=SETTLE))

    threads = [threading.Thread(target=run_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 90
    assert {r.status for r in results} == {SubagentStatus.COMPLETED}
    assert runtime.list_tasks() == []


def _waiting_parent(
    runtime: SubagentRuntime, child_factory: Callable[[], Any], seen: list[SubagentResult]
) -> Callable[[], Any]:
    """A parent whose node awaits one child through ``aexecute`` (lending its slot)."""

    def make() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            child = executor(runtime, child_factory, name="child", timeout_seconds=0.3)
            seen.append(await child.aexecute("child work"))
            return {"messages": [AIMessage(content=f"child was {seen[-1].status.value}")]}

        return graph_of(node)

    return make


def _slots_all_back(runtime: SubagentRuntime) -> bool:
    stats = runtime.stats()
    return stats["free_slots"] == runtime.max_workers and stats["active"] == 0


def test_cancelling_a_parent_that_lends_its_slot_gives_every_slot_back(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1)
    child_probe = Probe()
    seen: list[SubagentResult] = []
    parent_id = executor(
        runtime, _waiting_parent(runtime, slow_graph(child_probe, cleanup=0.1), seen)
    ).execute_async("parent")
    assert child_probe.started.wait(SETTLE)  # the child runs on the parent's lent slot
    runtime.request_cancel(parent_id, "stop the family")
    parent = terminal(runtime.get(parent_id))
    assert parent.status is SubagentStatus.CANCELLED
    (child_id,) = parent.children
    assert terminal(runtime.get(child_id)).status is SubagentStatus.CANCELLED
    assert child_probe.saw("cleaned")
    assert wait_until(lambda: _slots_all_back(runtime)), runtime.stats()
    assert executor(runtime, reply_graph("next")).execute("next", timeout=SETTLE).result == "next"


def test_a_child_timing_out_on_a_lent_slot_lets_the_parent_finish(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1)
    seen: list[SubagentResult] = []
    parent = executor(runtime, _waiting_parent(runtime, slow_graph(Probe()), seen))
    holder = parent.execute("parent", timeout=SETTLE)
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "child was timed_out"
    assert seen[0].status is SubagentStatus.TIMED_OUT
    assert wait_until(lambda: _slots_all_back(runtime)), runtime.stats()


def test_a_lent_slot_serves_the_lenders_own_children_first(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """max_workers=1, a top-level task is queued before the parent's child: the
    child still runs first (on the parent's slot), the queued task runs after."""
    runtime = make_runtime(max_workers=1)
    counter = Concurrency()
    release_parent = threading.Event()
    seen: list[SubagentResult] = []

    def parent_factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            await asyncio.get_running_loop().run_in_executor(None, release_parent.wait, SETTLE)
            child = executor(runtime, counter.factory("child", 0.05), name="child")
            seen.append(await child.aexecute("child"))
            return {"messages": [AIMessage(content="parent done")]}

        return graph_of(node)

    parent_id = executor(runtime, parent_factory).execute_async("parent")
    queued = executor(runtime, counter.factory("queued", 0.01)).execute_async("queued")
    release_parent.set()
    assert terminal(runtime.get(parent_id)).status is SubagentStatus.COMPLETED
    assert terminal(runtime.get(queued)).status is SubagentStatus.COMPLETED
    assert counter.order == ["child", "queued"]
    assert counter.peak == 1
