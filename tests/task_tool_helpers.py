"""Helpers for the ``task`` tool tests: lead agents, a tool that holds, a recorder.

Every lead agent here is a real ``create_agent`` graph over a
``ScriptedChatModel`` whose replies are routed by the input; every sub-agent
model really awaits its latency, so cancellation interrupts it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from subagent_exec.testing import ScriptedChatModel, tool_calls

from .helpers import SETTLE


def task_call(
    subagent_type: str, prompt: str, description: str = "a task"
) -> tuple[str, dict[str, Any]]:
    """The (name, args) of one ``task`` call, for ``testing.tool_calls``."""
    return ("task", {"description": description, "prompt": prompt, "subagent_type": subagent_type})


def delegate(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """An AI message that makes these tool calls in parallel."""
    return tool_calls(*calls)


def lead_agent(
    replies: Sequence[Any],
    task_tool: BaseTool,
    *,
    extra_tools: Sequence[BaseTool] = (),
    **kwargs: Any,
) -> Any:
    """A lead agent answering every question with ``replies`` (by turn)."""
    model = ScriptedChatModel(router=_by_turn(list(replies)))
    return create_agent(model, tools=[task_tool, *extra_tools], **kwargs)


def _by_turn(replies: list[Any]) -> Any:
    def reply(messages: list[Any]) -> Any:
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        chosen = replies[min(turn, len(replies) - 1)]
        return chosen(messages) if callable(chosen) else chosen

    return reply


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def final_text(result: dict[str, Any]) -> str:
    return str(result["messages"][-1].text)


async def stream_lead(agent: Any, question: str, **kwargs: Any) -> list[tuple[float, str, Any]]:
    """Stream a lead agent with updates + custom; (monotonic time, mode, chunk) each."""
    chunks: list[tuple[float, str, Any]] = []
    async for mode, chunk in agent.astream(
        {"messages": [("user", question)]}, stream_mode=["updates", "custom"], **kwargs
    ):
        chunks.append((time.monotonic(), mode, chunk))
    return chunks


def custom_events(chunks: list[tuple[float, str, Any]]) -> list[dict[str, Any]]:
    return [chunk for _, mode, chunk in chunks if mode == "custom"]


class Recorder:
    """Thread-safe notes with a way to await them from any loop or thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.notes: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        with self._changed:
            self.notes.append((time.monotonic(), what))
            self._changed.notify_all()

    def seen(self, what: str) -> bool:
        with self._lock:
            return any(n == what for _, n in self.notes)

    def names(self) -> list[str]:
        with self._lock:
            return [n for _, n in self.notes]

    def when(self, what: str) -> float:
        with self._lock:
            return next(t for t, n in self.notes if n == what)

    def wait_for(self, *what: str, timeout: float = SETTLE) -> bool:
        """Block this thread until every note in ``what`` was made."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(any(n == w for _, n in self.notes) for w in what), timeout
            )

    async def await_for(self, *what: str, timeout: float = SETTLE) -> bool:
        """Like ``wait_for`` without blocking the calling loop."""
        return await asyncio.to_thread(self.wait_for, *what, timeout=timeout)


def hold_tool(recorder: Recorder, seconds: float = 30.0) -> BaseTool:
    """A ``hold(label)`` tool: notes ``hold:<label>``, awaits ``seconds``, and
    notes ``cleanup:<label>`` in its ``finally:`` (after a short awaited cleanup)."""

    @tool
    async def hold(label: str) -> str:
        """Work on something for a long time."""
        recorder.note(f"hold:{label}")
        try:
            await asyncio.sleep(seconds)
            return f"held {label}"
        finally:
            await asyncio.shield(asyncio.sleep(0.01))
            recorder.note(f"cleanup:{label}")

    return hold
