"""Sub-agent output live in the lead's stream (opt-in ``stream_subagent_output``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent

from subagent_exec import SubagentConfig, SubagentMiddleware, SubagentRuntime, make_task_tool
from subagent_exec.testing import ScriptedChatModel

from .task_tool_helpers import custom_events, delegate, lead_agent, stream_lead, task_call

ANSWERS = {
    "the moon": "The Moon is about 384,400 km away from Earth.",
    "the sun": "The Sun is a G-type main-sequence star.",
}


def researcher() -> tuple[SubagentConfig, ScriptedChatModel]:
    model = ScriptedChatModel(script=ANSWERS, latency=0.01)
    return SubagentConfig(name="researcher", model=model, description="looks things up"), model


def test_each_token_reaches_the_lead_stream_tagged_with_its_task(
    runtime: SubagentRuntime,
) -> None:
    config, model = researcher()
    task = make_task_tool([config], runtime=runtime, stream_subagent_output=True)
    lead = lead_agent(
        [delegate(task_call("researcher", "the moon"), task_call("researcher", "the sun")), "done"],
        task,
    )
    events = custom_events(asyncio.run(stream_lead(lead, "two lookups")))
    outputs = [e for e in events if e["type"] == "task_output"]
    started = {e["task_id"]: e for e in events if e["type"] == "task_started"}
    assert len(started) == 2
    by_task: dict[str, str] = {}
    for event in outputs:
        assert event["task_id"] in started
        assert event["tool_call_id"] == started[event["task_id"]]["tool_call_id"]
        assert event["subagent_type"] == "researcher"
        by_task[event["task_id"]] = by_task.get(event["task_id"], "") + event["delta"]
    assert sorted(by_task.values()) == sorted(ANSWERS.values())
    # Live: every task's output comes before its terminal event.
    order = [e["type"] + ":" + e["task_id"] for e in events]
    for task_id in started:
        last_output = max(i for i, o in enumerate(order) if o == f"task_output:{task_id}")
        assert last_output < order.index(f"task_completed:{task_id}")
    assert all(call.streamed for call in model.calls)  # the model was made to stream


def test_off_by_default_and_then_nothing_is_streamed(runtime: SubagentRuntime) -> None:
    config, model = researcher()
    task = make_task_tool([config], runtime=runtime)
    lead = lead_agent([delegate(task_call("researcher", "the moon")), "done"], task)
    events = custom_events(asyncio.run(stream_lead(lead, "one lookup")))
    assert [e for e in events if e["type"] == "task_output"] == []
    assert not any(call.streamed for call in model.calls)  # no cost: not made to stream


def test_the_middleware_option_and_the_listener(runtime: SubagentRuntime) -> None:
    config, _ = researcher()
    heard: list[dict[str, Any]] = []
    middleware = SubagentMiddleware(
        [config],
        parent_model="x:y",
        runtime=runtime,
        stream_subagent_output=True,
        on_event=heard.append,
    )
    lead_model = ScriptedChatModel(
        router=lambda messages: "done"
        if any(m.type == "tool" for m in messages)
        else delegate(task_call("researcher", "the sun"))
    )
    lead = create_agent(lead_model, middleware=[middleware])
    lead.invoke({"messages": [("user", "go")]})  # the sync path: from the child's thread
    text = "".join(e["delta"] for e in heard if e["type"] == "task_output")
    assert text == ANSWERS["the sun"]


def test_the_option_is_checked() -> None:
    config, _ = researcher()
    with pytest.raises(TypeError, match="stream_subagent_output"):
        make_task_tool([config], stream_subagent_output="yes")  # type: ignore[arg-type]
