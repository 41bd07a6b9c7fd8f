"""Statuses, config validation and the executor's construction-time checks."""

from __future__ import annotations

import math
from typing import Any

import pytest
from langchain_core.tools import tool

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus
from subagent_exec.testing import ScriptedChatModel

from .helpers import reply_graph


@tool
def search(query: str) -> str:
    """Search for something."""
    return query


@tool
def task(description: str) -> str:
    """Delegate (must be disallowed by default)."""
    return description


def test_statuses_and_is_terminal() -> None:
    assert [s.name for s in SubagentStatus] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMED_OUT",
    ]
    assert not SubagentStatus.PENDING.is_terminal
    assert not SubagentStatus.RUNNING.is_terminal
    for status in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
        assert SubagentStatus[status].is_terminal
    # String-valued, so statuses round-trip through JSON and filters.
    assert SubagentStatus("timed_out") is SubagentStatus.TIMED_OUT


def test_config_defaults() -> None:
    config = SubagentConfig(name="researcher", model=ScriptedChatModel(default="x"))
    assert config.max_turns == 50
    assert config.timeout_seconds == 900
    assert config.tools is None
    assert tuple(config.disallowed_tools) == ("task",)
    assert config.graph_factory is None


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"name": ""}, "name", ValueError),
        ({"name": "   "}, "name", ValueError),
        ({"name": 7}, "name", TypeError),
        ({"max_turns": 0}, "max_turns", ValueError),
        ({"max_turns": -3}, "max_turns", ValueError),
        ({"max_turns": 2.5}, "max_turns", TypeError),
        ({"max_turns": True}, "max_turns", TypeError),
        ({"timeout_seconds": 0}, "timeout_seconds", ValueError),
        ({"timeout_seconds": -1.0}, "timeout_seconds", ValueError),
        ({"timeout_seconds": math.nan}, "timeout_seconds", ValueError),
        ({"timeout_seconds": "10"}, "timeout_seconds", TypeError),
        ({"model": ""}, "model", ValueError),
        ({"model": 42}, "model", TypeError),
        ({"tools": "search"}, "tools", TypeError),
        ({"tools": ["search", ""]}, "tools", ValueError),
        ({"tools": ["search", 3]}, "tools", TypeError),
        ({"graph_factory": "not callable"}, "graph_factory", TypeError),
    ],
)
def test_invalid_config_names_the_field(
    kwargs: dict[str, Any], field: str, error: type[Exception]
) -> None:
    """Wrong type -> TypeError, wrong value -> ValueError; both name the field."""
    options: dict[str, Any] = {"name": "worker", "model": "inherit", **kwargs}
    with pytest.raises(error, match=rf"SubagentConfig\.{field}\b"):
        SubagentConfig(**options)


def test_unknown_tool_in_allow_list_is_refused_by_the_executor() -> None:
    config = SubagentConfig(
        name="worker", model=ScriptedChatModel(default="x"), tools=["search", "missing"]
    )
    with pytest.raises(ValueError, match=r"SubagentConfig\.tools.*missing") as info:
        SubagentExecutor(config, tools=[search])
    assert "search" in str(info.value)  # lists what is available


def test_allow_list_and_disallowed_tools_filter_the_given_tools() -> None:
    model = ScriptedChatModel(default="x")
    everything = SubagentExecutor(SubagentConfig(name="a", model=model), tools=[search, task])
    assert [t.name for t in everything.tools] == ["search"]  # "task" disallowed by default
    allowed = SubagentExecutor(
        SubagentConfig(name="b", model=model, tools=["task", "search"], disallowed_tools=()),
        tools=[search, task],
    )
    assert [t.name for t in allowed.tools] == ["task", "search"]


def test_neither_model_nor_graph_factory_names_both_fields() -> None:
    config = SubagentConfig(name="worker")
    with pytest.raises(ValueError, match=r"model.*graph_factory"):
        SubagentExecutor(config)


def test_inherit_without_parent_model_is_refused() -> None:
    config = SubagentConfig(name="worker", model="inherit")
    with pytest.raises(ValueError, match=r"SubagentConfig\.model.*parent_model"):
        SubagentExecutor(config)
    # With a parent model it is accepted.
    SubagentExecutor(config, parent_model=ScriptedChatModel(default="x"))


def test_executor_rejects_non_config() -> None:
    with pytest.raises(TypeError, match="SubagentConfig"):
        SubagentExecutor({"name": "worker"})  # type: ignore[arg-type]


def test_empty_task_is_refused(runtime: SubagentRuntime) -> None:
    ex = SubagentExecutor(SubagentConfig(name="w", graph_factory=reply_graph()), runtime=runtime)
    with pytest.raises(ValueError, match="task"):
        ex.execute_async("  ")
    assert runtime.list_tasks() == []


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"max_workers": 0}, "max_workers", ValueError),
        ({"max_workers": 2.0}, "max_workers", TypeError),
        ({"max_pending": -1}, "max_pending", ValueError),
        ({"max_depth": 0}, "max_depth", ValueError),
        ({"retain_max": -1}, "retain_max", ValueError),
        ({"retain_max": "10"}, "retain_max", TypeError),
        ({"retain_ttl_seconds": 0}, "retain_ttl_seconds", ValueError),
        ({"cancel_grace_seconds": -0.1}, "cancel_grace_seconds", ValueError),
        ({"cancel_grace_seconds": None}, "cancel_grace_seconds", TypeError),
        ({"cleanup_timeout_seconds": 0}, "cleanup_timeout_seconds", ValueError),
    ],
)
def test_invalid_runtime_options_name_the_field(
    kwargs: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"SubagentRuntime\.{field}\b"):
        SubagentRuntime(**kwargs)
