"""The ``resume_task`` background tool in a real ``create_agent`` lead, and
``resume_background_task`` on the default runtime."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import BaseMessage

from subagent_exec import SubagentRuntime, SubagentStatus, make_background_tools

from .background_helpers import call, calls, lead, start, started_ids, tool_results
from .resume_support import FINAL, TASK, CountingAgent


def test_resume_task_tool_resumes_a_cancelled_background_task(
    runtime: SubagentRuntime,
) -> None:
    agent = CountingAgent()
    tools = make_background_tools([agent.config()], tools=agent.tools(), runtime=runtime)

    def cancel_once_in_slow(messages: list[BaseMessage]) -> Any:
        assert agent.slow_started.wait(10)
        [task_id] = started_ids(messages)
        return calls(call("cancel_task", task_id=task_id))

    def resume(messages: list[BaseMessage]) -> Any:
        [task_id] = started_ids(messages)
        return calls(call("resume_task", task_id=task_id),
                     call("resume_task", task_id="no-such-task"))

    def wait_resumed(messages: list[BaseMessage]) -> Any:
        [ok, _] = tool_results({"messages": messages}, "resume_task")
        return calls(call("wait_tasks", task_ids=[ok.artifact["task_id"]], mode="all",
                          timeout_seconds=10))

    def follow_up_completed(messages: list[BaseMessage]) -> Any:
        [ok, _] = tool_results({"messages": messages}, "resume_task")
        return calls(call("resume_task", task_id=ok.artifact["task_id"]))

    lead_agent, _ = lead([
        calls(start("surveyor", TASK, "survey")),
        cancel_once_in_slow,
        resume,
        wait_resumed,
        follow_up_completed,
        "done",
    ], tools=tools)
    result = asyncio.run(lead_agent.ainvoke({"messages": [("user", "go")]}))

    ok, unknown, refused = tool_results(result, "resume_task")
    [original] = started_ids(result["messages"])
    assert ok.status == "success", ok.text
    assert ok.artifact["resumed_from"] == original and ok.artifact["task_id"] != original
    assert unknown.status == "error" and "unknown task id" in unknown.text
    # A completed task needs a message to be followed up.
    assert refused.status == "error" and "give a message" in refused.text
    resumed = runtime.get(ok.artifact["task_id"])
    assert resumed is not None and resumed.status is SubagentStatus.COMPLETED
    assert resumed.result == FINAL and resumed.background and resumed.parent_id is None
    assert resumed.resumed_from == original
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2} and agent.model_calls == 4
    [waited] = tool_results(result, "wait_tasks")
    assert FINAL in waited.text


def test_resume_background_task_on_the_default_runtime() -> None:
    from subagent_exec import (
        SubagentExecutor,
        configure,
        request_cancel_background_task,
        resume_background_task,
    )

    runtime = configure(max_workers=2, cleanup_timeout_seconds=2.0)
    try:
        agent = CountingAgent()
        executor = SubagentExecutor(agent.config(), tools=agent.tools())  # the default runtime
        task_id = executor.execute_async(TASK)
        assert agent.slow_started.wait(10)
        assert request_cancel_background_task(task_id, "by mistake")
        stopped = runtime.get(task_id)
        assert stopped is not None and stopped.wait(10)
        resumed = resume_background_task(task_id)
        assert resumed.wait(10) and resumed.result == FINAL, resumed.error
        assert agent.calls == {"step1": 1, "step2": 1, "slow": 2}
    finally:
        assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)
