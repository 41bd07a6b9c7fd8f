"""The background tools in real ``create_agent`` leads: ``start_task`` returns at
once, ``check_tasks`` / ``wait_tasks`` report, ``cancel_task`` stops a subtree,
``message_task`` steers a running sub-agent; bad input and limits come back as
ToolMessages; the sync path (``invoke``) does the same as the async one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool

from subagent_exec import (
    SubagentConfig,
    SubagentRuntime,
    SubagentStatus,
    make_background_tools,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

from .background_helpers import (
    call,
    calls,
    lead,
    start,
    started_ids,
    tool_results,
)
from .helpers import SETTLE, reply_graph, terminal, wait_until
from .task_tool_helpers import Recorder, hold_tool, task_call


def _slow_and_fast() -> tuple[SubagentConfig, ScriptedChatModel]:
    model = ScriptedChatModel(
        script={"fast": "fast answer", "slow": "slow answer", "stuck": "never"},
        latency_by_key={"fast": 0.2, "slow": 1.2, "stuck": 30.0},
    )
    return SubagentConfig(name="worker", description="does work", model=model), model


# -- start_task ---------------------------------------------------------------------------


def test_start_task_returns_at_once_while_the_child_runs(runtime: SubagentRuntime) -> None:
    child = ScriptedChatModel(default="slow answer", latency=1.5)
    tools = make_background_tools(
        [SubagentConfig(name="researcher", description="finds facts", model=child)],
        runtime=runtime,
    )
    agent, _ = lead([calls(start("researcher", "Research heat pumps", "heat pumps")),
                     "I started it and carry on."], tools=tools)

    started = time.monotonic()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    elapsed = time.monotonic() - started

    assert result["messages"][-1].text == "I started it and carry on."
    assert elapsed < 1.0, f"the lead waited {elapsed:.2f}s for a background task"
    [message] = tool_results(result, "start_task")
    task_id = message.artifact["task_id"]
    assert message.status == "success" and task_id in message.text
    assert "(researcher: heat pumps)" in message.text and "status: " in message.text
    assert message.artifact["background"] is True
    holder = runtime.get(task_id)
    assert holder is not None and not holder.is_terminal  # outlives the lead's run
    assert holder.background and holder.parent_id is None
    assert holder.thread_id == message.artifact["thread_id"]
    assert terminal(holder).result == "slow answer"


# -- check_tasks and wait_tasks -------------------------------------------------------------


def test_check_tasks_reports_progress_then_the_final_answer(runtime: SubagentRuntime) -> None:
    recorder = Recorder()
    child = ScriptedChatModel(
        script={"survey": [
            AIMessage(content="first notes on the survey",
                      tool_calls=[{"name": "hold", "args": {"label": "s"}, "id": None,
                                   "type": "tool_call"}]),
            "the final survey answer",
        ]}
    )
    hold = hold_tool(recorder, seconds=0.6)
    tools = make_background_tools([SubagentConfig(name="surveyor", model=child, tools=["hold"])],
                                  tools=[hold], runtime=runtime)

    def check_once_it_works(messages: list[BaseMessage]) -> AIMessage:
        [task_id] = started_ids(messages)
        assert recorder.wait_for("hold:s")  # the child is inside its tool call
        holder = runtime.get(task_id)
        assert holder is not None and wait_until(lambda: bool(holder.ai_messages))
        return calls(call("check_tasks"))

    agent, _ = lead([
        calls(start("surveyor", "survey the market", "market survey")),
        check_once_it_works,
        lambda m: calls(call("wait_tasks", mode="all", timeout_seconds=SETTLE)),
        lambda m: calls(call("check_tasks", task_ids=started_ids(m))),
        "done",
    ], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    running, ended = tool_results(result, "check_tasks")
    waited = tool_results(result, "wait_tasks")[0]
    assert "1 background task(s), 1 still running:" in running.text
    assert "(surveyor: market survey): running for" in running.text
    assert "latest message: first notes on the survey" in running.text
    assert running.artifact["tasks"][0]["status"] == "running"
    assert "1 of 1 ended" in waited.text
    assert "completed after" in waited.text and "the final survey answer" in waited.text
    assert ended.artifact["tasks"][0]["result"] == "the final survey answer"
    assert "completed after" in ended.text


def test_wait_tasks_any_all_and_timeout(runtime: SubagentRuntime) -> None:
    config, _ = _slow_and_fast()
    tools = make_background_tools([config], runtime=runtime)
    agent, _ = lead([
        calls(start("worker", "fast job"), start("worker", "slow job"),
              start("worker", "stuck job")),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[:2], mode="any")),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[:2], mode="all")),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[2:], timeout_seconds=0.3)),
        "done",
    ], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    fast, slow, stuck = (tool_results(result, "start_task")[i].artifact["task_id"]
                         for i in range(3))
    any_, all_, timeout = tool_results(result, "wait_tasks")

    assert "(any): 1 of 2 ended." in any_.text and not any_.artifact["timed_out"]
    assert any_.artifact["waited_seconds"] < 1.0  # woken by the fast one, not the slow one
    statuses = {t["task_id"]: t["status"] for t in any_.artifact["tasks"]}
    assert statuses == {fast: "completed", slow: "running"}
    assert "(all): 2 of 2 ended." in all_.text and "slow answer" in all_.text
    assert timeout.artifact["timed_out"] and "timeout passed first" in timeout.text
    assert 0.25 <= timeout.artifact["waited_seconds"] < 2.0
    stuck_holder = runtime.get(stuck)
    assert stuck_holder is not None and stuck_holder.status is SubagentStatus.RUNNING
    assert not stuck_holder.cancel_event.is_set()  # waiting never stops a task


def test_wait_tasks_wakes_on_the_completion_not_on_a_poll(runtime: SubagentRuntime) -> None:
    child = ScriptedChatModel(default="done", latency=0.4)
    tools = make_background_tools([SubagentConfig(name="worker", model=child)], runtime=runtime)
    returned: list[float] = []

    def note_return(messages: list[BaseMessage]) -> str:
        returned.append(time.time())
        return "done"

    agent, _ = lead([calls(start("worker", "job")),
                     calls(call("wait_tasks", timeout_seconds=30)), note_return], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    [task_id] = started_ids(result["messages"])
    holder = terminal(runtime.get(task_id))
    assert holder.completed_at is not None
    # From the child's end to the lead's next model call: a wake-up, not a poll.
    assert returned[0] - holder.completed_at.timestamp() < 0.25


def test_a_cancelled_lead_stops_waiting_at_once_and_leaves_its_tasks_running(
    runtime: SubagentRuntime,
) -> None:
    config, _ = _slow_and_fast()
    tools = make_background_tools([config], runtime=runtime)
    agent, model = lead([calls(start("worker", "stuck job")),
                         calls(call("wait_tasks", timeout_seconds=60)), "never"], tools=tools)

    async def scenario() -> tuple[float, str]:
        run = asyncio.ensure_future(agent.ainvoke({"messages": [("user", "go")]}))
        assert await asyncio.to_thread(wait_until, lambda: model.call_count == 2)
        await asyncio.sleep(0.2)  # inside wait_tasks now
        stuck = next(t for t in runtime.list_tasks() if t.background)
        cancelled_at = time.monotonic()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return time.monotonic() - cancelled_at, stuck.task_id

    took, stuck_id = asyncio.run(scenario())
    assert took < 0.5, f"the lead took {took:.2f}s to stop waiting"
    stuck = runtime.get(stuck_id)
    assert stuck is not None and stuck.status is SubagentStatus.RUNNING
    assert not stuck.cancel_event.is_set()


# -- cancel_task ---------------------------------------------------------------------------


def test_cancel_task_stops_the_subtree_and_reports_the_final_status(
    runtime: SubagentRuntime,
) -> None:
    recorder = Recorder()
    hold = hold_tool(recorder)
    leaf = SubagentConfig(name="leaf", model=ScriptedChatModel(
        default="unused", script={"dig": [tool_call("hold", {"label": "leaf"})]}), tools=["hold"])
    task = make_task_tool([leaf], tools=[hold], runtime=runtime)
    branch = SubagentConfig(
        name="branch", disallowed_tools=(), tools=["task"],
        model=ScriptedChatModel(script={"explore": [calls(task_call("leaf", "dig deep"))]}),
    )
    tools = make_background_tools([branch], tools=[task], runtime=runtime)

    def cancel_once_deep(messages: list[BaseMessage]) -> AIMessage:
        assert recorder.wait_for("hold:leaf")
        return calls(call("cancel_task", task_id=started_ids(messages)[0],
                          reason="no longer needed"))

    agent, _ = lead([calls(start("branch", "explore the topic", "explore")), cancel_once_deep,
                     "done"], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    [answer] = tool_results(result, "cancel_task")
    assert answer.status == "success"
    assert "(branch: explore) cancelled: no longer needed" in answer.text
    assert answer.artifact["status"] == "cancelled"
    assert recorder.seen("cleanup:leaf")  # the grandchild's cleanup ran before the answer
    [branch_id] = started_ids(result["messages"])
    holder = runtime.get(branch_id)
    assert holder is not None
    [leaf_id] = holder.children
    leaf_holder = runtime.get(leaf_id)
    assert leaf_holder is not None and leaf_holder.status is SubagentStatus.CANCELLED
    assert f"ancestor {branch_id} (branch) was cancelled" in (leaf_holder.cancel_reason or "")


# -- message_task --------------------------------------------------------------------------


def test_message_reaches_the_child_before_its_next_model_call(runtime: SubagentRuntime) -> None:
    events: list[dict[str, Any]] = []
    first_call = Recorder()

    def child_reply(messages: list[BaseMessage]) -> str:
        if any("focus on costs" in m.text for m in messages):
            return "revised: costs are falling"
        first_call.note("draft-call")
        return "draft: general overview"

    child = ScriptedChatModel(router=child_reply, latency=0.5)
    tools = make_background_tools([SubagentConfig(name="writer", model=child)],
                                  runtime=runtime, on_event=events.append)

    def steer(messages: list[BaseMessage]) -> AIMessage:
        assert first_call.wait_for("draft-call")  # its first model call is in flight
        return calls(call("message_task", task_id=started_ids(messages)[0],
                          message="Please focus on costs."))

    agent, _ = lead([calls(start("writer", "write an overview")), steer,
                     calls(call("wait_tasks", mode="all", timeout_seconds=SETTLE)), "done"],
                    tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))

    [queued] = tool_results(result, "message_task")
    assert queued.status == "success" and "before its next model call" in queued.text
    [task_id] = started_ids(result["messages"])
    holder = terminal(runtime.get(task_id))
    assert holder.result == "revised: costs are falling"
    # The call in flight was not interrupted: its draft was recorded and the
    # message came in after it, before the second (and last) call.
    assert [m["text"] for m in holder.ai_messages] == [
        "draft: general overview", "revised: costs are falling"
    ]
    first, second = child.calls
    assert not any("focus on costs" in t for t in first.texts)
    assert second.texts[-1].endswith("Please focus on costs.")
    assert second.messages[-1][0] == "human"
    assert wait_until(lambda: any(e["type"] == "task_message_delivered" for e in events))
    delivered = next(e for e in events if e["type"] == "task_message_delivered")
    assert delivered["task_id"] == task_id and delivered["message"] == "Please focus on costs."
    assert delivered["background"] is True


def test_message_task_refusals(make_runtime: Callable[..., SubagentRuntime]) -> None:
    runtime = make_runtime(max_workers=4)
    own_graph = SubagentConfig(name="graph", graph_factory=reply_graph("g", delay=30.0))
    quick = SubagentConfig(name="quick", model=ScriptedChatModel(default="quick answer"))
    tools = make_background_tools([own_graph, quick], runtime=runtime)
    agent, _ = lead([
        calls(start("graph", "custom work"), start("quick", "quick work")),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[1:], mode="all")),
        lambda m: calls(
            call("message_task", task_id=started_ids(m)[0], message="hello"),
            call("message_task", task_id=started_ids(m)[1], message="too late"),
            call("message_task", task_id="f" * 32, message="anyone?"),
        ),
        "done",
    ], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    graph_answer, late, unknown = tool_results(result, "message_task")
    assert all(m.status == "error" for m in (graph_answer, late, unknown))
    assert "runs its own graph (graph_factory)" in graph_answer.text
    assert "has already ended" in late.text and "completed: quick answer" in late.text
    assert unknown.text == (
        f"Error: unknown task id '{'f' * 32}': not a background task of this conversation "
        "(check_tasks lists them)"
    )


# -- bad input and limits ------------------------------------------------------------------------


def test_bad_inputs_come_back_as_tool_messages(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=1, max_pending=0)
    config, _ = _slow_and_fast()
    tools = make_background_tools([config], runtime=runtime)
    agent, _ = lead([
        calls(start("poet", "write"), start("worker", "   "), start("worker", "stuck job"),
              ("start_task", {"prompt": "no type"})),
        calls(start("worker", "slow job")),  # one worker, no waiting room: refused
        calls(call("wait_tasks", mode="some"), call("wait_tasks", timeout_seconds=-1),
              call("wait_tasks", timeout_seconds=99999), call("check_tasks", task_ids=["nope"]),
              call("cancel_task", task_id="nope")),
        "the lead carried on",
    ], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert result["messages"][-1].text == "the lead carried on"
    poet, empty, ok, missing, full = tool_results(result, "start_task")
    assert ok.status == "success"
    assert poet.text == "Error: unknown subagent_type 'poet'; available sub-agents: worker"
    assert "prompt is empty" in empty.text
    assert "invalid arguments" in missing.text and "subagent_type" in missing.text
    assert "could not start sub-agent 'worker'" in full.text and "max_pending=0" in full.text
    mode, negative, huge = tool_results(result, "wait_tasks")
    assert "mode" in mode.text and "'any' or 'all'" in mode.text
    assert "timeout_seconds" in negative.text and "greater than 0" in negative.text
    assert "less than or equal to 3600" in huge.text
    [check] = tool_results(result, "check_tasks")
    assert "nope: unknown task id" in check.text and check.artifact["unknown"] == ["nope"]
    [cancel] = tool_results(result, "cancel_task")
    assert cancel.status == "error" and "unknown task id 'nope'" in cancel.text
    for message in (poet, empty, missing, full, mode, negative, huge, cancel):
        assert message.status == "error", message.text
    assert [h.subagent_name for h in runtime.list_tasks()] == ["worker"]  # only the one started


def test_the_limit_is_per_thread(runtime: SubagentRuntime) -> None:
    config, _ = _slow_and_fast()
    tools = make_background_tools([config], runtime=runtime, max_background_tasks=2)
    agent, _ = lead([calls(start("worker", "stuck one"), start("worker", "stuck two"),
                           start("worker", "stuck three")), "done"], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]},
                                       {"configurable": {"thread_id": "t-limit"}}))
    statuses = sorted(m.status for m in tool_results(result, "start_task"))
    assert statuses == ["error", "success", "success"]
    refused = next(m for m in tool_results(result, "start_task") if m.status == "error")
    assert "already has 2 unfinished background tasks (max_background_tasks=2)" in refused.text
    assert "wait_tasks" in refused.text and "cancel_task" in refused.text
    # Another thread has its own budget.
    other, _ = lead([calls(start("worker", "stuck four")), "done"], tools=tools)
    result = asyncio.run(other.ainvoke({"messages": [("user", "go")]},
                                       {"configurable": {"thread_id": "t-other"}}))
    assert [m.status for m in tool_results(result, "start_task")] == ["success"]
    # A finished task frees its place.
    assert runtime.cancel_thread("t-limit") == 2
    for holder in runtime.list_tasks(thread_id="t-limit"):
        terminal(holder)
    again, _ = lead([calls(start("worker", "fast job")), "done"], tools=tools)
    result = asyncio.run(again.ainvoke({"messages": [("user", "go")]},
                                       {"configurable": {"thread_id": "t-limit"}}))
    assert [m.status for m in tool_results(result, "start_task")] == ["success"]


# -- the sync path -------------------------------------------------------------------------------


def test_every_tool_works_from_a_sync_graph(runtime: SubagentRuntime) -> None:
    first_call = Recorder()

    def child_reply(messages: list[BaseMessage]) -> str:
        if any("stop dawdling" in m.text for m in messages):
            return "steered"
        first_call.note("call")
        return "slow draft"

    model = ScriptedChatModel(
        script={"fast": "fast answer", "stuck": "never"}, router=child_reply,
        latency_by_key={"fast": 0.1, "stuck": 30.0},
    )
    steerable = ScriptedChatModel(router=child_reply, latency=0.4)
    tools = make_background_tools(
        [SubagentConfig(name="worker", model=model),
         SubagentConfig(name="steerable", model=steerable)], runtime=runtime)

    def steer(messages: list[BaseMessage]) -> AIMessage:
        assert first_call.wait_for("call")
        return calls(call("message_task", task_id=started_ids(messages)[2],
                          message="stop dawdling"))

    agent, _ = lead([
        calls(start("worker", "fast job"), start("worker", "stuck job"),
              start("steerable", "steer me")),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[:2], mode="any")),
        steer,
        lambda m: calls(call("cancel_task", task_id=started_ids(m)[1])),
        lambda m: calls(call("wait_tasks", task_ids=started_ids(m)[2:], mode="all")),
        calls(call("check_tasks")),
        "done",
    ], tools=tools)
    result = agent.invoke({"messages": [("user", "go")]})  # sync: every tool's _run

    fast, stuck, steered = started_ids(result["messages"])
    waited_any, waited_all = tool_results(result, "wait_tasks")
    assert "(any): 1 of 2 ended." in waited_any.text
    assert "message(s) waiting" in tool_results(result, "message_task")[0].text
    [cancelled] = tool_results(result, "cancel_task")
    assert "cancelled: cancelled by the lead agent (cancel_task)" in cancelled.text
    assert "1 of 1 ended" in waited_all.text and "steered" in waited_all.text
    [report] = tool_results(result, "check_tasks")
    statuses = {t["task_id"]: t["status"] for t in report.artifact["tasks"]}
    assert statuses == {fast: "completed", stuck: "cancelled", steered: "completed"}
    delivered = {t["task_id"]: t["messages_delivered"] for t in report.artifact["tasks"]}
    assert delivered == {fast: 0, stuck: 0, steered: 1}


# -- construction -------------------------------------------------------------------------------


@tool
async def start_task(x: str) -> str:
    """A tool whose name the background tools need."""
    return x


_CFG = SubagentConfig(name="worker", model=ScriptedChatModel(default="x"))


@pytest.mark.parametrize(
    ("subagents", "kwargs", "error", "message"),
    [
        ([], {}, ValueError, "make_background_tools.subagents: give at least one"),
        (["worker"], {}, TypeError, "must be SubagentConfig"),
        ([_CFG], {"max_background_tasks": 0}, ValueError, "max_background_tasks must be an int"),
        ([_CFG], {"max_background_tasks": "8"}, TypeError, "max_background_tasks must be an int"),
        ([_CFG], {"on_event": 3}, TypeError, "make_background_tools.on_event must be callable"),
        ([_CFG], {"runtime": "rt"}, TypeError, "runtime must be a SubagentRuntime"),
        ([_CFG], {"tools": [start_task]}, ValueError,
         r"already holds tools named \['start_task'\]"),
        ([SubagentConfig(name="w", model="inherit")], {}, ValueError,
         "model='inherit' but no parent_model"),
    ],
)
def test_bad_construction_is_refused(
    subagents: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make_background_tools(subagents, **kwargs)


def test_the_tools_describe_themselves_and_their_arguments() -> None:
    tools = make_background_tools([_CFG])
    assert [t.name for t in tools] == [
        "start_task", "check_tasks", "wait_tasks", "cancel_task", "message_task", "resume_task"
    ]
    args = {t.name: set(t.tool_call_schema.model_json_schema()["properties"]) for t in tools}
    assert args == {
        "start_task": {"description", "prompt", "subagent_type"},
        "check_tasks": {"task_ids"},
        "wait_tasks": {"task_ids", "mode", "timeout_seconds"},
        "cancel_task": {"task_id", "reason"},
        "message_task": {"task_id", "message"},
        "resume_task": {"task_id", "message"},
    }
    assert "- worker: (no description)" in tools[0].description
    assert all(t.runs_on_driver for t in tools)  # type: ignore[attr-defined]


def test_start_task_on_a_shut_down_runtime_says_so(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime()
    runtime.shutdown()
    tools = make_background_tools([_CFG], runtime=runtime)
    agent, _ = lead([calls(start("worker", "job")), "carried on"], tools=tools)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    [message] = tool_results(result, "start_task")
    assert message.status == "error" and "could not start sub-agent 'worker'" in message.text
    assert "shut down" in message.text and result["messages"][-1].text == "carried on"


def test_outside_any_run_the_tools_say_they_need_one(runtime: SubagentRuntime) -> None:
    [start_tool, check, *_] = make_background_tools([_CFG], runtime=runtime)
    for tool_, args in ((check, {}), (start_tool, {"description": "d", "prompt": "p",
                                                    "subagent_type": "worker"})):
        answer = tool_.invoke({"type": "tool_call", "name": tool_.name, "args": args, "id": "c"})
        assert answer.status == "error" and "works only inside a lead agent's run" in answer.text
    assert runtime.list_tasks() == []
