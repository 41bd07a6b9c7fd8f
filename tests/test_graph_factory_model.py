"""``graph_factory(model)``: a custom graph gets the run's own chat model.

A graph built once around a shared ``ChatOpenAI`` fails on sub-agent loops
(langchain-openai's cached HTTP client belongs to the first loop). A factory
with one parameter receives a model whose client belongs to the run's loop.
The control test shows the failure is real here, so the other one proves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus
from subagent_exec.testing import OpenAICompatServer, ScriptedChatModel


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as srv:
        yield srv


def _chat(server: OpenAICompatServer) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="test", model="x", max_retries=0)  # type: ignore[arg-type]


def test_control_a_graph_built_once_around_a_shared_chatopenai_fails_on_later_loops(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    graph = create_agent(_chat(server), tools=[])
    executor = SubagentExecutor(
        SubagentConfig(name="fixed", graph_factory=lambda: graph), runtime=runtime
    )
    statuses = [executor.execute(f"run {i}", timeout=30).status for i in range(4)]
    assert SubagentStatus.FAILED in statuses


def test_a_one_parameter_factory_gets_a_per_run_model_and_works_on_every_loop(
    server: OpenAICompatServer, runtime: SubagentRuntime
) -> None:
    clients: list[int] = []

    def build(model: BaseChatModel) -> Any:
        clients.append(id(model.root_async_client))  # type: ignore[attr-defined]
        return create_agent(model, tools=[], system_prompt="be brief")

    executor = SubagentExecutor(
        SubagentConfig(name="custom", model=_chat(server), graph_factory=build), runtime=runtime
    )
    results = [executor.execute(f"run {i}", timeout=30) for i in range(4)]
    assert [(r.status, r.result) for r in results] == [
        (SubagentStatus.COMPLETED, f"echo: run {i}") for i in range(4)
    ]
    assert len(set(clients)) == 4  # a fresh client for each run
    assert server.chat_requests[-1]["messages"][0] == {"role": "system", "content": "be brief"}


def test_inherit_and_factories_resolve_for_the_graph_factory(runtime: SubagentRuntime) -> None:
    seen: list[str] = []

    def build(model: BaseChatModel) -> Any:
        seen.append(type(model).__name__)
        return create_agent(model, tools=[])

    parent = ScriptedChatModel(default="from the parent model")
    config = SubagentConfig(name="inherits", model="inherit", graph_factory=build)
    result = SubagentExecutor(config, parent_model=parent, runtime=runtime).execute("go")
    assert (result.status, result.result) == (SubagentStatus.COMPLETED, "from the parent model")
    assert seen == ["ScriptedChatModel"]


def test_a_factory_that_takes_the_model_needs_one() -> None:
    with pytest.raises(ValueError, match="takes the run's chat model, so set model="):
        SubagentConfig(name="x", graph_factory=lambda model: model)
    config = SubagentConfig(name="x", model="inherit", graph_factory=lambda model: model)
    with pytest.raises(ValueError, match="'inherit' but no parent_model"):
        SubagentExecutor(config)
    # zero-parameter factories keep being called without arguments
    assert not SubagentConfig(name="y", graph_factory=lambda: None).graph_factory_takes_model  # type: ignore[arg-type, return-value]
