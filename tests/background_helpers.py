"""Helpers for the background-tool tests: lead agents whose replies are
functions of their conversation (they read the task ids ``start_task``
returned), tool calls, and what a lead was told.

Every lead is a real ``create_agent`` graph over a ``ScriptedChatModel``
routed by its input; sub-agent models really await their latency.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from subagent_exec import SubagentConfig
from subagent_exec.testing import ScriptedChatModel, tool_calls

Reply = Any  # str | AIMessage | Callable[[list[BaseMessage]], str | AIMessage]


def start(
    subagent_type: str, prompt: str, description: str = "a job"
) -> tuple[str, dict[str, Any]]:
    return ("start_task", {"description": description, "prompt": prompt,
                           "subagent_type": subagent_type})


def call(name: str, **args: Any) -> tuple[str, dict[str, Any]]:
    return (name, args)


def calls(*made: tuple[str, dict[str, Any]]) -> AIMessage:
    return tool_calls(*made)


def turn_of(messages: Sequence[BaseMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, AIMessage))


def by_turn(replies: Sequence[Reply]) -> Callable[[list[BaseMessage]], Any]:
    """A router answering the n-th model call of a conversation with ``replies[n]``
    (a callable gets the messages)."""

    def reply(messages: list[BaseMessage]) -> Any:
        chosen = replies[min(turn_of(messages), len(replies) - 1)]
        return chosen(messages) if callable(chosen) else chosen

    return reply


def started_ids(messages: Sequence[BaseMessage]) -> list[str]:
    """The ids of the background tasks this conversation started, in order."""
    return [
        m.artifact["task_id"]
        for m in messages
        if isinstance(m, ToolMessage) and m.name == "start_task" and m.status == "success"
    ]


def lead(replies: Sequence[Reply], *, tools: Sequence[BaseTool] = (),
         middleware: Sequence[Any] = (), **kwargs: Any) -> tuple[Any, ScriptedChatModel]:
    """A ``create_agent`` lead answering by turn, and its model."""
    model = ScriptedChatModel(router=by_turn(list(replies)))
    return create_agent(model, tools=list(tools), middleware=list(middleware), **kwargs), model


def worker(model: ScriptedChatModel, name: str = "worker", **kwargs: Any) -> SubagentConfig:
    return SubagentConfig(name=name, description=f"the {name}", model=model, **kwargs)


def tool_results(result: dict[str, Any], name: str | None = None) -> list[ToolMessage]:
    return [m for m in result["messages"]
            if isinstance(m, ToolMessage) and (name is None or m.name == name)]


def pushed(messages: Sequence[Any]) -> list[HumanMessage]:
    """The messages that delivered a background task's outcome."""
    return [m for m in messages if isinstance(m, HumanMessage)
            and (m.id or "").startswith("subagent-background-")]


def seen_texts(model: ScriptedChatModel, call_index: int) -> tuple[str, ...]:
    return model.calls[call_index].texts


class Gate:
    """A flag one thread opens and another waits for (bounded)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def open(self) -> None:
        self._event.set()

    def wait(self, timeout: float = 10.0) -> bool:
        return self._event.wait(timeout)


def pause_tool(seconds: float) -> BaseTool:
    """A ``pause()`` tool for the lead: awaits ``seconds`` (sleeps on the sync path)."""

    @tool
    async def pause() -> str:
        """Do something else for a while."""
        await asyncio.sleep(seconds)
        return "paused"

    return pause
