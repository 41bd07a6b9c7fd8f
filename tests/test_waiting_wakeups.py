"""A blocking waiter that does not listen to events is woken once, by the
terminal event; one that listens gets every event (``_waiting.py``).

Each wake-up of a waiting thread is a thread hand-off (a GIL hand-over and, on
a busy machine, a wait for a core): ``execute()`` used to be woken by every
event of its task (started, each AI message, terminal) although only the last
one ends its wait. (An async waiter is handed every event on purpose: its loop,
woken by the earlier ones, is still awake for the last.)
"""

from __future__ import annotations

import asyncio
import queue
import types
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

import subagent_exec._waiting as waiting
from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus
from subagent_exec._events import TaskEvent

from .helpers import graph_of


async def _chatty(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage(content="one"), AIMessage(content="two")]}


async def _more(state: MessagesState) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"messages": [AIMessage(content="three")]}


def _executor(runtime: SubagentRuntime) -> SubagentExecutor:
    graph = graph_of(_chatty, _more)
    return SubagentExecutor(
        SubagentConfig(name="chatty", graph_factory=lambda: graph), runtime=runtime
    )


class CountingQueue(queue.SimpleQueue[TaskEvent]):
    puts: list[str] = []

    def put(self, item: TaskEvent, block: bool = True, timeout: float | None = None) -> None:
        CountingQueue.puts.append(item.kind)
        super().put(item, block, timeout)


@pytest.fixture
def counted_inboxes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    CountingQueue.puts = []
    # Only the waiter's own queues (not every SimpleQueue of the process).
    monkeypatch.setattr(
        waiting, "queue", types.SimpleNamespace(SimpleQueue=CountingQueue, Empty=queue.Empty)
    )
    return CountingQueue.puts


def test_execute_is_woken_only_by_the_terminal_event(
    runtime: SubagentRuntime, counted_inboxes: list[str]
) -> None:
    holder = _executor(runtime).execute("talk")
    assert holder.status is SubagentStatus.COMPLETED
    assert len(holder.ai_messages) == 3
    assert counted_inboxes == ["completed"]


def test_a_blocking_waiter_with_on_event_gets_every_event(
    runtime: SubagentRuntime, counted_inboxes: list[str]
) -> None:
    seen: list[str] = []
    holder = _executor(runtime).start("talk")
    runtime.wait_terminal_blocking(holder, on_event=lambda e: seen.append(e.kind))
    assert seen[-1] == "completed"
    assert seen.count("ai_message") == 3
    assert set(counted_inboxes) <= set(seen) and counted_inboxes[-1] == "completed"


def test_an_async_waiter_with_on_event_gets_every_event(runtime: SubagentRuntime) -> None:
    seen: list[str] = []

    async def main() -> None:
        holder = _executor(runtime).start("talk")
        await runtime.wait_terminal(holder, on_event=lambda e: seen.append(e.kind))

    asyncio.run(main())
    assert seen[-1] == "completed"
    assert seen.count("ai_message") == 3
