"""A worker thread's event loop is reused run after run (``_loops.py``), and
nothing of one run survives into the next on the same worker: tasks, timers,
async generators, loop settings, context variables; a loop with abandoned sync
calls, unclosed I/O or a broken driver is replaced; worker loops are closed at
shutdown; ``backend="thread-fresh-loops"`` gives every run a fresh loop.

Every runtime here has one worker thread (``max_workers=1, max_depth=1``), so
consecutive runs are on the same worker and, unless replaced, the same loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from .helpers import SETTLE, graph_of
from .provider_servers import ProviderServer
from .test_model_binders import ToyChatModel

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("test_worker_loops_mark", default="")


def one_worker(make_runtime: Callable[..., SubagentRuntime], **options: Any) -> SubagentRuntime:
    return make_runtime(max_workers=1, max_depth=1, **options)


def run_node(
    runtime: SubagentRuntime, node: Callable[[MessagesState], Any], task: str = "go"
) -> Any:
    """Run one sub-agent whose graph is the single async node ``node``."""
    graph = graph_of(node)
    executor = SubagentExecutor(
        SubagentConfig(name="probe", graph_factory=lambda: graph), runtime=runtime
    )
    return executor.execute(task, timeout=30)


def answer(text: str = "done") -> dict[str, Any]:
    return {"messages": [AIMessage(content=text)]}


class LoopSeen:
    """Records the running loop (and anything else) from inside runs."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.notes: list[Any] = []

    async def node(self, state: MessagesState) -> dict[str, Any]:
        self.loops.append(asyncio.get_running_loop())
        return answer()


def test_consecutive_runs_on_one_worker_share_its_loop(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()
    for _ in range(3):
        assert run_node(runtime, seen.node).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1] is seen.loops[2]
    assert runtime.stats()["worker_loops"] == 1


def test_fresh_loop_backend_gives_every_run_its_own_loop(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime, backend="thread-fresh-loops")
    seen = LoopSeen()
    for _ in range(3):
        assert run_node(runtime, seen.node).status is SubagentStatus.COMPLETED
    assert len({id(loop) for loop in seen.loops}) == 3
    # Closed once the run's status is written (the last one an instant later).
    deadline = time.monotonic() + SETTLE
    while not all(loop.is_closed() for loop in seen.loops) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(loop.is_closed() for loop in seen.loops)
    assert runtime.stats()["worker_loops"] == 3


def test_a_context_variable_set_by_a_run_is_not_seen_by_the_next(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()

    async def setter(state: MessagesState) -> dict[str, Any]:
        MARK.set("first run")
        # Also from a callback and a task the run leaves behind.
        asyncio.get_running_loop().call_soon(MARK.set, "callback of the first run")
        asyncio.get_running_loop().create_task(_set_mark_later())
        seen.loops.append(asyncio.get_running_loop())
        return answer()

    async def reader(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.1)
        seen.notes.append(MARK.get())
        return answer()

    assert run_node(runtime, setter).status is SubagentStatus.COMPLETED
    assert run_node(runtime, reader).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1]  # same loop: the isolation is the hygiene's
    assert seen.notes == [""]


async def _set_mark_later() -> None:
    await asyncio.sleep(0.05)
    MARK.set("task of the first run")


def test_tasks_a_run_leaves_behind_are_cancelled_before_the_next_run(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    events: list[str] = []
    seen = LoopSeen()

    async def linger() -> None:
        try:
            await asyncio.sleep(30)
            events.append("leftover ran on")
        finally:
            events.append("leftover cleaned up")

    async def leaver(state: MessagesState) -> dict[str, Any]:
        asyncio.get_running_loop().create_task(linger(), name="leftover")
        await asyncio.sleep(0)  # let it start
        seen.loops.append(asyncio.get_running_loop())
        return answer()

    async def looker(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        seen.notes.append(sorted(t.get_name() for t in asyncio.all_tasks()))
        return answer()

    assert run_node(runtime, leaver).status is SubagentStatus.COMPLETED
    assert run_node(runtime, looker).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1]
    assert events == ["leftover cleaned up"]
    assert "leftover" not in seen.notes[0]


def test_timers_of_a_run_never_fire_in_the_next(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    fired: list[str] = []
    seen = LoopSeen()

    async def scheduler(state: MessagesState) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seen.loops.append(loop)
        loop.call_later(0.1, fired.append, "timer of the first run")
        return answer()

    async def sleeper(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.4)
        return answer()

    assert run_node(runtime, scheduler).status is SubagentStatus.COMPLETED
    assert run_node(runtime, sleeper).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1]
    assert fired == []


def test_async_generators_left_open_are_closed_and_the_loop_still_serves_new_ones(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    events: list[str] = []
    kept: list[AsyncIterator[int]] = []  # keeps the generator from being collected
    seen = LoopSeen()

    async def numbers(tag: str) -> AsyncIterator[int]:
        try:
            for n in range(3):
                yield n
                await asyncio.sleep(0)
        finally:
            events.append(f"{tag} closed")

    async def opener(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        gen = numbers("first")
        kept.append(gen)
        assert await gen.__anext__() == 0  # left suspended, never closed
        return answer()

    async def iterator(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        seen.notes.append([n async for n in numbers("second")])
        return answer()

    assert run_node(runtime, opener).status is SubagentStatus.COMPLETED
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "scheduled after loop.shutdown_asyncgens()"
        assert run_node(runtime, iterator).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1]
    assert events == ["first closed", "second closed"]
    assert seen.notes == [[0, 1, 2]]


def test_loop_settings_a_run_changes_are_reset_for_the_next(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()

    async def tinkerer(state: MessagesState) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seen.loops.append(loop)
        seen.notes.append((loop.get_debug(), loop.slow_callback_duration))
        loop.set_exception_handler(lambda lp, ctx: None)
        loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))
        loop.set_debug(not loop.get_debug())
        loop.slow_callback_duration = 42.0
        return answer()

    async def inspector(state: MessagesState) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seen.loops.append(loop)
        seen.notes.append(
            (
                loop.get_exception_handler(),
                loop.get_task_factory(),
                loop.get_debug(),
                loop.slow_callback_duration,
            )
        )
        return answer()

    assert run_node(runtime, tinkerer).status is SubagentStatus.COMPLETED
    assert run_node(runtime, inspector).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is seen.loops[1]
    debug, slow = seen.notes[0]
    assert seen.notes[1] == (None, None, debug, slow)


def test_a_loop_whose_sync_calls_were_abandoned_is_replaced(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()
    in_sync_call = threading.Event()
    late_results: list[str] = []

    def slow_sync() -> str:
        in_sync_call.set()
        time.sleep(1.0)
        late_results.append("finished")
        return "late"

    async def blocker(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, slow_sync)
        return answer()

    graph = graph_of(blocker)
    executor = SubagentExecutor(
        SubagentConfig(name="blocker", graph_factory=lambda: graph), runtime=runtime
    )
    holder = executor.start("block")
    assert in_sync_call.wait(SETTLE)
    runtime.request_cancel(holder.task_id, "stop during a sync call")
    assert holder.wait(SETTLE) and holder.status is SubagentStatus.CANCELLED
    assert run_node(runtime, seen.node).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is not seen.loops[1]
    assert seen.loops[0].is_closed()
    assert runtime.stats()["worker_loops"] == 2
    deadline = time.monotonic() + SETTLE
    while not late_results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert late_results == ["finished"]  # it ran on, abandoned, and touched nothing


def test_a_loop_left_with_registered_io_is_replaced(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()
    left, right = socket.socketpair()
    try:

        async def watcher(state: MessagesState) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            seen.loops.append(loop)
            loop.add_reader(left.fileno(), lambda: None)  # never removed
            return answer()

        assert run_node(runtime, watcher).status is SubagentStatus.COMPLETED
        assert run_node(runtime, seen.node).status is SubagentStatus.COMPLETED
        assert seen.loops[0] is not seen.loops[1]
        assert seen.loops[0].is_closed()
    finally:
        left.close()
        right.close()


def test_a_loop_stopped_by_its_run_is_replaced_and_the_next_run_works(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()

    async def stopper(state: MessagesState) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seen.loops.append(loop)
        loop.stop()
        await asyncio.sleep(1)
        return answer()

    broken = run_node(runtime, stopper)
    assert broken.status is SubagentStatus.FAILED
    assert "driver crashed" in (broken.error or "")
    assert run_node(runtime, seen.node).status is SubagentStatus.COMPLETED
    assert seen.loops[0] is not seen.loops[1]


def test_get_event_loop_on_the_worker_is_the_runs_loop(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = one_worker(make_runtime)
    seen = LoopSeen()

    async def replacer(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        other = asyncio.new_event_loop()
        asyncio.set_event_loop(other)  # the run swaps the thread's current loop
        other.close()
        return answer()

    async def asker(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        # What a library calling get_event_loop() from plain code on this thread gets.
        seen.notes.append(asyncio.get_event_loop_policy().get_event_loop())
        return answer()

    assert run_node(runtime, replacer).status is SubagentStatus.COMPLETED
    assert run_node(runtime, asker).status is SubagentStatus.COMPLETED
    assert seen.notes == [seen.loops[1]]


def test_shutdown_closes_every_worker_loop(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=3)
    seen = LoopSeen()
    barrier = threading.Barrier(3)

    async def meet(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait, SETTLE)
        return answer()

    graph = graph_of(meet)
    executor = SubagentExecutor(
        SubagentConfig(name="meet", graph_factory=lambda: graph), runtime=runtime
    )
    holders = [executor.start(f"meet {i}") for i in range(3)]
    for holder in holders:
        assert holder.wait(SETTLE) and holder.status is SubagentStatus.COMPLETED, holder.error
    assert len({id(loop) for loop in seen.loops}) == 3
    assert not any(loop.is_closed() for loop in seen.loops)
    assert runtime.shutdown(wait=True, timeout=30)
    assert all(loop.is_closed() for loop in seen.loops)


@pytest.fixture(scope="module")
def provider_server() -> Iterator[ProviderServer]:
    with ProviderServer() as srv:
        yield srv


def test_a_client_cached_across_runs_fails_clearly_when_runs_overlap(
    provider_server: ProviderServer, make_runtime: Callable[..., SubagentRuntime]
) -> None:
    """The trade of reused loops (docs/performance.md): a process-wide cached
    client (no binder) works on runs that land on the worker whose loop made
    it, and fails with the clear ModelBindingError on runs on other workers'
    loops, which runs that overlap always reach. (A fresh loop per run fails on
    every later run: tests/test_model_binders.py.)"""
    runtime = make_runtime(max_workers=5)
    shared = ToyChatModel(base_url=provider_server.base_url)
    executor = SubagentExecutor(SubagentConfig(name="toy", model=shared), runtime=runtime)
    first = executor.execute("first", timeout=30)
    assert first.status is SubagentStatus.COMPLETED, first.error  # the client is made here
    failed = []
    for _ in range(5):
        at_once = [executor.start(f"p{i}") for i in range(5)]
        for holder in at_once:
            assert holder.wait(30)
        failed += [h for h in at_once if h.status is SubagentStatus.FAILED]
        if failed:
            break
    assert failed, "overlapping runs on other loops should hit the cached client"
    for holder in failed:
        assert (holder.error or "").startswith(
            "ModelBindingError: ToyChatModel made a call with an HTTP client bound to another "
            "event loop"
        ), holder.error


def test_a_busy_worker_loop_still_sees_io_within_a_bounded_number_of_iterations(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """Worker loops skip polls while callbacks are ready (``LazySelector``), at
    most ``SKIPPED_POLLS_MAX`` in a row: a loop kept busy forever by a spinning
    task still sees data arrive on a socket, within a bounded number of
    iterations of the spinner (unbounded skipping would never see it)."""
    runtime = one_worker(make_runtime)
    seen = LoopSeen()
    left, right = socket.socketpair()
    left.setblocking(False)
    try:

        async def reader_next_to_a_spinner(state: MessagesState) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            seen.loops.append(loop)
            spins = 0
            arrived = asyncio.Event()
            spins_at_arrival: list[int] = []

            def readable() -> None:
                spins_at_arrival.append(spins)
                loop.remove_reader(left.fileno())
                arrived.set()

            async def spin() -> None:
                nonlocal spins
                while True:  # always ready: the loop never waits, it only polls
                    spins += 1
                    await asyncio.sleep(0)

            loop.add_reader(left.fileno(), readable)  # registered before the data
            spinner = loop.create_task(spin())
            await asyncio.sleep(0.01)
            spins_at_send: list[int] = []
            loop.call_soon(lambda: spins_at_send.append(spins))
            threading.Thread(target=right.send, args=(b"ping",)).start()
            await asyncio.wait_for(arrived.wait(), SETTLE)
            spinner.cancel()
            seen.notes.append(spins_at_arrival[0] >= spins_at_send[0])
            return answer()

        ran = run_node(runtime, reader_next_to_a_spinner)
        assert ran.status is SubagentStatus.COMPLETED, ran.error
        assert type(seen.loops[0]._selector).__name__ == "LazySelector"  # type: ignore[attr-defined]
        assert seen.notes == [True]  # seen while the spinner kept the loop busy
    finally:
        left.close()
        right.close()


def test_a_sync_call_that_returned_is_never_counted_as_abandoned(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    """A run that ends on the result of a sync call: that call's thread is
    done, even if it has not exited yet, so it is not abandoned and the
    loop is kept (``_threads.py`` lets go of it before handing the result)."""
    runtime = one_worker(make_runtime)
    seen = LoopSeen()

    async def sync_then_end(state: MessagesState) -> dict[str, Any]:
        seen.loops.append(asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2, 3])
        return answer()

    for _ in range(30):
        assert run_node(runtime, sync_then_end).status is SubagentStatus.COMPLETED
    stats = runtime.stats()
    assert stats["abandoned_threads_total"] == 0
    assert stats["worker_loops"] == 1
    assert len({id(loop) for loop in seen.loops}) == 1


def test_the_sync_call_thread_is_not_live_once_its_result_can_be_seen() -> None:
    from subagent_exec._threads import AbandoningExecutor

    executor = AbandoningExecutor("probe")
    live_when_done: list[int] = []
    go = threading.Event()

    def call() -> int:
        go.wait(SETTLE)
        return 3

    future = executor.submit(call)
    # Done-callbacks run in the thread that hands the result over, at once.
    future.add_done_callback(lambda f: live_when_done.append(len(executor.live_threads())))
    go.set()
    assert future.result(SETTLE) == 3
    deadline = time.monotonic() + SETTLE
    while not live_when_done and time.monotonic() < deadline:
        time.sleep(0.001)
    assert live_when_done == [0]
