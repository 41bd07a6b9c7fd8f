"""``model="inherit"`` reached through ``SubagentMiddleware`` uses the lead agent's model,
and the error when there is nothing to inherit names the component the user used."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentMiddleware,
    SubagentRuntime,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel

from .task_tool_helpers import delegate, task_call, tool_messages

WRITER = SubagentConfig(name="writer", description="Writes.", model="inherit")


def _lead_model(tag: str) -> ScriptedChatModel:
    """Answers the lead's question by delegating, and the writer's task with its tag."""
    return ScriptedChatModel(
        script={
            f"brief {tag}": [delegate(task_call("writer", f"write for {tag}")), "lead done"],
            f"write for {tag}": [f"written by the {tag} lead model"],
        }
    )


def test_middleware_inherits_the_model_of_each_lead(runtime: SubagentRuntime) -> None:
    """Two leads with different models share one middleware, and run at the same time:
    each delegation gets the model of the lead that made it."""
    middleware = SubagentMiddleware([WRITER], runtime=runtime)
    models = {tag: _lead_model(tag) for tag in ("red", "blue")}
    leads = {tag: create_agent(m, middleware=[middleware]) for tag, m in models.items()}

    async def both() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    lead.ainvoke({"messages": [("user", f"brief {tag}")]})
                    for tag, lead in leads.items()
                )
            )
        )

    results = dict(zip(leads, asyncio.run(both()), strict=True))
    for tag, result in results.items():
        [answer] = tool_messages(result)
        assert answer.status == "success", answer.content
        assert answer.content == f"written by the {tag} lead model"
        # The child's call went to this lead's model instance (its call log says so).
        assert any(f"write for {tag}" in text for call in models[tag].calls for text in call.texts)


def test_explicit_parent_model_still_wins(runtime: SubagentRuntime) -> None:
    parent = ScriptedChatModel(script={"write for red": ["written by the parent model"]})
    middleware = SubagentMiddleware([WRITER], parent_model=parent, runtime=runtime)
    lead = create_agent(_lead_model("red"), middleware=[middleware])
    result = asyncio.run(lead.ainvoke({"messages": [("user", "brief red")]}))
    [answer] = tool_messages(result)
    assert answer.content == "written by the parent model"


def test_middleware_tool_called_outside_its_lead_says_what_is_missing(
    runtime: SubagentRuntime,
) -> None:
    middleware = SubagentMiddleware([WRITER], runtime=runtime)
    call = {
        "name": "task",
        "args": {"description": "d", "prompt": "write", "subagent_type": "writer"},
        "id": "call-1",
        "type": "tool_call",
    }
    message = asyncio.run(middleware.task_tool.ainvoke(call))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert "model='inherit' and SubagentMiddleware did not see the lead agent's model" in str(
        message.content
    )
    assert "pass parent_model=... to SubagentMiddleware" in str(message.content)
    assert runtime.list_tasks() == []  # nothing was started


def test_make_task_tool_without_parent_model_names_itself_and_the_way_out() -> None:
    with pytest.raises(
        ValueError, match=r"^make_task_tool: sub-agent\(s\) \['writer'\] have"
    ) as info:
        make_task_tool([WRITER])
    assert "use SubagentMiddleware, which inherits the model" in str(info.value)


def test_executor_without_parent_model_still_names_the_executor() -> None:
    with pytest.raises(ValueError, match=r"pass parent_model=\.\.\. to SubagentExecutor"):
        SubagentExecutor(WRITER)


def test_the_lead_model_placeholder_travels_by_pickle_without_its_notes() -> None:
    """Runs of a middleware's tool carry it (a remote backend pickles each run)."""
    import pickle

    from subagent_exec._lead_model import LeadModels

    notes = LeadModels("task")
    copied = pickle.loads(pickle.dumps(notes))
    assert isinstance(copied, LeadModels) and copied.tool_name == "task"
    with pytest.raises(ValueError, match="SubagentMiddleware: model='inherit' needs"):
        copied()
