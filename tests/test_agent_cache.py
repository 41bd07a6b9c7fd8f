"""The built-in agent is compiled once per (tools, system prompt) and each run
uses its own chat model on it (``_agents.py``); should ``create_agent`` touch
the model while compiling, the agent is compiled per run instead."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import langchain.agents
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus, _agents
from subagent_exec.testing import ScriptedChatModel, tool_call

from .helpers import SETTLE


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    _agents._cache.clear()
    yield
    _agents._cache.clear()


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The model argument of every create_agent call made by the engine."""
    real = langchain.agents.create_agent
    seen: list[Any] = []

    def counting(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(langchain.agents, "create_agent", counting)
    return seen


def _task_of(messages: list[BaseMessage]) -> str:
    return next(str(m.text) for m in messages if isinstance(m, HumanMessage))


def tagged_models(latency: float = 0.0) -> Callable[[], ScriptedChatModel]:
    """A factory whose every model answers "<its own tag>:<task>"."""
    counter = itertools.count()
    lock = threading.Lock()

    def make() -> ScriptedChatModel:
        with lock:
            tag = f"model{next(counter)}"
        return ScriptedChatModel(router=lambda msgs: f"{tag}:{_task_of(msgs)}", latency=latency)

    return make


def test_one_compile_serves_every_run_each_with_its_own_model(
    runtime: SubagentRuntime, compiles: list[Any]
) -> None:
    executor = SubagentExecutor(
        SubagentConfig(name="a", model=tagged_models(), system_prompt="Be brief."),
        runtime=runtime,
    )
    results = [executor.execute(f"task {i}").result for i in range(4)]
    assert results == [f"model{i}:task {i}" for i in range(4)]
    assert compiles == [_agents.RUN_MODEL]  # compiled once, with the stand-in


def test_runs_at_once_on_one_compiled_agent_never_see_each_others_model(
    make_runtime: Callable[..., SubagentRuntime], compiles: list[Any]
) -> None:
    runtime = make_runtime(max_workers=6)
    executor = SubagentExecutor(
        SubagentConfig(name="a", model=tagged_models(latency=0.05)), runtime=runtime
    )
    holders = [executor.start(f"task {i}") for i in range(6)]
    for holder in holders:
        assert holder.wait(SETTLE) and holder.status is SubagentStatus.COMPLETED, holder.error
    tags = [(h.result or "").split(":")[0] for h in holders]
    assert [(h.result or "").split(":")[1] for h in holders] == [h.task for h in holders]
    assert len(set(tags)) == 6  # six models, one per run
    assert compiles == [_agents.RUN_MODEL]


def test_tools_and_system_prompts_get_their_own_compiled_agent(
    runtime: SubagentRuntime, compiles: list[Any]
) -> None:
    @tool
    async def lookup(query: str) -> str:
        """Look something up."""
        return f"found {query}"

    def reply(messages: list[BaseMessage]) -> str | AIMessage:
        if any(isinstance(m, AIMessage) for m in messages):
            return f"answer after {messages[-1].text}"
        return tool_call("lookup", {"query": _task_of(messages)})

    model = ScriptedChatModel(router=reply)
    with_tool = SubagentExecutor(
        SubagentConfig(name="t", model=model), tools=[lookup], runtime=runtime
    )
    plain = SubagentExecutor(SubagentConfig(name="p", model=model), runtime=runtime)
    other_prompt = SubagentExecutor(
        SubagentConfig(name="q", model=model, system_prompt="Other."), runtime=runtime
    )
    for _ in range(2):
        assert with_tool.execute("x").result == "answer after found x"
        assert plain.execute("y").status is SubagentStatus.COMPLETED
        assert other_prompt.execute("z").status is SubagentStatus.COMPLETED
    assert compiles == [_agents.RUN_MODEL] * 3


def test_a_create_agent_that_touches_the_model_is_compiled_per_run(
    runtime: SubagentRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = langchain.agents.create_agent
    seen: list[Any] = []

    def eager(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(model)
        model.bind_tools([])  # a create_agent that binds the model while compiling
        return real(model, *args, **kwargs)

    monkeypatch.setattr(langchain.agents, "create_agent", eager)
    executor = SubagentExecutor(SubagentConfig(name="a", model=tagged_models()), runtime=runtime)
    results = [executor.execute(f"task {i}").result for i in range(3)]
    assert results == [f"model{i}:task {i}" for i in range(3)]
    # The stand-in was tried once (and refused), then each run compiled with its model.
    assert seen[0] is _agents.RUN_MODEL
    assert all(isinstance(m, ScriptedChatModel) for m in seen[1:])
    assert len({id(m) for m in seen[1:]}) == 3


def test_the_stand_in_outside_a_run_says_what_it_is() -> None:
    with pytest.raises(_agents.NoRunModelError, match="outside a sub-agent run"):
        _agents.RUN_MODEL.bind_tools([])
