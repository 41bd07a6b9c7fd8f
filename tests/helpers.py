"""Small graph factories and helpers shared by the engine tests.

The graphs here are real LangGraph ``StateGraph``s over ``MessagesState`` whose
async nodes really await (so a cancel can interrupt them), call tools, block,
raise, or spawn children. Timing assertions use generous tolerances: the
machine running the suite has 2 shared cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentResult, SubagentRuntime

NodeFn = Callable[[MessagesState], Awaitable[dict[str, Any]]]

#: Runs a test that takes the ``runtime`` fixture once per backend. Only for
#: tests whose sub-agents can travel to a Ray worker (no locks, events or
#: model instances shared with the test) and that observe them through the
#: holder and the events, not through in-process side effects.
both_backends = pytest.mark.parametrize("runtime", ["thread", "ray"], indirect=True)

#: How long tests wait for something that should happen "at once". Generous on
#: purpose: the assertion is about *whether* it happens, not how fast.
SETTLE = 5.0


def graph_of(*nodes: NodeFn) -> Runnable[Any, Any]:
    """A compiled graph that runs ``nodes`` one after another."""
    builder = StateGraph(MessagesState)
    previous = START
    for index, node in enumerate(nodes):
        name = f"step{index}"
        builder.add_node(name, node)  # type: ignore[call-overload]
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile()


def reply_node(text: str, delay: float = 0.0) -> NodeFn:
    """A node that awaits ``delay`` seconds and answers ``text``."""

    async def node(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"messages": [AIMessage(content=text)]}

    return node


def reply_graph(text: str = "done", delay: float = 0.0) -> Callable[[], Runnable[Any, Any]]:
    """A graph_factory whose graph answers ``text`` after ``delay`` seconds."""
    return lambda: graph_of(reply_node(text, delay))


class Probe:
    """Records what a graph did, from whichever thread it ran on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.events: list[str] = []
        self.factory_calls = 0

    def note(self, what: str) -> None:
        with self.lock:
            self.events.append(what)

    def saw(self, what: str) -> bool:
        with self.lock:
            return what in self.events


def slow_graph(probe: Probe, seconds: float = 30.0, cleanup: float = 0.0) -> Callable[[], Any]:
    """A graph_factory whose node awaits ``seconds``; its ``finally:`` awaits
    ``cleanup`` seconds and then notes "cleaned"."""

    def factory() -> Runnable[Any, Any]:
        with probe.lock:
            probe.factory_calls += 1

        async def node(state: MessagesState) -> dict[str, Any]:
            probe.note("started")
            probe.started.set()
            try:
                await asyncio.sleep(seconds)
                probe.note("finished")
                return {"messages": [AIMessage(content="slow done")]}
            finally:
                if cleanup:
                    await asyncio.sleep(cleanup)
                probe.note("cleaned")

        return graph_of(node)

    return factory


def executor(
    runtime: SubagentRuntime,
    graph_factory: Callable[[], Any],
    *,
    name: str = "worker",
    timeout_seconds: float = 900.0,
    **kwargs: Any,
) -> SubagentExecutor:
    """An executor of a graph_factory sub-agent on ``runtime``."""
    config = SubagentConfig(name=name, graph_factory=graph_factory, timeout_seconds=timeout_seconds)
    return SubagentExecutor(config, runtime=runtime, **kwargs)


def wait_until(predicate: Callable[[], bool], timeout: float = SETTLE, step: float = 0.005) -> bool:
    """Poll ``predicate`` (test-side only; the library itself never polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def terminal(holder: SubagentResult | None, timeout: float = SETTLE) -> SubagentResult:
    """Wait for ``holder`` to be terminal and return it (fails the test otherwise)."""
    assert holder is not None, "task is not registered"
    assert holder.wait(timeout), f"{holder!r} did not reach a terminal status in {timeout}s"
    return holder


def thread_snapshot() -> set[threading.Thread]:
    return set(threading.enumerate())


def leaked_threads(before: set[threading.Thread], timeout: float = SETTLE) -> list[str]:
    """Threads started since ``before`` that are still alive after ``timeout``."""
    wait_until(lambda: not (thread_snapshot() - before), timeout=timeout)
    return sorted(t.name for t in thread_snapshot() - before)
