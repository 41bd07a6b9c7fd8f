"""deepagents (the real package, 0.7.x) with its sub-agents run through subagent-exec.

Every test builds its lead with the real ``create_deep_agent`` and scripted
models routed by input (``ScriptedChatModel``; one script serves the lead and
every sub-agent, each picking its entry by the first user message).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import deepagents
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.tools import StructuredTool, tool
from langchain_openai import ChatOpenAI

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentMiddleware,
    SubagentRuntime,
    SubagentStatus,
    TaskTool,
)
from subagent_exec.integrations.deepagents import (
    create_deep_agent,
    from_deepagents_subagent,
    to_deepagents_subagent,
)
from subagent_exec.testing import OpenAICompatServer, ScriptedChatModel, tool_call, tool_calls

from .helpers import SETTLE, wait_until


def delegate(subagent_type: str, prompt: str, name: str = "task") -> tuple[str, dict[str, Any]]:
    """One call of subagent-exec's task tool."""
    args = {
        "description": f"{subagent_type} work",
        "prompt": prompt,
        "subagent_type": subagent_type,
    }
    return name, args


def lead_tools(agent: Any) -> dict[str, Any]:
    return dict(agent.nodes["tools"].bound.tools_by_name)


class Blocker:
    """An async tool that waits until stopped, recording entry and cleanup."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.cleaned: list[str] = []
        self._lock = threading.Lock()

        async def slow_lookup(topic: str) -> str:
            """Look a topic up (slowly)."""
            with self._lock:
                self.entered.append(topic)
            try:
                await asyncio.sleep(30)
                return "found"
            finally:
                with self._lock:
                    self.cleaned.append(topic)

        self.tool = StructuredTool.from_function(coroutine=slow_lookup, name="slow_lookup")


@pytest.fixture
def blocker() -> Blocker:
    return Blocker()


RESEARCHER = {
    "name": "researcher",
    "description": "Researches one topic.",
    "system_prompt": "You research one topic.",
}


# -- replace: our task tool, deepagents' sub-agents --------------------------------------------


def test_replace_runs_general_purpose_and_every_spec_through_the_runtime(
    runtime: SubagentRuntime,
) -> None:
    model = ScriptedChatModel(
        script={
            "Brief me": [
                tool_calls(
                    delegate("general-purpose", "write notes about tides"),
                    delegate("researcher", "research the Moon"),
                ),
                "Briefing ready.",
            ],
            # deepagents' general-purpose keeps its filesystem tools
            "write notes": [
                tool_call("write_file", {"file_path": "/notes.md", "content": "tides"}),
                "Notes written.",
            ],
            "research the Moon": "The Moon is 384,400 km away.",
        }
    )
    events: list[dict[str, Any]] = []
    agent = create_deep_agent(
        model, subagents=[RESEARCHER], runtime=runtime, on_event=events.append
    )

    tools = lead_tools(agent)
    assert isinstance(tools["task"], TaskTool)  # ours, under deepagents' name, once
    assert "- general-purpose: General-purpose agent" in tools["task"].description
    assert "- researcher: Researches one topic." in tools["task"].description

    result = asyncio.run(agent.ainvoke({"messages": [("user", "Brief me")]}))
    assert result["messages"][-1].text == "Briefing ready."
    answers = sorted(m.text for m in result["messages"] if m.type == "tool")
    assert answers == ["Notes written.", "The Moon is 384,400 km away."]

    tasks = {t.subagent_name: t for t in runtime.list_tasks()}
    assert set(tasks) == {"general-purpose", "researcher"}
    assert all(t.status is SubagentStatus.COMPLETED for t in tasks.values())
    gp_calls = [c for c in model.calls if c.task == "write notes about tides"]
    assert gp_calls[0].messages[0][1].startswith("In order to complete the objective")
    assert gp_calls[1].messages[-1] == ("tool", "Updated file /notes.md")
    researcher_call = next(c for c in model.calls if c.task == "research the Moon")
    assert researcher_call.messages[0] == ("system", "You research one topic.")
    assert {e["subagent_type"] for e in events if e["type"] == "task_completed"} == set(tasks)


def test_subagent_configs_join_the_deepagents_ones_and_may_take_their_names(
    runtime: SubagentRuntime,
) -> None:
    lead = ScriptedChatModel(
        script={
            "Check": [
                tool_calls(delegate("checker", "check 2+2"), delegate("general-purpose", "do X")),
                "Checked.",
            ]
        }
    )
    checker = SubagentConfig(name="checker", model=ScriptedChatModel(default="4"))
    own_gp = SubagentConfig(
        name="general-purpose",
        description="My own general-purpose agent.",
        model=ScriptedChatModel(default="X done my way"),
    )
    agent = create_deep_agent(lead, subagents=[checker, own_gp, RESEARCHER], runtime=runtime)
    description = lead_tools(agent)["task"].description
    assert "- general-purpose: My own general-purpose agent." in description
    assert "- researcher:" in description and "- checker:" in description

    result = asyncio.run(agent.ainvoke({"messages": [("user", "Check this")]}))
    assert sorted(m.text for m in result["messages"] if m.type == "tool") == ["4", "X done my way"]


def test_our_configs_get_a_task_tool_when_deepagents_builds_none(runtime: SubagentRuntime) -> None:
    """A harness profile may disable the general-purpose sub-agent; with no
    deepagents spec left, deepagents builds no task tool at all."""
    deepagents.register_harness_profile(
        "sxtest:no-general-purpose",
        deepagents.HarnessProfile(
            general_purpose_subagent=deepagents.GeneralPurposeSubagentProfile(enabled=False)
        ),
    )
    lead = ScriptedChatModel(
        model_name="sxtest:no-general-purpose",
        script={"Go": [tool_calls(delegate("checker", "check it")), "Checked."]},
    )
    assert "task" not in lead_tools(deepagents.create_deep_agent(lead))
    checker = SubagentConfig(name="checker", model=ScriptedChatModel(default="fine"))
    agent = create_deep_agent(lead, subagents=[checker], runtime=runtime)
    assert isinstance(lead_tools(agent)["task"], TaskTool)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "Go")]}))
    assert [m.text for m in result["messages"] if m.type == "tool"] == ["fine"]


def test_sub_agent_tokens_reach_the_deepagents_lead_stream_when_asked(
    runtime: SubagentRuntime,
) -> None:
    answer = "Tides follow the Moon."
    model = ScriptedChatModel(
        script={
            "Explain": [tool_calls(delegate("general-purpose", "summarise tides")), "Done."],
            "summarise tides": answer,
        }
    )
    agent = create_deep_agent(model, runtime=runtime, stream_subagent_output=True)
    question = {"messages": [("user", "Explain tides")]}
    events = asyncio.run(_collect(agent.astream(question, stream_mode="custom")))
    outputs = [e for e in events if e["type"] == "task_output"]
    assert "".join(e["delta"] for e in outputs) == answer
    assert {e["subagent_type"] for e in outputs} == {"general-purpose"}
    quiet = create_deep_agent(model, runtime=runtime)  # off by default
    quiet_events = asyncio.run(_collect(quiet.astream(question, stream_mode="custom")))
    assert not [e for e in quiet_events if e["type"] == "task_output"]


async def _collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for event in stream]


# -- alongside: deepagents' task stays, ours is added ------------------------------------------


def test_alongside_keeps_deepagents_task_and_its_general_purpose(runtime: SubagentRuntime) -> None:
    model = ScriptedChatModel(
        script={
            "Plan": [
                tool_calls(
                    ("task", {"description": "save a plan", "subagent_type": "general-purpose"}),
                    delegate("researcher", "research Mars", name="background_task"),
                ),
                "Planned.",
            ],
            "save a plan": [
                tool_call("write_file", {"file_path": "/plan.md", "content": "go"}),
                "Saved.",
            ],
            "research Mars": "Mars is red.",
        }
    )
    fork = {"name": "continuer", "description": "Continues the chat.", "mode": "fork"}
    agent = create_deep_agent(
        model, subagents=[RESEARCHER, fork], runtime=runtime, task_tool="alongside"
    )
    tools = lead_tools(agent)
    assert not isinstance(tools["task"], TaskTool)  # deepagents' own
    assert "continuer" in tools["task"].description
    assert isinstance(tools["background_task"], TaskTool)
    assert "continuer" not in tools["background_task"].description  # needs deepagents' task

    result = asyncio.run(agent.ainvoke({"messages": [("user", "Plan a trip")]}))
    assert result["messages"][-1].text == "Planned."
    assert "/plan.md" in result["files"]  # deepagents' task: the sub-agent's files flow back
    assert [t.subagent_name for t in runtime.list_tasks()] == ["researcher"]


# -- stops and deadlines ---------------------------------------------------------------------


def test_stopping_a_deepagents_lead_stops_its_whole_tree_after_cleanup(
    runtime: SubagentRuntime, blocker: Blocker
) -> None:
    model = ScriptedChatModel(
        script={
            "Survey": tool_calls(
                delegate("general-purpose", "look into tides"),
                delegate("researcher", "look into craters"),
            ),
            "look into": [tool_call("slow_lookup", {"topic": "it"}), "unreachable"],
        }
    )
    researcher = {**RESEARCHER, "tools": [blocker.tool]}
    lead = SubagentConfig(
        name="deep-lead",
        graph_factory=lambda: create_deep_agent(
            model, tools=[blocker.tool], subagents=[researcher], runtime=runtime
        ),
    )
    lead_id = SubagentExecutor(lead, runtime=runtime).execute_async("Survey the Moon")
    assert wait_until(lambda: len(blocker.entered) == 2)
    children = [t for t in runtime.list_tasks() if t.parent_id == lead_id]
    assert sorted(c.subagent_name for c in children) == ["general-purpose", "researcher"]

    started = time.monotonic()
    runtime.request_cancel(lead_id, "user pressed Stop")
    assert runtime.get(lead_id).wait(SETTLE)
    assert all(c.wait(SETTLE) for c in children)
    assert time.monotonic() - started < SETTLE
    assert runtime.get(lead_id).status is SubagentStatus.CANCELLED
    for child in children:
        assert child.status is SubagentStatus.CANCELLED
        assert lead_id in (child.cancel_reason or "")
    assert sorted(blocker.cleaned) == ["it", "it"]  # both finally: blocks ran


def test_a_deadline_times_out_a_deepagents_sub_agent_and_the_lead_carries_on(
    runtime: SubagentRuntime, blocker: Blocker
) -> None:
    model = ScriptedChatModel(
        script={
            "Quick": [tool_calls(delegate("researcher", "look into comets")), "Without it."],
            "look into": tool_call("slow_lookup", {"topic": "comets"}),
        }
    )
    agent = create_deep_agent(
        model,
        subagents=[{**RESEARCHER, "tools": [blocker.tool]}],
        runtime=runtime,
        timeout_seconds=0.5,
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "Quick answer")]}))
    assert result["messages"][-1].text == "Without it."
    tool_message = next(m for m in result["messages"] if m.type == "tool")
    assert "timed out" in tool_message.text
    (task,) = runtime.list_tasks()
    assert task.status is SubagentStatus.TIMED_OUT
    assert blocker.cleaned == ["comets"]


# -- what is refused, and why ------------------------------------------------------------------


def test_shadowing_and_unsupported_specs_are_refused_with_the_reason() -> None:
    model = ScriptedChatModel(default="ok")

    @tool
    def task(x: str) -> str:
        """A tool of the user's that happens to be called task."""
        return x

    with pytest.raises(ValueError, match=r"tools holds a tool named 'task'.*shadow"):
        create_deep_agent(model, tools=[task])
    own = SubagentMiddleware([SubagentConfig(name="a", model=model)])
    with pytest.raises(ValueError, match="middleware holds a sub-agent middleware"):
        create_deep_agent(model, middleware=[own])
    with pytest.raises(ValueError, match=r"'general-purpose' has interrupt_on"):
        create_deep_agent(model, interrupt_on={"write_file": True})
    with pytest.raises(ValueError, match=r"mode='fork'.*task_tool='alongside'"):
        create_deep_agent(model, subagents=[{"name": "f", "description": "d", "mode": "fork"}])
    with pytest.raises(ValueError, match="task_tool must be 'replace' or 'alongside'"):
        create_deep_agent(model, task_tool="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give task_tool_name another name"):
        create_deep_agent(model, task_tool="alongside", task_tool_name="task")
    with pytest.raises(TypeError, match=r"subagents\[0\] must be a deepagents spec"):
        create_deep_agent(model, subagents=[42])
    with pytest.raises(TypeError, match="runtime must be a SubagentRuntime"):
        create_deep_agent(model, runtime="default")  # type: ignore[arg-type]


def test_interrupt_on_is_kept_for_deepagents_task_when_alongside(runtime: SubagentRuntime) -> None:
    model = ScriptedChatModel(default="ok")
    agent = create_deep_agent(
        model,
        interrupt_on={"write_file": True},
        task_tool="alongside",
        runtime=runtime,
        subagents=[{**RESEARCHER, "interrupt_on": {}}],
    )
    tools = lead_tools(agent)
    assert "general-purpose" in tools["task"].description
    assert "general-purpose" not in tools["background_task"].description
    assert "researcher" in tools["background_task"].description


# -- one spec at a time ------------------------------------------------------------------------


class Recorder(AgentMiddleware):  # type: ignore[type-arg]
    """A spec's own middleware: records each model call it wraps."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        self.calls += 1
        return await handler(request)


def test_from_deepagents_subagent_runs_a_dict_spec_with_its_tools_and_middleware(
    runtime: SubagentRuntime,
) -> None:
    @tool
    def measure(thing: str) -> str:
        """Measure a thing."""
        return f"{thing}: 3 m"

    recorder = Recorder()
    model = ScriptedChatModel(script={"desk": [tool_call("measure", {"thing": "desk"}), "3 m."]})
    spec = {
        "name": "measurer",
        "description": "Measures things.",
        "system_prompt": "You measure.",
        "model": model,
        "tools": [measure],
        "middleware": [recorder],
    }
    config = from_deepagents_subagent(spec, timeout_seconds=30)
    assert (config.name, config.description, config.timeout_seconds) == (
        "measurer",
        "Measures things.",
        30,
    )
    result = SubagentExecutor(config, runtime=runtime).execute("How long is the desk?")
    assert (result.status, result.result) == (SubagentStatus.COMPLETED, "3 m.")
    assert recorder.calls == 2
    assert model.calls[1].messages[-1] == ("tool", "desk: 3 m")
    assert model.calls[0].messages[0] == ("system", "You measure.")

    # without a model it inherits the parent model; without tools, default_tools
    bare = from_deepagents_subagent({"name": "bare", "description": "d"}, default_tools=[measure])
    assert bare.model == "inherit"
    parent = ScriptedChatModel(script={"shelf": [tool_call("measure", {"thing": "shelf"}), "ok"]})
    inherited = SubagentExecutor(bare, parent_model=parent, runtime=runtime).execute("the shelf")
    assert inherited.status is SubagentStatus.COMPLETED
    assert parent.calls[1].messages[-1] == ("tool", "shelf: 3 m")


def test_from_deepagents_subagent_runs_a_compiled_spec_and_refuses_the_rest(
    runtime: SubagentRuntime,
) -> None:
    runnable = create_agent(ScriptedChatModel(default="compiled answer"), tools=[])
    config = from_deepagents_subagent(
        {"name": "c", "description": "Compiled.", "runnable": runnable}
    )
    result = SubagentExecutor(config, runtime=runtime).execute("anything")
    assert (result.status, result.result) == (SubagentStatus.COMPLETED, "compiled answer")

    with pytest.raises(TypeError, match="a deepagents sub-agent is a dict"):
        from_deepagents_subagent(SubagentConfig(name="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'name' must be a non-empty string"):
        from_deepagents_subagent({"description": "no name"})
    with pytest.raises(ValueError, match="AsyncSubAgent"):
        from_deepagents_subagent({"name": "r", "description": "d", "graph_id": "g"})
    with pytest.raises(ValueError, match="cannot wait for human approval"):
        from_deepagents_subagent({"name": "h", "description": "d", "interrupt_on": {"x": True}})
    with pytest.raises(TypeError, match="'runnable' of 'bad' must be a Runnable"):
        from_deepagents_subagent({"name": "bad", "description": "d", "runnable": 3})


def test_to_deepagents_subagent_runs_under_deepagents_own_task_tool() -> None:
    @tool
    def rhyme(word: str) -> str:
        """A rhyme for a word."""
        return f"{word}: moon"

    @tool
    def unused(word: str) -> str:
        """Not for the poet."""
        return word

    poet_model = ScriptedChatModel(
        script={"June": [tool_call("rhyme", {"word": "June"}), "June, moon."]}
    )
    poet = SubagentConfig(
        name="poet",
        description="Writes rhymes.",
        system_prompt="Rhyme.",
        model=poet_model,
        tools=["rhyme"],
    )
    spec = to_deepagents_subagent(poet, tools=[rhyme, unused])
    assert [t.name for t in spec["tools"]] == ["rhyme"]  # type: ignore[typeddict-item]
    lead = ScriptedChatModel(
        script={
            "Rhyme": [
                tool_call("task", {"description": "a rhyme for June", "subagent_type": "poet"}),
                "Done.",
            ]
        }
    )
    agent = deepagents.create_deep_agent(lead, subagents=[spec])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "Rhyme please")]}))
    assert [m.text for m in result["messages"] if m.type == "tool"] == ["June, moon."]
    assert poet_model.calls[0].messages[0] == ("system", "Rhyme.")

    graph = create_agent(ScriptedChatModel(default="g"), tools=[])
    compiled = to_deepagents_subagent(SubagentConfig(name="g", graph_factory=lambda: graph))
    assert compiled["runnable"] is graph  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="no deepagents equivalent"):
        to_deepagents_subagent(SubagentConfig(name="m", model="inherit", graph_factory=lambda m: m))


# -- the real ChatOpenAI, offline --------------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[OpenAICompatServer]:
    script = ScriptedChatModel(
        script={
            "Brief": [tool_calls(delegate("general-purpose", "summarise tides")), "Brief done."],
            "summarise tides": "Tides follow the Moon.",
        }
    )
    with OpenAICompatServer(chat_model=script) as server:
        yield server


def test_deepagents_sub_agents_on_the_real_chatopenai_work_run_after_run(
    fake_openai: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    """Each sub-agent run is on a fresh loop: the sub-agent graph is rebuilt
    around a model with that loop's HTTP client, or the second run would fail
    with "Event loop is closed"."""
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=fake_openai.base_url,
        api_key="test",  # type: ignore[arg-type]
        max_retries=0,
        use_responses_api=False,  # the fake server speaks chat completions
        timeout=10.0,  # hashable: the cached client for this address (see test_fake_openai_...)
    )
    agent = create_deep_agent(llm, runtime=runtime)

    async def three_runs() -> list[str]:
        answers = []
        for i in range(3):
            result = await agent.ainvoke({"messages": [("user", f"Brief {i}")]})
            answers.append(result["messages"][-1].text)
        return answers

    assert asyncio.run(three_runs()) == ["Brief done."] * 3
    tasks = runtime.list_tasks()
    assert [(t.status, t.result) for t in tasks] == [
        (SubagentStatus.COMPLETED, "Tides follow the Moon.")
    ] * 3
    gp_prompt = "In order to complete the objective"
    sub_requests = [
        r for r in fake_openai.chat_requests if r["messages"][0]["content"].startswith(gp_prompt)
    ]
    assert len(sub_requests) == 3
    assert all(
        r["messages"][1] == {"role": "user", "content": "summarise tides"} for r in sub_requests
    )
