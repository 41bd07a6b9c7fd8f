"""The ``task`` tool in real ``create_agent`` lead agents: parallel delegation,
progress events, every terminal path, bad inputs, middleware, sync graphs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool

from subagent_exec import (
    SubagentConfig,
    SubagentMiddleware,
    SubagentRuntime,
    SubagentStatus,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

from .helpers import SETTLE, terminal
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

TERMINAL_KINDS = {"task_completed", "task_failed", "task_timed_out", "task_cancelled"}


def worker(model: ScriptedChatModel, **kwargs: Any) -> SubagentConfig:
    return SubagentConfig(
        name="worker", description="does one piece of work", model=model, **kwargs
    )


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    await asyncio.sleep(0.01)
    return f"facts about {query}"


# -- parallelism ------------------------------------------------------------------------


def test_three_task_calls_in_one_message_run_at_once(runtime: SubagentRuntime) -> None:
    child_model = ScriptedChatModel(default="piece done", latency=0.5)
    task = make_task_tool([worker(child_model)], runtime=runtime)
    agent = lead_agent(
        [
            delegate(
                task_call("worker", "part A"),
                task_call("worker", "part B"),
                task_call("worker", "part C"),
            ),
            "all three done",
        ],
        task,
    )

    started = time.monotonic()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "split it")]}))
    elapsed = time.monotonic() - started

    assert final_text(result) == "all three done"
    assert [m.text for m in tool_messages(result)] == ["piece done"] * 3
    calls = child_model.calls
    assert len(calls) == 3
    # Overlap: every child had started before the first one could finish (each
    # takes 0.5 s), which run one after the other they could not. (A bound on
    # the elapsed time said the same and failed on a loaded machine at 1.36 s.)
    assert max(c.monotonic for c in calls) - min(c.monotonic for c in calls) < 0.4
    assert elapsed >= 0.5


# -- progress events --------------------------------------------------------------------


def test_progress_events_arrive_live_and_in_order_per_task(runtime: SubagentRuntime) -> None:
    child_model = ScriptedChatModel(
        script={
            "alpha": [tool_call("lookup", {"query": "alpha"}), "alpha answer"],
            "beta": [tool_call("lookup", {"query": "beta"}), "beta answer"],
        },
        latency=0.15,
    )
    task = make_task_tool([worker(child_model, tools=["lookup"])], tools=[lookup], runtime=runtime)
    agent = lead_agent(
        [
            delegate(task_call("worker", "alpha", "first"), task_call("worker", "beta", "second")),
            "done",
        ],
        task,
    )

    chunks = asyncio.run(stream_lead(agent, "two things"))
    events = custom_events(chunks)

    delegation = next(c for _, mode, c in chunks if mode == "updates" and "model" in c)
    call_ids = [tc["id"] for tc in delegation["model"]["messages"][-1].tool_calls]
    by_call = {cid: [e for e in events if e["tool_call_id"] == cid] for cid in call_ids}
    assert sum(len(v) for v in by_call.values()) == len(events)  # nothing unattributed
    for seq in by_call.values():
        assert [e["type"] for e in seq] == [
            "task_started",
            "task_running",
            "task_running",
            "task_completed",
        ], seq
        task_id = seq[0]["task_id"]
        for event in seq:
            assert event["task_id"] == task_id
            assert event["subagent_type"] == "worker"
            assert event["parent_id"] is None  # started by the top-level lead agent
        first, second = (e["message"] for e in seq[1:3])
        assert first["tool_calls"][0]["name"] == "lookup"
        assert second["text"].endswith("answer")
        assert seq[-1]["status"] == "completed" and seq[-1]["result"] == second["text"]
        holder = runtime.get(task_id)
        assert holder is not None and holder.status is SubagentStatus.COMPLETED
        # Live: the first AI message was streamed before the child had finished.
        received = next(t for t, mode, c in chunks if mode == "custom" and c is seq[1])
        assert holder.started_at is not None and holder.completed_at is not None
        assert received < _monotonic_of(holder.completed_at) - 0.05
    # Each task's terminal event comes before the ToolMessage that reports it.
    for cid, seq in by_call.items():
        done_at = next(i for i, (_, _, c) in enumerate(chunks) if c is seq[-1])
        message_at = next(
            i
            for i, (_, mode, c) in enumerate(chunks)
            if mode == "updates"
            and "tools" in c
            and any(m.tool_call_id == cid for m in c["tools"]["messages"])
        )
        assert done_at < message_at


def _monotonic_of(moment: Any) -> float:
    """A wall-clock datetime converted to this process's monotonic clock."""
    return time.monotonic() - (time.time() - moment.timestamp())


# -- every terminal path ----------------------------------------------------------------


def _one_delegation(
    runtime: SubagentRuntime, config: SubagentConfig, **tool_kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    task = make_task_tool([config], runtime=runtime, on_event=events.append, **tool_kwargs)
    agent = lead_agent([delegate(task_call(config.name, "do the thing")), "lead carried on"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert final_text(result) == "lead carried on"  # the lead agent always continues
    return result, events


def test_completed_child_answer_is_the_tool_message(runtime: SubagentRuntime) -> None:
    result, events = _one_delegation(runtime, worker(ScriptedChatModel(default="the answer")))
    [message] = tool_messages(result)
    assert message.text == "the answer"
    assert message.status == "success"
    facts = message.artifact
    assert facts["status"] == "completed" and facts["result"] == "the answer"
    assert facts["subagent_type"] == "worker" and facts["tool_call_id"] == message.tool_call_id
    assert facts["started_at"] and facts["completed_at"] and facts["duration_seconds"] >= 0
    assert runtime.get(facts["task_id"]) is not None
    assert [e["type"] for e in events] == ["task_started", "task_running", "task_completed"]


def test_failed_child_becomes_a_tool_message_and_siblings_are_not_cancelled(
    runtime: SubagentRuntime,
) -> None:
    def broken(messages: list[BaseMessage]) -> str:
        raise RuntimeError("model backend exploded")

    child_model = ScriptedChatModel(
        script={"broken": [broken], "slow": ["slow answer"]}, latency_by_key={"slow": 0.3}
    )
    events: list[dict[str, Any]] = []
    task = make_task_tool([worker(child_model)], runtime=runtime, on_event=events.append)
    agent = lead_agent(
        [
            delegate(task_call("worker", "broken job"), task_call("worker", "slow job")),
            "lead carried on",
        ],
        task,
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    failed, sibling = tool_messages(result)
    assert failed.status == "error"
    assert "failed: RuntimeError: model backend exploded" in failed.text
    assert failed.artifact["status"] == "failed"
    assert failed.artifact["error"] == "RuntimeError: model backend exploded"
    # The sibling was not cancelled by its neighbour's failure.
    assert sibling.text == "slow answer" and sibling.artifact["status"] == "completed"
    kinds = {e["task_id"]: e["type"] for e in events if e["type"] in TERMINAL_KINDS}
    assert sorted(kinds.values()) == ["task_completed", "task_failed"]
    assert final_text(result) == "lead carried on"


def test_max_turns_failure_reports_the_partial_answer(runtime: SubagentRuntime) -> None:
    looping = ScriptedChatModel(
        default="",
        script={
            "thing": [
                AIMessage(
                    content="halfway there",
                    tool_calls=[
                        {"name": "lookup", "args": {"query": "x"}, "id": None, "type": "tool_call"}
                    ],
                )
            ]
        },
    )
    result, events = _one_delegation(
        runtime, worker(looping, tools=["lookup"], max_turns=2), tools=[lookup]
    )
    [message] = tool_messages(result)
    assert message.status == "error"
    assert "max_turns=2" in message.text
    assert "Its last message before it stopped:\nhalfway there" in message.text
    assert message.artifact["stop_reason"] == "max_turns"
    assert events[-1]["type"] == "task_failed"


def test_timed_out_child_becomes_a_tool_message(runtime: SubagentRuntime) -> None:
    slow = ScriptedChatModel(default="too late", latency=10.0)
    result, events = _one_delegation(runtime, worker(slow, timeout_seconds=0.3))
    [message] = tool_messages(result)
    assert message.status == "error"
    assert "timed out" in message.text and "timeout_seconds=0.3" in message.text
    assert message.artifact["status"] == "timed_out"
    assert [e["type"] for e in events] == ["task_started", "task_timed_out"]
    assert events[-1]["error"].startswith("TimeoutError")


def test_child_stopped_by_the_host_becomes_a_tool_message(runtime: SubagentRuntime) -> None:
    recorder = Recorder()
    hold = hold_tool(recorder)
    child = ScriptedChatModel(
        default="unused", script={"thing": [tool_call("hold", {"label": "c"})]}
    )
    events: list[dict[str, Any]] = []
    task = make_task_tool(
        [worker(child, tools=["hold"])], tools=[hold], runtime=runtime, on_event=events.append
    )
    agent = lead_agent([delegate(task_call("worker", "do the thing")), "lead carried on"], task)

    def host() -> None:
        assert recorder.wait_for("hold:c")
        runtime.request_cancel(events[0]["task_id"], "the user pressed stop")

    stopper = threading.Thread(target=host)
    stopper.start()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    stopper.join(SETTLE)

    [message] = tool_messages(result)
    assert message.status == "error"
    assert "was cancelled: the user pressed stop" in message.text
    assert message.artifact["status"] == "cancelled"
    assert recorder.seen("cleanup:c")
    assert [e["type"] for e in events] == ["task_started", "task_running", "task_cancelled"]
    assert events[-1]["cancel_reason"] == "the user pressed stop"
    assert final_text(result) == "lead carried on"


# -- bad inputs -----------------------------------------------------------------------------


def _refused(
    runtime: SubagentRuntime,
    call: tuple[str, dict[str, Any]],
    configs: list[SubagentConfig] | None = None,
) -> tuple[ToolMessage, list[Any]]:
    events: list[dict[str, Any]] = []
    configs = configs or [
        SubagentConfig(
            name="researcher", description="finds facts", model=ScriptedChatModel(default="r")
        ),
        SubagentConfig(
            name="writer", description="writes text", model=ScriptedChatModel(default="w")
        ),
    ]
    task = make_task_tool(configs, runtime=runtime, on_event=events.append)
    agent = lead_agent([delegate(call), "lead carried on"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert final_text(result) == "lead carried on"
    [message] = tool_messages(result)
    assert message.status == "error"
    return message, events


def test_unknown_subagent_type_names_the_allowed_ones(runtime: SubagentRuntime) -> None:
    message, events = _refused(runtime, task_call("poet", "write a poem"))
    assert message.text == (
        "Error: unknown subagent_type 'poet'; available sub-agents: researcher, writer"
    )
    assert message.artifact["status"] == "rejected" and message.artifact["task_id"] is None
    assert events == [] and runtime.list_tasks() == []


def test_empty_prompt_is_refused(runtime: SubagentRuntime) -> None:
    message, events = _refused(runtime, task_call("writer", "   "))
    assert "prompt is empty" in message.text and "complete task" in message.text
    assert events == [] and runtime.list_tasks() == []


def test_missing_arguments_are_refused_with_the_expected_ones(runtime: SubagentRuntime) -> None:
    message, _ = _refused(runtime, ("task", {"prompt": "no type given"}))
    assert "subagent_type" in message.text and "invalid arguments" in message.text
    assert runtime.list_tasks() == []


def test_nesting_beyond_max_depth_is_refused_to_the_sub_agent(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, max_depth=1)
    nester = ScriptedChatModel(
        script={"nest": [delegate(task_call("nester", "nest again")), "answered myself"]}
    )
    config = SubagentConfig(name="nester", model=nester, disallowed_tools=())
    task = make_task_tool([config], runtime=runtime)
    agent = lead_agent([delegate(task_call("nester", "nest please")), "lead done"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    [message] = tool_messages(result)
    assert message.text == "answered myself"  # the sub-agent carried on after the refusal
    [child] = runtime.list_tasks()
    assert child.depth == 1 and child.children == []
    refusal = next(c for c in nester.calls if c.turn == 1).messages[-1]
    assert refusal[0] == "tool"
    assert "depth 2" in refusal[1] and "max_depth=1" in refusal[1]


def test_full_runtime_is_refused_with_its_limit(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, max_pending=0)
    slow = SubagentConfig(name="researcher", model=ScriptedChatModel(default="r", latency=0.3))
    # One worker and no waiting room: of two parallel calls, one runs and
    # the other is refused.
    task = make_task_tool([slow], runtime=runtime)
    agent = lead_agent(
        [delegate(task_call("researcher", "one"), task_call("researcher", "two")), "lead done"],
        task,
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    statuses = sorted(m.artifact["status"] for m in tool_messages(result))
    assert statuses == ["completed", "rejected"]
    refused = next(m for m in tool_messages(result) if m.artifact["status"] == "rejected")
    assert "could not start sub-agent 'researcher'" in refused.text
    assert "max_pending=0" in refused.text
    assert final_text(result) == "lead done"


# -- construction -------------------------------------------------------------------------


def test_tool_description_and_schema_show_the_sub_agents() -> None:
    configs = [
        SubagentConfig(name="researcher", description="finds facts", model=ScriptedChatModel()),
        SubagentConfig(name="writer", description="writes text", model=ScriptedChatModel()),
    ]
    task = make_task_tool(configs)
    assert task.name == "task"
    assert "- researcher: finds facts\n- writer: writes text" in task.description
    schema = task.tool_call_schema.model_json_schema()  # what the model sees
    assert set(schema["properties"]) == {"description", "prompt", "subagent_type"}


@pytest.mark.parametrize(
    ("subagents", "kwargs", "expected", "error"),
    [
        ([], {}, "at least one SubagentConfig", ValueError),
        (["researcher"], {}, "must be SubagentConfig", TypeError),
        (
            [SubagentConfig(name="a", model="inherit")] * 2,
            {"parent_model": "x:y"},
            "unique",
            ValueError,
        ),
        (
            [SubagentConfig(name="a", model="inherit")],
            {"tools": [lookup], "name": "lookup"},
            "already holds a tool named 'lookup'",
            ValueError,
        ),
        ([SubagentConfig(name="a", model="inherit")], {"name": " "}, "name must be", ValueError),
    ],
)
def test_bad_construction_is_refused(
    subagents: Any, kwargs: dict[str, Any], expected: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=expected):
        make_task_tool(subagents, **kwargs)


def test_only_sub_agents_that_allow_it_get_the_task_tool() -> None:
    model = ScriptedChatModel()
    task = make_task_tool(
        [
            SubagentConfig(name="leaf", model=model),
            SubagentConfig(name="branch", model=model, disallowed_tools=()),
        ],
        tools=[lookup],
        name="delegate",
    )
    assert [t.name for t in task.executors["leaf"].tools] == ["lookup"]
    assert [t.name for t in task.executors["branch"].tools] == ["lookup", "delegate"]


# -- middleware and sync graphs -------------------------------------------------------------


def test_middleware_adds_the_tool_and_a_system_prompt_section(runtime: SubagentRuntime) -> None:
    lead_model = ScriptedChatModel(
        script={"go": [delegate(task_call("worker", "the job")), "lead done"]}
    )
    middleware = SubagentMiddleware(
        [worker(ScriptedChatModel(default="job done"))], runtime=runtime
    )
    agent = create_agent(lead_model, middleware=[middleware], system_prompt="You lead.")
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    assert [m.text for m in tool_messages(result)] == ["job done"]
    system = lead_model.calls[0].messages[0]
    assert system[0] == "system"
    assert system[1].startswith("You lead.") and "Delegating with `task`" in system[1]


def test_sync_graph_delegates_and_streams_progress(runtime: SubagentRuntime) -> None:
    child_model = ScriptedChatModel(default="sync answer", latency=0.3)
    task = make_task_tool([worker(child_model)], runtime=runtime)
    agent = lead_agent(
        [delegate(task_call("worker", "one"), task_call("worker", "two")), "lead done"], task
    )
    started = time.monotonic()
    chunks = list(agent.stream({"messages": [("user", "go")]}, stream_mode=["updates", "custom"]))
    elapsed = time.monotonic() - started

    events = [c for mode, c in chunks if mode == "custom"]
    for task_id in {e["task_id"] for e in events}:
        kinds = [e["type"] for e in events if e["task_id"] == task_id]
        assert kinds == ["task_started", "task_running", "task_completed"]
        assert terminal(runtime.get(task_id)).status is SubagentStatus.COMPLETED
    assert len(events) == 6
    assert elapsed < 0.55 + 0.6  # the two children overlapped here too


def test_results_evicted_at_once_still_reach_the_lead_agent(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, retain_max=0)
    events: list[dict[str, Any]] = []
    task = make_task_tool(
        [worker(ScriptedChatModel(default="kept anyway"))], runtime=runtime, on_event=events.append
    )
    agent = lead_agent([delegate(task_call("worker", "do the thing")), "lead done"], task)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    [message] = tool_messages(result)
    assert message.text == "kept anyway" and message.artifact["status"] == "completed"
    assert runtime.list_tasks() == []  # the runtime kept nothing
    assert [e["type"] for e in events] == ["task_started", "task_running", "task_completed"]
