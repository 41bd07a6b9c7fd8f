"""Stopping delegated work: a cancelled lead agent run, a tool call cut off by
a middleware, a host stopping a deep tree, the spawn-while-stopping race, and
nested delegation in a saturated pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from subagent_exec import SubagentConfig, SubagentRuntime, SubagentStatus, make_task_tool
from subagent_exec.testing import ScriptedChatModel, tool_call, tool_calls

from .helpers import SETTLE, wait_until
from .task_tool_helpers import (
    Recorder,
    custom_events,
    delegate,
    final_text,
    hold_tool,
    lead_agent,
    stream_lead,
    task_call,
    tool_messages,
)


def holder_config(recorder: Recorder, **kwargs: Any) -> tuple[SubagentConfig, Any]:
    """A sub-agent that calls ``hold`` (long, with a recorded cleanup) and answers."""
    hold = hold_tool(recorder)
    model = ScriptedChatModel(default="held", script={"job": [tool_call("hold", {"label": "c"})]})
    return SubagentConfig(name="worker", model=model, tools=["hold"], **kwargs), hold


# -- the lead agent's run is cancelled ---------------------------------------------------


def test_cancelled_lead_run_cancels_the_child_and_waits_for_its_cleanup(
    runtime: SubagentRuntime,
) -> None:
    recorder = Recorder()
    config, hold = holder_config(recorder)
    events: list[dict[str, Any]] = []
    task = make_task_tool([config], tools=[hold], runtime=runtime, on_event=events.append)
    agent = lead_agent([delegate(task_call("worker", "the job")), "never reached"], task)

    async def host() -> None:
        run = asyncio.create_task(agent.ainvoke({"messages": [("user", "go")]}))
        assert await recorder.await_for("hold:c")
        run.cancel()  # e.g. the web request that started it went away
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(host())

    # By the time the cancel reached the host, the child had unwound.
    [child] = runtime.list_tasks()
    assert child.status is SubagentStatus.CANCELLED
    assert recorder.seen("cleanup:c")
    assert "tool call" in (child.cancel_reason or "")
    assert "cancelled" in (child.cancel_reason or "")
    kinds = [e["type"] for e in events]
    assert kinds == ["task_started", "task_running", "task_cancelled"]
    assert events[-1]["status"] == "cancelled" and events[-1]["stopping"] is False
    assert events[-1]["task_id"] == child.task_id


def test_tool_call_cut_off_by_a_middleware_streams_task_cancelled(
    runtime: SubagentRuntime,
) -> None:
    """A ``wrap_tool_call`` time limit cancels just this tool call; the lead's
    stream is still open, so the terminal event shows up in it."""

    class ToolTimeLimit(AgentMiddleware):  # type: ignore[type-arg]
        async def awrap_tool_call(
            self,
            request: ToolCallRequest,
            handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
        ) -> ToolMessage | Command[Any]:
            try:
                return await asyncio.wait_for(handler(request), 0.3)
            except TimeoutError:
                return ToolMessage(
                    "took too long", tool_call_id=request.tool_call["id"], status="error"
                )

    recorder = Recorder()
    config, hold = holder_config(recorder)
    task = make_task_tool([config], tools=[hold], runtime=runtime)
    lead_model = ScriptedChatModel(
        script={"go": [delegate(task_call("worker", "the job")), "lead carried on"]}
    )
    agent = create_agent(lead_model, tools=[task], middleware=[ToolTimeLimit()])

    chunks = asyncio.run(stream_lead(agent, "go"))

    kinds = [e["type"] for e in custom_events(chunks)]
    assert kinds == ["task_started", "task_running", "task_cancelled"]
    [child] = runtime.list_tasks()
    assert child.status is SubagentStatus.CANCELLED and recorder.seen("cleanup:c")
    last = chunks[-1][2]
    assert last["model"]["messages"][-1].text == "lead carried on"


# -- a host stops a deep tree -------------------------------------------------------------


def tree_configs(recorder: Recorder) -> tuple[list[SubagentConfig], Any]:
    """One sub-agent type that may delegate: level 1 -> level 2 -> level 3,
    each level also holding a long-running tool with a recorded cleanup."""
    hold = hold_tool(recorder)
    model = ScriptedChatModel(
        script={
            "level 1": [tool_calls(("hold", {"label": "L1"}), task_call("node", "level 2 work"))],
            "level 2": [tool_calls(("hold", {"label": "L2"}), task_call("node", "level 3 work"))],
            "level 3": [tool_call("hold", {"label": "L3"})],
        }
    )
    node = SubagentConfig(
        name="node", description="works and delegates", model=model, disallowed_tools=()
    )
    return [node], hold


def _by_level(runtime: SubagentRuntime) -> dict[int, Any]:
    return {h.depth: h for h in runtime.list_tasks()}


def test_host_stop_of_the_root_stops_every_descendant_after_its_cleanup(
    runtime: SubagentRuntime,
) -> None:
    recorder = Recorder()
    configs, hold = tree_configs(recorder)
    task = make_task_tool(configs, tools=[hold], runtime=runtime)
    agent = lead_agent([delegate(task_call("node", "level 1 work")), "lead carried on"], task)

    def host() -> None:
        assert recorder.wait_for("hold:L1", "hold:L2", "hold:L3")
        root = next(h for h in runtime.list_tasks() if h.parent_id is None)
        runtime.request_cancel(root.task_id, "operator stop")

    stopper = threading.Thread(target=host, name="host")
    stopper.start()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    stopper.join(SETTLE)

    # When the lead agent got its answer, the whole tree had already unwound.
    levels = _by_level(runtime)
    assert sorted(levels) == [1, 2, 3]
    for depth, holder in levels.items():
        assert holder.status is SubagentStatus.CANCELLED, (depth, holder)
        assert recorder.seen(f"cleanup:L{depth}")
    assert levels[1].cancel_reason == "operator stop"
    assert levels[2].parent_id == levels[1].task_id and levels[3].parent_id == levels[2].task_id
    assert "ancestor" in (levels[3].cancel_reason or "")
    [message] = tool_messages(result)
    assert message.artifact["status"] == "cancelled" and "operator stop" in message.text
    assert final_text(result) == "lead carried on"


class StopsRootOnThirdLevel(SubagentRuntime):
    """Lands a host's stop of the root exactly while a level-3 child is being
    started (between the tool deciding to start it and its registration)."""

    def submit(self, **kwargs: Any) -> Any:
        if "level 3" in kwargs["task"]:
            root = next(h for h in self.list_tasks() if h.parent_id is None)
            self.request_cancel(root.task_id, "stop during spawn")
        return super().submit(**kwargs)


def test_a_grandchild_started_while_its_ancestor_is_stopped_never_runs() -> None:
    recorder = Recorder()
    configs, hold = tree_configs(recorder)
    model = configs[0].model
    with StopsRootOnThirdLevel(max_workers=4, cleanup_timeout_seconds=2.0) as runtime:
        task = make_task_tool(configs, tools=[hold], runtime=runtime)
        agent = lead_agent([delegate(task_call("node", "level 1 work")), "lead carried on"], task)
        result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

        levels = _by_level(runtime)
        assert sorted(levels) == [1, 2, 3]
        grandchild = levels[3]
        assert grandchild.status is SubagentStatus.CANCELLED
        assert grandchild.started_at is None  # never became RUNNING
        assert "already stopped" in (grandchild.cancel_reason or "")
        assert isinstance(model, ScriptedChatModel)
        assert not any("level 3" in (c.task or "") for c in model.calls)
        assert not recorder.seen("hold:L3")
        assert all(h.status is SubagentStatus.CANCELLED for h in levels.values())
        assert recorder.seen("cleanup:L1") and recorder.seen("cleanup:L2")
        assert final_text(result) == "lead carried on"


# -- nesting in a saturated pool ---------------------------------------------------------


def test_nested_delegation_with_every_worker_held_by_a_waiting_parent_completes(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2)
    parents = ScriptedChatModel(
        script={
            "parent": [
                lambda msgs: delegate(
                    task_call("child", f"child one of {msgs[-1].text}"),
                    task_call("child", f"child two of {msgs[-1].text}"),
                ),
                "parent done",
            ]
        }
    )
    children = ScriptedChatModel(default="child done", latency=0.2)
    configs = [
        SubagentConfig(name="parent", model=parents, disallowed_tools=()),
        SubagentConfig(name="child", model=children),
    ]
    task = make_task_tool(configs, runtime=runtime)
    agent = lead_agent(
        [delegate(task_call("parent", "parent P1"), task_call("parent", "parent P2")), "all done"],
        task,
    )

    async def run_with_limit() -> dict[str, Any]:
        # A deadlock would hang forever; fail instead (the cancel stops the tree).
        result: dict[str, Any] = await asyncio.wait_for(
            agent.ainvoke({"messages": [("user", "go")]}), 20.0
        )
        return result

    result = asyncio.run(run_with_limit())

    assert final_text(result) == "all done"
    tasks = runtime.list_tasks()
    assert len(tasks) == 6
    assert all(t.status is SubagentStatus.COMPLETED for t in tasks), tasks
    assert sorted(t.depth for t in tasks) == [1, 1, 2, 2, 2, 2]
    # Slots go back once each worker thread has closed its loop (just after
    # the terminal status): all of them, none lost in the lending.
    assert wait_until(lambda: runtime.stats()["free_slots"] == 2), runtime.stats()
