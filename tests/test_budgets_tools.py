"""Budgets of a lead agent's tools: the ``task`` tool's budget per lead run
(through ``make_task_tool`` and ``SubagentMiddleware``), each limit in
parallel siblings, nested delegation drawing on the same meter, background
tasks' budget per thread; and usage over HTTP (``GET /tasks/{id}``, the
terminal event of the stream)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage

from subagent_exec import (
    Budget,
    SubagentMiddleware,
    SubagentRuntime,
    SubagentStatus,
    make_background_tools,
    make_task_tool,
)

from .background_helpers import by_turn, call, calls, start, started_ids, tool_results
from .budget_helpers import PRICES, delegator, lead_reply, lookup, looper, model
from .helpers import SETTLE, terminal, wait_until

MakeRuntime = Callable[..., SubagentRuntime]


def _lead_with(task: Any, child: str, fan_out: int) -> Any:
    lead_model = model(functools.partial(lead_reply, child=child, fan_out=fan_out))
    return create_agent(lead_model, tools=[task])


@pytest.mark.parametrize(
    ("budget", "status", "words"),
    [
        (Budget(max_tokens=1_000, warn_at=None), "failed", "BudgetExceeded: max_tokens "),
        (Budget(max_model_calls=7, warn_at=None), "failed", "BudgetExceeded: max_model_calls "),
        (Budget(max_cost=0.0006, warn_at=None), "failed", "BudgetExceeded: max_cost "),
        (Budget(max_seconds=0.8, warn_at=None), "timed_out", "TimeoutError: max_seconds "),
    ],
)
def test_each_limit_stops_parallel_siblings_through_the_task_tool(
    make_backend_runtime: MakeRuntime, budget: Budget, status: str, words: str
) -> None:
    rt = make_backend_runtime(max_workers=4, price_table=PRICES)
    task = make_task_tool([looper(latency=0.05)], tools=[lookup], runtime=rt, budget=budget)
    out = _lead_with(task, "looper", 3).invoke({"messages": [("user", "go")]})
    answers = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(answers) == 3
    for answer in answers:
        assert answer.artifact["status"] == status, answer.content
        assert answer.artifact["stop_reason"] == "budget"
        assert words in answer.content and "(budget of lead run " in answer.content
        assert "It (with its own sub-agents) used " in answer.content
        # The partial answer: the text of the looper's last message.
        assert "Its partial answer:\nprogress after " in answer.content
    # The lead answered with what it got.
    assert out["messages"][-1].content.startswith("children said: ")


def test_nested_delegation_draws_on_the_same_lead_run_meter(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(max_workers=4, max_depth=3)
    leaf = looper("leaf", latency=0.02)
    middle = delegator("middle", "leaf")
    task = make_task_tool([middle, leaf], tools=[lookup], runtime=rt,
                          budget=Budget(max_tokens=600, warn_at=None))
    out = _lead_with(task, "middle", 2).invoke({"messages": [("user", "go")]})
    [first, second] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    middles = [rt.get(m.artifact["task_id"]) for m in (first, second)]
    leaves = [rt.get(h.children[0]) for h in middles if h is not None]
    assert len(leaves) == 2
    [meter] = middles[0].budgets  # type: ignore[union-attr]
    assert meter.label.startswith("lead run ")
    for holder in [*middles, *leaves]:
        assert holder is not None and holder.budgets == (meter,)  # one meter, not one per level
        assert holder.stop_reason == "budget"
    assert meter.usage.total_tokens == sum(h.tree_usage.total_tokens for h in middles if h)


def test_the_middleware_budget_is_per_lead_run(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(max_workers=4)
    middleware = SubagentMiddleware(
        [looper()], tools=[lookup], runtime=rt, budget=Budget(max_tokens=300, warn_at=None)
    )
    lead_model = model(functools.partial(lead_reply, child="looper", fan_out=1))
    lead = create_agent(lead_model, middleware=[middleware])
    labels = []
    for _ in range(2):  # two runs of the same lead: each has a budget of its own
        out = lead.invoke({"messages": [("user", "go")]})
        [answer] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
        assert "BudgetExceeded: max_tokens 300/300 (budget of lead run run-" in answer.content
        assert answer.artifact["usage"]["total_tokens"] == 300
        labels.append(answer.content.split("(budget of ")[1].split(")")[0])
    assert labels[0] != labels[1]


def test_background_tasks_share_a_budget_per_thread(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(max_workers=4)
    tools = make_background_tools([looper(latency=0.02)], tools=[lookup], runtime=rt,
                                  budget=Budget(max_tokens=800, warn_at=None))

    def wait_for_both(messages: list[Any]) -> Any:
        ids = started_ids(messages)
        return calls(call("wait_tasks", task_ids=ids, mode="all", timeout_seconds=SETTLE))

    lead_model = model(by_turn([
        calls(start("looper", "one"), start("looper", "two")),
        wait_for_both,
        "done",
    ]))
    lead = create_agent(lead_model, tools=tools)
    out = lead.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t1"}})
    [report] = tool_results(out, "wait_tasks")
    assert report.content.count(": BudgetExceeded: max_tokens ") == 2, report.content
    assert report.content.count("Its partial answer:\nprogress after ") == 2
    assert report.content.count("(budget of thread t1)") == 2
    assert "it (with its own sub-agents) used " in report.content
    holders = [rt.get(i) for i in started_ids(out["messages"])]
    assert all(h is not None and h.background and h.stop_reason == "budget" for h in holders)
    used = sum(h.usage.total_tokens for h in holders if h is not None)
    assert 800 <= used <= 800 + 2 * 100
    # Another thread has a budget of its own: its tasks start and run.
    out = lead.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t2"}})
    [report] = tool_results(out, "wait_tasks")
    assert report.content.count("(budget of thread t2)") == 2
    # The spent thread refuses new background work at once.
    again = create_agent(model(by_turn([calls(start("looper", "three")), "done"])), tools=tools)
    out = again.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": "t1"}})
    [refused] = tool_results(out, "start_task")
    assert refused.status == "error" and "nothing is left for another task" in refused.content


def test_usage_over_http(make_runtime: MakeRuntime) -> None:
    from .server_support import LiveServer, make_app, read_until, sse_events

    rt = make_runtime(max_workers=4, price_table=PRICES)
    app, _router = make_app(rt)
    server = LiveServer(app).start()
    try:
        from subagent_exec import SubagentExecutor

        executor = SubagentExecutor(looper(latency=0.05), tools=[lookup], runtime=rt)
        holder = executor.start("look", budget=Budget(max_model_calls=3, warn_at=None))
        with server.client() as client:
            with client.stream("GET", f"/tasks/{holder.task_id}/events") as response:
                events = read_until(sse_events(response), lambda e: e.kind == "failed")
            ai = [e for e in events if e.kind == "ai_message"]
            assert [e.data["data"]["usage"]["model_calls"] for e in ai] == [1, 2, 3]
            ended = events[-1].data
            assert ended["data"]["usage"]["total_tokens"] == 300
            assert ended["data"]["usage"]["cost"] == pytest.approx(300 / 1e6)
            assert ended["outcome"]["stop_reason"] == "budget"
            body = client.get(f"/tasks/{holder.task_id}").json()
        assert body["usage"] == {
            "input_tokens": 300, "output_tokens": 0, "total_tokens": 300,
            "cache_read_tokens": 0, "model_calls": 3, "cost": pytest.approx(300 / 1e6),
            "usage_reported": True, "unreported_calls": 0,
        }
        assert body["tree_usage"]["total_tokens"] == 300
        assert body["stop_reason"] == "budget" and body["status"] == "failed"
        json.dumps(body)  # JSON all the way
    finally:
        server.stop()
    terminal(holder)
    assert wait_until(lambda: holder.status is SubagentStatus.FAILED)
