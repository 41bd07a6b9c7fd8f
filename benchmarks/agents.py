"""Fake sub-agents whose waits are real awaits, so the numbers measure the
executor and not a model.

Two kinds:

* *model agents*: ``langchain.agents.create_agent`` over
  :class:`subagent_exec.testing.ScriptedChatModel` (latency really awaited),
  optionally with an async tool that awaits too;
* *graph agents*: small compiled LangGraph graphs (given to the executor via
  ``graph_factory``) whose one node awaits, blocks, or spawns children.

Every fake can mark an :class:`EntryProbe` when it enters its long wait, keyed
by the task text, so the harness knows the sub-agent is *inside* the await
without polling the executor.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph

from subagent_exec import SubagentExecutor
from subagent_exec.testing import ScriptedChatModel, tool_call

GraphFactory = Callable[[], Runnable[Any, Any]]


class EntryProbe:
    """One ``threading.Event`` per task text, set when the fake enters its wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._times: dict[str, float] = {}

    def event(self, key: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(key, threading.Event())

    def mark(self, key: str) -> None:
        with self._lock:
            self._times[key] = time.perf_counter()
        self.event(key).set()

    def entered(self, key: str) -> bool:
        return self.event(key).is_set()

    def count(self) -> int:
        with self._lock:
            return len(self._times)

    def forget(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
            self._times.pop(key, None)


def task_text(state: dict[str, Any]) -> str:
    """The text of the first human message: the task the sub-agent was given."""
    for message in state["messages"]:
        if isinstance(message, HumanMessage):
            return str(message.text)
    raise ValueError("the graph input holds no human message")


# -- model agents ---------------------------------------------------------------------


def slow_model(probe: EntryProbe, latency: float) -> ScriptedChatModel:
    """A chat model that marks ``probe`` and then awaits ``latency`` s per call."""

    def reply(messages: list[BaseMessage]) -> str:
        probe.mark(_first_human(messages))
        return "done"

    return ScriptedChatModel(router=reply, latency=latency)


def tool_calling_model(tool_name: str) -> ScriptedChatModel:
    """Turn 0 calls ``tool_name`` with the task as argument; turn 1 answers."""

    def reply(messages: list[BaseMessage]) -> str | AIMessage:
        if any(isinstance(m, AIMessage) for m in messages):
            return "done"
        return tool_call(tool_name, {"query": _first_human(messages)})

    return ScriptedChatModel(router=reply, latency=0.0)


def slow_tool(probe: EntryProbe, seconds: float) -> BaseTool:
    """An async tool that marks ``probe`` with its query and awaits ``seconds``."""

    @tool("slow_lookup")
    async def slow_lookup(query: str) -> str:
        """Look something up slowly."""
        probe.mark(query)
        await asyncio.sleep(seconds)
        return "found"

    return slow_lookup


def _first_human(messages: list[BaseMessage]) -> str:
    for message in messages:
        if isinstance(message, HumanMessage):
            return str(message.text)
    raise ValueError("no human message in the model input")


# -- graph agents ---------------------------------------------------------------------


def _one_node_graph(node: Callable[[dict[str, Any]], Any]) -> Runnable[Any, Any]:
    builder = StateGraph(MessagesState)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile()


def sleep_graph(seconds: float, probe: EntryProbe | None = None, steps: int = 1) -> GraphFactory:
    """A graph whose node awaits ``seconds`` (in ``steps`` awaits), then answers.

    The compiled graph holds no per-run state (no checkpointer), so one
    instance serves every run on every loop.
    """

    async def work(state: dict[str, Any]) -> dict[str, Any]:
        if probe is not None:
            probe.mark(task_text(state))
        for _ in range(steps):
            await asyncio.sleep(seconds / steps)
        return {"messages": [AIMessage(content="done")]}

    graph = _one_node_graph(work)
    return lambda: graph


def blocking_graph(seconds: float, probe: EntryProbe | None = None) -> GraphFactory:
    """A graph whose *async* node calls ``time.sleep``: it blocks its own loop."""

    async def work(state: dict[str, Any]) -> dict[str, Any]:
        if probe is not None:
            probe.mark(task_text(state))
        time.sleep(seconds)  # deliberately blocking: the isolation scenario's noisy neighbour
        return {"messages": [AIMessage(content="blocked")]}

    graph = _one_node_graph(work)
    return lambda: graph


class TreeAgent:
    """A graph agent that spawns ``fanout`` children (through ``executor``, so
    they become its children in the runtime's tree) until ``levels`` deep,
    then marks ``probe`` and awaits ``hold_seconds``.

    The task text is ``"<trial> level=<n> <path>"`` (the path, e.g. ``#0.3.1``,
    keeps every node's text unique); set ``executor`` after
    building the executor whose config uses :meth:`factory`.
    """

    def __init__(self, probe: EntryProbe, fanout: int, levels: int, hold_seconds: float) -> None:
        self.probe = probe
        self.fanout = fanout
        self.levels = levels
        self.hold_seconds = hold_seconds
        self.executor: SubagentExecutor | None = None
        self._graph = _one_node_graph(self._work)

    def factory(self) -> Runnable[Any, Any]:
        return self._graph

    async def _work(self, state: dict[str, Any]) -> dict[str, Any]:
        text = task_text(state)
        trial, level_part, path = text.split(" ", 2)
        level = int(level_part.removeprefix("level="))
        if level < self.levels:
            assert self.executor is not None, "TreeAgent.executor was not set"
            for i in range(self.fanout):
                self.executor.execute_async(f"{trial} level={level + 1} {path}.{i}")
        self.probe.mark(text)
        await asyncio.sleep(self.hold_seconds)
        return {"messages": [AIMessage(content="tree done")]}


def tree_size(fanout: int, levels: int) -> int:
    """Nodes in a tree of ``levels`` levels (the root is level 1)."""
    return sum(fanout**level for level in range(levels))
