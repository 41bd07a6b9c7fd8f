"""The backend seam and the Ray backend.

The behavioural tests at the top run on both backends (``backend`` fixture):
statuses, streaming of AI messages and events, cancel of running and pending
tasks, deadlines, trees and their cascades, retention, and the ``task`` tool
in a lead agent. Everything a sub-agent runs here is defined at module level
(or as a ``functools.partial`` of it), so it can travel to a Ray worker; the
driver learns that a run is under way from its first AI message, the one
signal that crosses processes.

The Ray-only tests below cover what has no thread equivalent: serialisation
errors at submission, refused nested delegation, a dead actor, an actor whose
loop is blocked (the cleanup timeout), and how Ray gets initialised.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import MessagesState

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
    TaskEvent,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

from .helpers import SETTLE, graph_of, terminal, wait_until
from .task_tool_helpers import delegate, final_text, lead_agent, task_call, tool_messages

# -- what the sub-agents run (module level: importable by a Ray worker) ----------


def answer_graph(text: str = "done", delay: float = 0.0) -> Any:
    async def answer(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"messages": [AIMessage(content=text)]}

    return graph_of(answer)


def working_graph(seconds: float = 30.0, text: str = "slept") -> Any:
    """Says "working" (the driver sees it as an AI message), then awaits ``seconds``."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def work(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"messages": [AIMessage(content=text)]}

    return graph_of(announce, work)


def failing_graph() -> Any:
    async def fail(state: MessagesState) -> dict[str, Any]:
        raise ValueError("boom 42")

    return graph_of(fail)


def dying_graph() -> Any:
    """Announces itself, then kills the process it runs in."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def die(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        os._exit(1)

    return graph_of(announce, die)


def blocking_graph(seconds: float) -> Any:
    """Announces itself, then blocks its event loop with a sync sleep."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def block(state: MessagesState) -> dict[str, Any]:
        time.sleep(seconds)
        return {"messages": [AIMessage(content="blocked")]}

    return graph_of(announce, block)


def stubborn_graph(seconds: float) -> Any:
    """Announces itself, then swallows every cancel for up to ``seconds``."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def refuse(state: MessagesState) -> dict[str, Any]:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                await asyncio.sleep(until - time.monotonic())
            except asyncio.CancelledError:
                continue
        return {"messages": [AIMessage(content="refused")]}

    return graph_of(announce, refuse)


def dies_when_stopped_graph() -> Any:
    """Announces itself; a cancel kills the process it runs in."""

    async def announce(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="working")]}

    async def wait(state: MessagesState) -> dict[str, Any]:
        try:
            await asyncio.sleep(30.0)
        except asyncio.CancelledError:
            os._exit(1)
        return {"messages": [AIMessage(content="never")]}

    return graph_of(announce, wait)


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    return f"facts about {query}"


def runs(runtime: SubagentRuntime, factory: Callable[[], Any], name: str = "worker", **kw: Any):  # type: ignore[no-untyped-def]
    config = SubagentConfig(name=name, graph_factory=factory, **kw)
    return SubagentExecutor(config, runtime=runtime)


def start(
    runtime: SubagentRuntime, factory: Callable[[], Any], task: str = "go", **kw: Any
) -> SubagentResult:
    holder = runtime.get(runs(runtime, factory, **kw).execute_async(task))
    assert holder is not None
    return holder


def working(holder: SubagentResult) -> bool:
    """Whether the run has said "working" (it is RUNNING on its worker)."""
    return wait_until(lambda: any(m["text"] == "working" for m in holder.ai_messages))


@pytest.fixture
def rt(make_backend_runtime: Callable[..., SubagentRuntime]) -> SubagentRuntime:
    return make_backend_runtime(max_workers=4)


# -- statuses and streaming (both backends) ----------


def test_completion_streams_ai_messages_and_events_in_order(rt: SubagentRuntime) -> None:
    kinds: list[str] = []
    seen = threading.Event()

    def record(event: TaskEvent) -> None:
        kinds.append(event.kind)
        if event.is_terminal:
            seen.set()

    rt.subscribe(record)
    holder = terminal(start(rt, functools.partial(working_graph, 0.05, "the answer")))
    assert holder.status is SubagentStatus.COMPLETED
    assert holder.result == "the answer"
    assert [m["text"] for m in holder.ai_messages] == ["working", "the answer"]
    assert seen.wait(SETTLE)
    assert kinds == ["created", "started", "ai_message", "ai_message", "completed"]


def test_an_error_in_the_run_fails_with_the_original_type_and_message(rt: SubagentRuntime) -> None:
    holder = terminal(start(rt, failing_graph))
    assert holder.status is SubagentStatus.FAILED
    assert holder.error == "ValueError: boom 42"


def test_max_turns_fails_with_the_partial_answer(rt: SubagentRuntime) -> None:
    looping = functools.partial(
        ScriptedChatModel, default=None, router=_always_look_up, latency=0.0
    )
    config = SubagentConfig(name="looper", model=looping, max_turns=2)
    holder = SubagentExecutor(config, tools=[lookup], runtime=rt).execute("loop", timeout=SETTLE)
    assert holder.status is SubagentStatus.FAILED
    assert holder.stop_reason == "max_turns"
    assert holder.error is not None and holder.error.startswith("MaxTurnsExceeded:")
    assert holder.result == "looking it up"


def _always_look_up(messages: list[Any]) -> AIMessage:
    reply = tool_call("lookup", {"query": "more"})
    reply.content = "looking it up"
    return reply


# -- cancel and deadlines (both backends) ----------


def test_cancel_of_a_running_task_ends_it_quickly(rt: SubagentRuntime) -> None:
    holder = start(rt, functools.partial(working_graph, 30.0))
    assert working(holder)
    began = time.monotonic()
    assert rt.request_cancel(holder.task_id, "host said stop")
    terminal(holder)
    assert time.monotonic() - began < 2.0  # generous: a loaded 2-core machine
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.cancel_reason == "host said stop"
    assert holder.result is None and holder.error is None
    assert wait_until(lambda: rt.stats()["free_slots"] == rt.max_workers)


def test_cancel_of_a_pending_task_never_starts_it(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=1)
    first = start(rt, functools.partial(working_graph, 30.0))
    queued = start(rt, functools.partial(answer_graph, "never"))
    assert working(first)
    assert queued.status is SubagentStatus.PENDING
    assert rt.request_cancel(queued.task_id)
    assert queued.status is SubagentStatus.CANCELLED  # at once, without any worker
    assert queued.started_at is None
    rt.request_cancel(first.task_id)
    terminal(first)
    time.sleep(0.2)  # a wrongly started queued task would show up now
    assert queued.started_at is None and queued.ai_messages == []
    if rt.backend.name == "ray":
        assert rt.stats()["ray_submitted_total"] == 1  # nothing was sent to Ray


def test_deadline_times_out_a_running_task(rt: SubagentRuntime) -> None:
    holder = start(rt, functools.partial(working_graph, 30.0), timeout_seconds=0.5)
    terminal(holder)
    assert holder.status is SubagentStatus.TIMED_OUT
    assert holder.error is not None and holder.error.startswith("TimeoutError:")
    assert holder.duration_seconds is not None and holder.duration_seconds < 3.0


def test_deadline_counts_from_running_not_from_submission(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=1)
    first = start(rt, functools.partial(working_graph, 0.8))
    second = start(rt, functools.partial(answer_graph, "in time", 0.3), timeout_seconds=1.0)
    terminal(first)
    terminal(second)
    assert second.status is SubagentStatus.COMPLETED  # queued ~0.8 s + ran 0.3 s < 1.0 s


def test_a_cancel_before_the_deadline_wins(rt: SubagentRuntime) -> None:
    holder = start(rt, functools.partial(working_graph, 30.0), timeout_seconds=0.6)
    assert working(holder)
    rt.request_cancel(holder.task_id)
    terminal(holder)
    time.sleep(0.8)  # past the deadline
    assert holder.status is SubagentStatus.CANCELLED


# -- trees (both backends; the tree lives on the driver) ----------


def _tree(rt: SubagentRuntime, fanout: int, timeout_seconds: float = 900.0) -> list[SubagentResult]:
    """A root and two levels of children started from the host with parent_id."""
    long = functools.partial(working_graph, 30.0)
    root = start(rt, long, name="root", timeout_seconds=timeout_seconds)
    nodes = [root]
    level = [root]
    for depth in (2, 3):
        next_level = []
        for parent in level:
            for index in range(fanout):
                task_id = runs(rt, long, name=f"d{depth}").execute_async(
                    f"part {index}", parent_id=parent.task_id
                )
                child = rt.get(task_id)
                assert child is not None and child.depth == depth
                next_level.append(child)
        nodes.extend(next_level)
        level = next_level
    return nodes


def test_cancelling_the_root_stops_every_descendant(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=8)
    nodes = _tree(rt, fanout=2)  # 1 + 2 + 4, all running
    assert all(working(node) for node in nodes)
    root = nodes[0]
    assert rt.request_cancel(root.task_id, "stop the tree")
    for node in nodes:
        terminal(node)
        assert node.status is SubagentStatus.CANCELLED
    assert all(f"ancestor {root.task_id}" in (n.cancel_reason or "") for n in nodes[1:])
    assert wait_until(lambda: rt.stats()["free_slots"] == 8)


def test_a_root_timing_out_cancels_its_subtree(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=8)
    nodes = _tree(rt, fanout=1, timeout_seconds=1.0)
    for node in nodes:
        terminal(node)
    assert nodes[0].status is SubagentStatus.TIMED_OUT
    assert [n.status for n in nodes[1:]] == [SubagentStatus.CANCELLED] * 2
    assert "timed out" in (nodes[2].cancel_reason or "")


def test_a_child_started_under_a_stopped_parent_never_runs(rt: SubagentRuntime) -> None:
    parent = start(rt, functools.partial(working_graph, 30.0))
    rt.request_cancel(parent.task_id)
    child_id = runs(rt, answer_graph).execute_async("late", parent_id=parent.task_id)
    child = terminal(rt.get(child_id))
    assert child.status is SubagentStatus.CANCELLED and child.started_at is None


# -- retention (both backends) ----------


def test_retain_max_keeps_only_the_newest_results(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=2, retain_max=2)
    holders = [terminal(start(rt, functools.partial(answer_graph, f"r{i}"))) for i in range(4)]
    assert [h.result for h in holders] == ["r0", "r1", "r2", "r3"]
    assert [rt.get(h.task_id) is not None for h in holders] == [False, False, True, True]


# -- the task tool in a lead agent (both backends) ----------


def test_task_tool_in_a_lead_agent_streams_progress_and_returns_the_answer(
    rt: SubagentRuntime,
) -> None:
    child_model = functools.partial(ScriptedChatModel, default="the answer", latency=0.2)
    config = SubagentConfig(name="worker", description="does work", model=child_model)
    events: list[dict[str, Any]] = []
    task = make_task_tool([config], runtime=rt, on_event=events.append)
    agent = lead_agent([delegate(task_call("worker", "do it")), "lead done"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert final_text(result) == "lead done"
    [message] = tool_messages(result)
    assert message.text == "the answer"
    assert [e["type"] for e in events] == ["task_started", "task_running", "task_completed"]
    child = rt.get(message.artifact["task_id"])
    assert child is not None and child.status is SubagentStatus.COMPLETED


# -- nested delegation: a sub-agent with the task tool (both backends) ----------


def _planner_reply(messages: list[Any]) -> Any:
    """Delegates one piece to "worker" through the task tool, then reports its answer."""
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    if not answers:
        return tool_call(
            "task", {"description": "a piece", "prompt": "piece", "subagent_type": "worker"}
        )
    return f"planner got: {answers[-1].text}"


def _nested_tool(rt: SubagentRuntime, worker: SubagentConfig, events: list[Any]) -> Any:
    planner = SubagentConfig(
        name="planner",
        description="splits work",
        model=functools.partial(ScriptedChatModel, router=_planner_reply),
        disallowed_tools=(),  # may delegate further
    )
    return make_task_tool([planner, worker], runtime=rt, on_event=events.append)


def test_a_sub_agent_delegates_through_its_task_tool(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=1)  # the child runs on its parent's lent slot
    events: list[dict[str, Any]] = []
    worker = SubagentConfig(
        name="worker", model=functools.partial(ScriptedChatModel, default="piece done")
    )
    task = _nested_tool(rt, worker, events)
    agent = lead_agent([delegate(task_call("planner", "plan it")), "lead done"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    [message] = tool_messages(result)
    assert message.text == "planner got: piece done"
    planner = rt.get(message.artifact["task_id"])
    assert planner is not None and len(planner.children) == 1
    child = rt.get(planner.children[0])
    assert child is not None and child.status is SubagentStatus.COMPLETED
    assert child.parent_id == planner.task_id and child.depth == 2
    assert child.trace_id == planner.trace_id
    by_task = [(e["type"], e["subagent_type"]) for e in events if e["type"] != "task_running"]
    assert ("task_completed", "worker") in by_task and ("task_completed", "planner") in by_task


def test_stopping_a_delegating_sub_agent_stops_its_child(rt: SubagentRuntime) -> None:
    events: list[dict[str, Any]] = []
    slow = SubagentConfig(name="worker", graph_factory=functools.partial(working_graph, 30.0))
    task = _nested_tool(rt, slow, events)
    planner = rt.get(task.executors["planner"].execute_async("plan it"))
    assert planner is not None
    assert wait_until(lambda: len(planner.children) == 1)
    child = rt.get(planner.children[0])
    assert child is not None and working(child)
    assert rt.request_cancel(planner.task_id, "stop the plan")
    terminal(planner)
    terminal(child)
    assert planner.status is SubagentStatus.CANCELLED
    assert child.status is SubagentStatus.CANCELLED
    assert f"ancestor {planner.task_id}" in (child.cancel_reason or "")
    assert wait_until(lambda: rt.stats()["free_slots"] == rt.max_workers)


# -- Ray only ----------


@pytest.fixture
def ray_rt(make_runtime: Callable[..., SubagentRuntime], ray_pool: Any) -> SubagentRuntime:
    from subagent_exec import RayBackend

    return make_runtime(max_workers=4, backend=RayBackend(pool=ray_pool))


def test_ray_refuses_a_tool_it_cannot_send_and_registers_nothing(ray_rt: SubagentRuntime) -> None:
    lock = threading.Lock()

    @tool
    def locked(query: str) -> str:
        """Uses a lock of this process."""
        with lock:
            return query

    model = functools.partial(ScriptedChatModel, default="x")
    config = SubagentConfig(name="holder", model=model)
    ex = SubagentExecutor(config, tools=[locked], runtime=ray_rt)
    with pytest.raises(TypeError, match=r"sub-agent 'holder'.*tool 'locked'.*_thread\.lock"):
        ex.execute_async("go")
    assert ray_rt.list_tasks() == [] and ray_rt.stats()["submitted_total"] == 0


def test_ray_names_a_model_instance_it_cannot_send(ray_rt: SubagentRuntime) -> None:
    held = threading.Lock()  # e.g. a client's connection lock: cannot leave the process

    def reply(messages: list[Any], _held: Any = held) -> str:
        return "x"

    config = SubagentConfig(name="direct", model=ScriptedChatModel(router=reply))
    with pytest.raises(TypeError, match="the config's model could not be serialised"):
        SubagentExecutor(config, runtime=ray_rt).execute_async("go")
    assert ray_rt.list_tasks() == []


def test_a_picklable_model_instance_travels(ray_rt: SubagentRuntime) -> None:
    config = SubagentConfig(name="direct", model=ScriptedChatModel(default="sent as is"))
    holder = SubagentExecutor(config, runtime=ray_rt).execute("go")
    assert holder.status is SubagentStatus.COMPLETED, holder.error
    assert holder.result == "sent as is"


def _remote_task_tool() -> Any:
    from subagent_exec._backends.ray import RemoteTool

    return RemoteTool.standing_in_for(make_task_tool([SubagentConfig(name="w", model="x:y")]))


def test_remote_task_tool_outside_a_run_says_so(ray_pool: Any) -> None:
    call = {"description": "d", "prompt": "p", "subagent_type": "worker"}
    tool = _remote_task_tool()
    for result in (
        tool.invoke(_tool_call(call)),
        asyncio.run(tool.ainvoke(_tool_call(call))),
    ):
        assert result.status == "error"
        assert "only inside a sub-agent run" in result.text


def test_remote_task_tool_sync_call_is_served_through_the_runs_loop(ray_pool: Any) -> None:
    from subagent_exec._backends.ray.delegation import CALL, Channel, current_channel

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def open_channel() -> Channel:
        return Channel(asyncio.Queue())

    async def answer(channel: Channel) -> dict[str, Any]:
        kind, request_id, request = await channel.outbox.get()  # type: ignore[misc]
        assert kind == CALL
        channel.answer(
            request_id,
            {"content": f"did {request['args']['prompt']}", "status": "success", "artifact": None},
        )
        return request["args"]  # type: ignore[no-any-return]

    try:
        channel = asyncio.run_coroutine_threadsafe(open_channel(), loop).result(SETTLE)
        served = asyncio.run_coroutine_threadsafe(answer(channel), loop)
        context = contextvars.Context()
        context.run(current_channel.set, channel)
        call = {"description": "d", "prompt": "the piece", "subagent_type": "worker"}
        result = context.run(_remote_task_tool().invoke, _tool_call(call))
        assert result.text == "did the piece" and result.status == "success"
        assert served.result(SETTLE)["subagent_type"] == "worker"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SETTLE)
        loop.close()


def _tool_call(args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_call", "name": "task", "args": args, "id": "call-1"}


def test_ray_the_real_chat_openai_client_from_a_factory(ray_rt: SubagentRuntime) -> None:
    """A model factory builds ChatOpenAI inside the worker, against a local
    OpenAI-compatible server: runs in a row and at once on the actors' loops,
    then a stop in the middle of a slow HTTP call."""
    from langchain_openai import ChatOpenAI

    from subagent_exec.testing import OpenAICompatServer

    with OpenAICompatServer() as server:
        model = functools.partial(ChatOpenAI, base_url=server.base_url, api_key="k", model="x")
        ex = SubagentExecutor(SubagentConfig(name="oa", model=model), runtime=ray_rt)
        in_a_row = [ex.execute(f"row {i}", timeout=30.0) for i in range(3)]
        at_once = [ray_rt.get(ex.execute_async(f"once {i}")) for i in range(4)]
        for holder in [*in_a_row, *at_once]:
            terminal(holder, timeout=30.0)
            assert holder is not None and holder.status is SubagentStatus.COMPLETED, holder
            assert holder.result == f"echo: {holder.task}"
        assert server.request_count == 7
    with OpenAICompatServer(delay=30.0) as slow:
        model = functools.partial(ChatOpenAI, base_url=slow.base_url, api_key="k", model="x")
        ex = SubagentExecutor(SubagentConfig(name="oa", model=model), runtime=ray_rt)
        holder = ray_rt.get(ex.execute_async("slow"))
        assert holder is not None and wait_until(lambda: slow.request_count == 1, timeout=30.0)
        began = time.monotonic()
        ray_rt.request_cancel(holder.task_id)
        terminal(holder)
        assert time.monotonic() - began < 2.0
        assert holder.status is SubagentStatus.CANCELLED
        # The HTTP call in flight on the worker was interrupted, not left running.
        assert wait_until(lambda: slow.disconnects == 1)


class _RefusingActor:
    """An actor handle whose submissions Ray refuses."""

    def __init__(self) -> None:
        self.run = self

    def options(self, **options: Any) -> _RefusingActor:
        return self

    def remote(self, *args: Any) -> Any:
        raise RuntimeError("Ray is gone")


@pytest.mark.parametrize("broken", ["acquire", "submit"])
def test_ray_a_submission_ray_refuses_fails_the_task_and_frees_the_slot(
    ray_rt: SubagentRuntime, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    pool = ray_rt.backend.pool  # type: ignore[attr-defined]
    real_acquire = pool.acquire

    def acquire() -> Any:
        if broken == "acquire":
            raise RuntimeError("Ray is gone")
        member = real_acquire()
        monkeypatch.setattr(member, "actor", _RefusingActor())  # put back after the test
        return member

    in_flight = pool.stats()["ray_runs_in_flight"]
    monkeypatch.setattr(pool, "acquire", acquire)
    holder = terminal(start(ray_rt, answer_graph))
    assert holder.status is SubagentStatus.FAILED
    assert holder.error is not None and "RuntimeError: Ray is gone" in holder.error
    assert wait_until(lambda: ray_rt.stats()["free_slots"] == ray_rt.max_workers)
    assert pool.stats()["ray_runs_in_flight"] == in_flight


@pytest.fixture(scope="module")
def lone_pool(ray_pool: Any) -> Iterator[Any]:
    """A one-actor pool of its own, for tests that kill or block their actor."""
    from subagent_exec import RayWorkerPool

    pool = RayWorkerPool(actors=1)
    pool.ready(timeout=120.0)
    yield pool
    pool.kill()


def test_ray_a_dead_actor_fails_the_task_clearly_and_is_replaced(
    make_runtime: Callable[..., SubagentRuntime], lone_pool: Any
) -> None:
    from subagent_exec import RayBackend

    rt = make_runtime(max_workers=2, backend=RayBackend(pool=lone_pool))
    holder = start(rt, dying_graph)
    terminal(holder, timeout=30.0)
    assert holder.status is SubagentStatus.FAILED
    assert holder.error is not None and holder.error.startswith("RayActorError: the Ray worker")
    assert rt.stats()["ray_actors_replaced_total"] == 1
    lone_pool.ready(timeout=120.0)
    after = terminal(start(rt, functools.partial(answer_graph, "alive")), timeout=30.0)
    assert after.status is SubagentStatus.COMPLETED and after.result == "alive"


def test_ray_an_actor_dying_after_our_stop_leaves_the_task_cancelled(
    make_runtime: Callable[..., SubagentRuntime], lone_pool: Any
) -> None:
    from subagent_exec import RayBackend

    rt = make_runtime(max_workers=2, backend=RayBackend(pool=lone_pool))
    holder = start(rt, dies_when_stopped_graph)
    assert working(holder)
    rt.request_cancel(holder.task_id, "host said stop")
    terminal(holder, timeout=30.0)
    assert holder.status is SubagentStatus.CANCELLED  # we asked for the stop
    assert holder.error is None and holder.cancel_reason == "host said stop"
    lone_pool.ready(timeout=120.0)  # the replacement actor, for the next tests


def test_ray_a_run_that_cannot_unwind_is_abandoned_after_the_cleanup_timeout(
    make_runtime: Callable[..., SubagentRuntime], lone_pool: Any
) -> None:
    from subagent_exec import RayBackend

    rt = make_runtime(
        max_workers=2, cleanup_timeout_seconds=1.0, backend=RayBackend(pool=lone_pool)
    )
    holder = start(rt, functools.partial(blocking_graph, 2.5))
    assert working(holder)
    time.sleep(0.2)  # inside the blocking sleep
    began = time.monotonic()
    rt.request_cancel(holder.task_id)
    terminal(holder)
    assert 0.8 < time.monotonic() - began < 3.0
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.stop_reason == "cleanup_timeout"
    assert holder.error is not None and holder.error.startswith("CleanupTimeout:")
    assert rt.stats()["ray_abandoned_runs_total"] == 1
    assert wait_until(lambda: rt.stats()["free_slots"] == 2)
    lone_pool.ready(timeout=30.0)  # the actor's loop is free again for the next test


def test_ray_cancel_is_the_second_line_for_a_run_that_swallows_our_stop(
    make_runtime: Callable[..., SubagentRuntime], lone_pool: Any
) -> None:
    from subagent_exec import RayBackend
    from subagent_exec._backends.ray.dispatch import SECOND_LINE_SECONDS

    rt = make_runtime(
        max_workers=2, cleanup_timeout_seconds=8.0, backend=RayBackend(pool=lone_pool)
    )
    holder = start(rt, functools.partial(stubborn_graph, 4.0))
    assert working(holder)
    began = time.monotonic()
    rt.request_cancel(holder.task_id)
    terminal(holder)
    assert SECOND_LINE_SECONDS * 0.8 < time.monotonic() - began < 3.5  # not the 4 s run
    assert holder.status is SubagentStatus.CANCELLED
    assert holder.stop_reason is None and holder.error is None  # not abandoned
    assert rt.stats()["ray_abandoned_runs_total"] == 0


def test_ray_backend_says_how_to_initialise_ray(
    monkeypatch: pytest.MonkeyPatch, ray_pool: Any
) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match=r"Ray is not initialised.*address=.*start_local=True"):
        SubagentRuntime(backend="ray")


@pytest.mark.parametrize(
    ("kwargs", "expected_init"),
    [
        (
            {"address": "ray://head:10001", "init_kwargs": {"namespace": "agents"}},
            {"address": "ray://head:10001", "namespace": "agents"},
        ),
        ({"start_local": True, "num_cpus": 3}, {"num_cpus": 3, "include_dashboard": False}),
    ],
)
def test_ray_backend_connects_or_starts_ray_only_as_asked(
    monkeypatch: pytest.MonkeyPatch,
    ray_pool: Any,
    kwargs: dict[str, Any],
    expected_init: dict[str, Any],
) -> None:
    import ray

    from subagent_exec import RayBackend

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    backend = RayBackend(pool=ray_pool, **kwargs)
    runtime = SubagentRuntime(backend=backend)
    try:
        assert calls == [expected_init]
    finally:
        assert runtime.shutdown(timeout=SETTLE)


def test_ray_backend_with_its_own_pool_kills_it_at_shutdown(ray_pool: Any) -> None:
    from subagent_exec import RayBackend

    backend = RayBackend(actors=1)
    runtime = SubagentRuntime(max_workers=2, backend=backend, name="own-pool")
    holder = terminal(start(runtime, functools.partial(answer_graph, "own")), timeout=60.0)
    assert holder.status is SubagentStatus.COMPLETED and holder.result == "own"
    assert runtime.stats()["ray_actors"] == 1
    assert runtime.shutdown(timeout=30.0)
    assert backend.pool.stats()["ray_actors"] == 0  # killed with the runtime
    assert not any(t.name == "own-pool-ray-driver" for t in threading.enumerate())
    assert ray_pool.stats()["ray_actors"] == 2  # a shared pool is left alone


@pytest.mark.parametrize(
    ("kwargs", "expected", "error"),
    [
        ({"num_cpus": 2}, "num_cpus is only used with start_local=True", ValueError),
        ({"address": "auto", "start_local": True}, "either address", ValueError),
        ({"address": ""}, "RayBackend.address", ValueError),
        ({"start_local": True, "num_cpus": 0}, "num_cpus must be an int >= 1", ValueError),
        ({"pool": "mine"}, "RayBackend.pool must be a RayWorkerPool", TypeError),
    ],
)
def test_ray_backend_bad_arguments_are_named(
    kwargs: dict[str, Any], expected: str, error: type[Exception]
) -> None:
    from subagent_exec import RayBackend

    with pytest.raises(error, match=expected):
        RayBackend(**kwargs)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend must be 'thread', 'ray' or a backend object"):
        SubagentRuntime(backend="dask")
    with pytest.raises(TypeError, match="backend must be 'thread', 'ray' or a backend object"):
        SubagentRuntime(backend=42)  # type: ignore[arg-type]


def test_a_backend_object_serves_one_runtime(make_runtime: Callable[..., SubagentRuntime]) -> None:
    from subagent_exec._backends.thread import ThreadBackend

    shared = ThreadBackend()
    make_runtime(backend=shared)
    with pytest.raises(ValueError, match="serves one SubagentRuntime"):
        make_runtime(backend=shared)
