"""Background tools used by a sub-agent, on both backends: on Ray the tools
(``runs_on_driver``) are served on the driver, in the calling sub-agent's
scope, and the background task they start is a root of its thread."""

from __future__ import annotations

import functools
from typing import Any

from langchain_core.messages import ToolMessage

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentStatus, make_background_tools
from subagent_exec.testing import ScriptedChatModel, tool_call, tool_calls

from .helpers import SETTLE, terminal


def _manager_reply(messages: list[Any]) -> Any:
    """Starts a worker in the background, messages it, waits for it, reports."""
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    if not answers:
        return tool_call("start_task", {"description": "a piece", "prompt": "piece",
                                        "subagent_type": "worker"})
    if answers[-1].name == "start_task":
        task_id = answers[-1].artifact["task_id"]
        return tool_calls(
            ("message_task", {"task_id": task_id, "message": "hurry"}),
            ("wait_tasks", {"task_ids": [task_id], "mode": "all", "timeout_seconds": SETTLE}),
        )
    by_name = {m.name: m.text for m in answers}
    return f"message: {by_name['message_task']}\nwait: {by_name['wait_tasks']}"


def test_a_sub_agent_starts_and_waits_for_background_work(make_backend_runtime: Any) -> None:
    rt = make_backend_runtime(max_workers=2)
    worker = SubagentConfig(
        name="worker", model=functools.partial(ScriptedChatModel, default="piece done",
                                               latency=0.5))
    tools = make_background_tools([worker], runtime=rt)
    assert all(getattr(t, "runs_on_driver", False) for t in tools)
    manager = SubagentConfig(
        name="manager", model=functools.partial(ScriptedChatModel, router=_manager_reply),
        tools=["start_task", "message_task", "wait_tasks"],
    )
    holder = SubagentExecutor(manager, tools=tools, runtime=rt).start("manage", owner="ann")
    assert terminal(holder, SETTLE * 2).status is SubagentStatus.COMPLETED, holder.error
    [background] = [h for h in rt.list_tasks() if h.background]
    assert background.parent_id is None and background.thread_id == holder.task_id
    assert background.owner == "ann" and holder.children == []
    assert background.status is SubagentStatus.COMPLETED
    result = holder.result or ""
    assert "wait: Waited" in result and "1 of 1 ended" in result and "piece done" in result
    if rt.backend.name == "ray":  # the run's conversation is in another process
        assert "runs on the Ray backend" in result
    else:
        assert "message: Message queued" in result
