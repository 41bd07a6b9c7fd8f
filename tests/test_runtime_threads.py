"""The runtime's side of background work: tasks carry the lead agent's thread,
``list_tasks(thread_id=...)`` filters by it, ``cancel_thread`` stops a whole
thread (foreground and background, with subtrees), and background tasks are
roots that no ancestor's end reaches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentResult, SubagentRuntime, SubagentStatus

from .helpers import Probe, executor, graph_of, reply_graph, slow_graph, terminal, wait_until


def _spawning_graph(runtime: SubagentRuntime, spawned: list[SubagentResult], *, background: bool,
                    child_seconds: float = 30.0) -> Any:
    """A graph_factory whose node starts one child (or background task) and ends at once."""

    def factory() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            child = executor(runtime, reply_graph("child done", delay=child_seconds), name="child")
            spawned.append(child.start("work on", background=background))
            return {"messages": [AIMessage(content="parent done")]}

        return graph_of(node)

    return factory


def test_thread_id_is_kept_inherited_and_listed(runtime: SubagentRuntime) -> None:
    spawned: list[SubagentResult] = []
    parent = executor(runtime, _spawning_graph(runtime, spawned, background=False,
                                               child_seconds=0.0), name="parent")
    root = parent.start("go", thread_id="thread-1")
    terminal(root)
    [child] = spawned
    terminal(child)
    other = executor(runtime, reply_graph("x")).start("go", thread_id="thread-2")
    terminal(other)
    plain = executor(runtime, reply_graph("x")).start("go")
    terminal(plain)

    assert root.thread_id == "thread-1" and child.thread_id == "thread-1"  # inherited
    assert child.parent_id == root.task_id and not child.background
    assert [h.task_id for h in runtime.list_tasks(thread_id="thread-1")] == [
        root.task_id, child.task_id
    ]
    assert runtime.list_tasks(thread_id="thread-2") == [other]
    assert plain.thread_id is None and root.to_dict()["thread_id"] == "thread-1"
    assert root.to_dict()["background"] is False


def test_a_background_task_is_a_root_that_outlives_the_task_that_started_it(
    runtime: SubagentRuntime,
) -> None:
    spawned: list[SubagentResult] = []
    parent = executor(runtime, _spawning_graph(runtime, spawned, background=True), name="lead")
    root = parent.start("go", thread_id="t")
    assert terminal(root).status is SubagentStatus.COMPLETED
    [background] = spawned
    # Not a child: the lead's end (which cancels what it left running) spares it.
    assert background.parent_id is None and background.depth == 1 and root.children == []
    assert background.background and background.to_dict()["background"] is True
    assert wait_until(lambda: background.status is SubagentStatus.RUNNING)
    assert not background.cancel_event.is_set()
    # It has no thread of its own unless given one (start_task gives the lead's).
    assert background.thread_id is None
    assert runtime.request_cancel(background.task_id, "test over")
    assert terminal(background).status is SubagentStatus.CANCELLED


def test_cancel_thread_stops_every_task_of_the_thread_with_its_subtree(
    runtime: SubagentRuntime,
) -> None:
    probe = Probe()
    spawned: list[SubagentResult] = []

    def nesting() -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            child = executor(runtime, slow_graph(probe), name="grandchild")
            spawned.append(child.start("deep work"))
            await asyncio.sleep(30)
            return {"messages": [AIMessage(content="never")]}

        return graph_of(node)

    lead = executor(runtime, nesting, name="lead").start("go", thread_id="t-1")
    background = executor(runtime, slow_graph(Probe()), name="bg").start(
        "long", thread_id="t-1", background=True
    )
    bystander = executor(runtime, slow_graph(Probe()), name="other").start(
        "long", thread_id="t-2", background=True
    )
    assert wait_until(lambda: len(spawned) == 1 and probe.started.is_set())
    [grandchild] = spawned
    assert grandchild.thread_id == "t-1"

    stopped = runtime.cancel_thread("t-1", "the user closed the chat")
    assert stopped == 3  # the lead, its grandchild (subtree) and the background task
    for holder in (lead, grandchild, background):
        assert terminal(holder).status is SubagentStatus.CANCELLED
    assert lead.cancel_reason == "the user closed the chat"
    assert background.cancel_reason == "the user closed the chat"
    assert probe.saw("cleaned")  # the grandchild's cleanup ran
    assert bystander.status is SubagentStatus.RUNNING  # another thread: untouched
    # Nothing left to stop: a second call stops nothing.
    assert runtime.cancel_thread("t-1") == 0
    assert runtime.cancel_thread("no-such-thread") == 0
    assert runtime.request_cancel(bystander.task_id)
    terminal(bystander)


def test_cancel_thread_default_reason_names_the_thread(runtime: SubagentRuntime) -> None:
    holder = executor(runtime, slow_graph(Probe())).start("go", thread_id="chat-7")
    assert runtime.cancel_thread("chat-7") == 1
    assert terminal(holder).cancel_reason == "thread chat-7 stopped"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda rt: rt.cancel_thread(7), TypeError, "cancel_thread.thread_id must be a task id"),
        (lambda rt: rt.cancel_thread("t", reason=1), TypeError, "cancel_thread.reason"),
        (lambda rt: rt.list_tasks(thread_id=3), TypeError, "list_tasks.thread_id"),
        (
            lambda rt: executor(rt, reply_graph()).start("go", thread_id=" "),
            ValueError,
            "submit.thread_id must be a non-empty string",
        ),
        (
            lambda rt: executor(rt, reply_graph()).start("go", background="yes"),
            TypeError,
            "submit.background must be a bool",
        ),
    ],
)
def test_bad_thread_arguments_are_refused(
    runtime: SubagentRuntime, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(runtime)
    assert runtime.list_tasks() == []


def test_a_background_task_cannot_have_a_parent(runtime: SubagentRuntime) -> None:
    parent = executor(runtime, slow_graph(Probe())).start("go")
    with pytest.raises(ValueError, match="parent_id must be None for a background task"):
        executor(runtime, reply_graph()).start("x", parent_id=parent.task_id, background=True)
    assert runtime.list_tasks() == [parent]
    runtime.request_cancel(parent.task_id)
    terminal(parent)
