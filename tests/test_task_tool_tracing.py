"""What crosses into a sub-agent for tracing: the tool run as parent of the
child's runs, the caller's handlers (async ones called on the caller's loop),
and nothing of the caller's langgraph machinery or stop checkpoint."""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool

from subagent_exec import SubagentConfig, SubagentRuntime, SubagentStatus, make_task_tool
from subagent_exec.testing import ScriptedChatModel, tool_call

from .task_tool_helpers import delegate, final_text, lead_agent, task_call, tool_messages


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    await asyncio.sleep(0.01)
    return f"facts about {query}"


class RunRecorder(BaseCallbackHandler):
    """Records every run start: kind, name, run id, parent run id, thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[UUID, dict[str, Any]] = {}

    def _start(self, kind: str, serialized: Any, run_id: UUID, kwargs: dict[str, Any]) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        with self.lock:
            self.runs[run_id] = {
                "kind": kind,
                "name": name,
                "parent": kwargs.get("parent_run_id"),
                "thread": threading.current_thread().name,
            }

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._start("chain", serialized, run_id, kw)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self._start("chat_model", serialized, run_id, kw)

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, **kw: Any) -> None:
        self._start("tool", serialized, run_id, kw)

    def ancestors(self, run_id: UUID) -> list[UUID]:
        chain = []
        parent = self.runs[run_id]["parent"]
        while parent is not None:
            chain.append(parent)
            parent = self.runs.get(parent, {}).get("parent")
        return chain

    def find(self, kind: str, name: str) -> list[UUID]:
        return [rid for rid, r in self.runs.items() if r["kind"] == kind and r["name"] == name]


def researcher(model: ScriptedChatModel, **kwargs: Any) -> SubagentConfig:
    return SubagentConfig(name="researcher", model=model, tools=["lookup"], **kwargs)


def test_child_runs_nest_under_the_task_tool_run(runtime: SubagentRuntime) -> None:
    child_model = ScriptedChatModel(
        script={"moon": [tool_call("lookup", {"query": "moon"}), "the moon is far"]}
    )
    task = make_task_tool([researcher(child_model)], tools=[lookup], runtime=runtime)
    agent = lead_agent([delegate(task_call("researcher", "moon distance")), "lead done"], task)
    recorder = RunRecorder()

    result = asyncio.run(
        agent.ainvoke({"messages": [("user", "go")]}, config={"callbacks": [recorder]})
    )

    assert final_text(result) == "lead done"
    [task_run] = recorder.find("tool", "task")
    [child_root] = recorder.find("chain", "researcher")  # the sub-agent graph's run
    assert recorder.runs[child_root]["parent"] == task_run
    [lookup_run] = recorder.find("tool", "lookup")
    assert task_run in recorder.ancestors(lookup_run)
    child_models = [
        rid
        for rid in recorder.find("chat_model", "ScriptedChatModel")
        if task_run in recorder.ancestors(rid)
    ]
    assert len(child_models) == 2  # both of the child's model calls
    # They really ran elsewhere: on the sub-agent's worker thread.
    lead_thread = recorder.runs[task_run]["thread"]
    assert all(recorder.runs[rid]["thread"] != lead_thread for rid in child_models)


class LoopRecorder(AsyncCallbackHandler):
    """An async handler bound to the loop it was made on (like astream_events')."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.calls: list[tuple[str, UUID, UUID | None]] = []
        self.wrong_loop: list[str] = []

    def _seen(self, kind: str, run_id: UUID, parent: UUID | None) -> None:
        if asyncio.get_running_loop() is not self.loop:
            self.wrong_loop.append(kind)
        self.calls.append((kind, run_id, parent))

    async def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self._seen("chat_model", run_id, kw.get("parent_run_id"))

    async def on_tool_start(
        self, serialized: Any, input_str: str, *, run_id: UUID, **kw: Any
    ) -> None:
        self._seen(f"tool:{serialized.get('name')}", run_id, kw.get("parent_run_id"))

    async def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self._seen(f"chain:{kw.get('name')}", run_id, kw.get("parent_run_id"))


def test_async_handlers_of_the_caller_are_called_on_the_callers_loop(
    runtime: SubagentRuntime,
) -> None:
    child_model = ScriptedChatModel(
        script={"moon": [tool_call("lookup", {"query": "moon"}), "the moon is far"]}
    )
    task = make_task_tool([researcher(child_model)], tools=[lookup], runtime=runtime)
    agent = lead_agent([delegate(task_call("researcher", "moon distance")), "lead done"], task)

    async def run() -> LoopRecorder:
        handler = LoopRecorder()
        await agent.ainvoke({"messages": [("user", "go")]}, config={"callbacks": [handler]})
        return handler

    handler = asyncio.run(run())

    kinds = [kind for kind, _, _ in handler.calls]
    assert "tool:lookup" in kinds and "chain:researcher" in kinds  # the child's runs arrived
    assert kinds.count("chat_model") == 4  # two of the lead's, two of the child's
    assert handler.wrong_loop == []
    [task_run] = [rid for kind, rid, _ in handler.calls if kind == "tool:task"]
    [child_root_parent] = [p for kind, _, p in handler.calls if kind == "chain:researcher"]
    assert child_root_parent == task_run


def test_the_callers_message_stream_does_not_get_the_childs_tokens(
    runtime: SubagentRuntime,
) -> None:
    """langgraph's stream handlers stay with the caller, even the one of a
    ``subgraphs=True`` stream that langgraph itself would let through; the
    child's messages reach the caller as task_running events instead."""
    child_model = ScriptedChatModel(default="CHILD-ONLY-WORDS here")
    task = make_task_tool([researcher(child_model)], tools=[lookup], runtime=runtime)
    agent = lead_agent([delegate(task_call("researcher", "anything")), "LEAD-WORDS"], task)

    async def run() -> list[tuple[str, Any]]:
        return [
            (mode, chunk)
            async for _, mode, chunk in agent.astream(
                {"messages": [("user", "go")]},
                stream_mode=["messages", "custom"],
                subgraphs=True,
            )
        ]

    chunks = asyncio.run(run())
    streamed = "".join(
        c[0].text for mode, c in chunks if mode == "messages" and isinstance(c[0], AIMessageChunk)
    )
    assert "LEAD-WORDS" in streamed and "CHILD-ONLY-WORDS" not in streamed
    running = [c for mode, c in chunks if mode == "custom" and c["type"] == "task_running"]
    assert [r["message"]["text"] for r in running] == ["CHILD-ONLY-WORDS here"]


def test_the_calling_sub_agents_turn_budget_does_not_reach_its_child(
    runtime: SubagentRuntime,
) -> None:
    """The caller's StopCheckpoint stays behind: a parent with max_turns=2
    delegates to a child that needs three model calls; both complete."""
    parent_model = ScriptedChatModel(
        script={"plan": [delegate(task_call("researcher", "moon facts")), "parent done"]}
    )
    child_model = ScriptedChatModel(
        script={
            "moon": [
                tool_call("lookup", {"query": "a"}),
                tool_call("lookup", {"query": "b"}),
                "child done",
            ]
        }
    )
    configs = [
        SubagentConfig(name="planner", model=parent_model, max_turns=2, disallowed_tools=()),
        researcher(child_model, max_turns=5),
    ]
    task = make_task_tool(configs, tools=[lookup], runtime=runtime)
    agent = lead_agent([delegate(task_call("planner", "plan it")), "lead done"], task)

    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    assert [m.text for m in tool_messages(result)] == ["parent done"]
    assert {t.subagent_name: t.status for t in runtime.list_tasks()} == {
        "planner": SubagentStatus.COMPLETED,
        "researcher": SubagentStatus.COMPLETED,
    }
    assert child_model.call_count == 3


def test_astream_events_of_the_lead_include_the_childs_runs_under_the_tool(
    runtime: SubagentRuntime,
) -> None:
    child_model = ScriptedChatModel(default="CHILD ANSWER")
    task = make_task_tool([researcher(child_model)], tools=[lookup], runtime=runtime)
    agent = lead_agent([delegate(task_call("researcher", "anything")), "lead done"], task)

    async def run() -> list[dict[str, Any]]:
        return [
            event
            async for event in agent.astream_events({"messages": [("user", "go")]}, version="v2")
        ]

    events = asyncio.run(run())
    [tool_start] = [e for e in events if e["event"] == "on_tool_start" and e["name"] == "task"]
    [child_end] = [
        e
        for e in events
        if e["event"] == "on_chat_model_end" and e["data"]["output"].text == "CHILD ANSWER"
    ]
    assert tool_start["run_id"] in child_end["parent_ids"]
    assert any(e["event"] == "on_chain_start" and e["name"] == "researcher" for e in events)
