"""Budgets in the runtime, on both backends: usage sums per task and per tree
(forgotten descendants included), each limit reached at depth 1 and 3 and in
parallel siblings, the stop (FAILED, ``stop_reason="budget"``, the partial
answer, the cascade to everything drawing on the budget), ``max_seconds``
(TIMED_OUT), the overshoot bound, the warning (one event, one note), unknown
prices refused, and the events and results that carry usage."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from subagent_exec import (
    Budget,
    BudgetExceeded,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
    TaskEvent,
    UnknownTaskError,
    UnpricedModelError,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel

from .budget_helpers import (
    MODEL,
    NOTE_WORDS,
    PRICES,
    WARNED_ANSWER,
    delegator,
    finisher,
    lookup,
    looper,
)
from .helpers import SETTLE, terminal, wait_until

MakeRuntime = Callable[..., SubagentRuntime]
ERROR = re.compile(
    r"BudgetExceeded: (max_tokens|max_model_calls|max_cost) ([\d.]+)/([\d.]+) "
    r"\(budget of (task [0-9a-f]{32} \(\w+\)|lead run [\w-]+)\)"
)


def _events(rt: SubagentRuntime) -> list[TaskEvent]:
    seen: list[TaskEvent] = []
    rt.subscribe(seen.append)
    return seen


def _tree(rt: SubagentRuntime, root: SubagentResult) -> list[SubagentResult]:
    """``root`` and every descendant still registered, parents first."""
    found, stack = [], [root]
    while stack:
        holder = stack.pop(0)
        found.append(holder)
        stack += [h for h in rt.list_tasks(parent_id=holder.task_id)]
    return found


# -- usage sums --------------------------------------------------------------------------------


def test_usage_per_task_and_per_tree(make_backend_runtime: MakeRuntime) -> None:
    rt = make_backend_runtime(max_workers=4, max_depth=3, price_table=PRICES)
    leaf = finisher("leaf", tokens=1000, turns=1)
    middle = delegator("middle", "leaf", tokens=100)
    root = delegator("root", "middle", tokens=10, fan_out=2)
    task = make_task_tool([middle, leaf], tools=[lookup], runtime=rt)
    executor = SubagentExecutor(root, tools=[task], runtime=rt)
    holder = terminal(executor.start("the whole job"), SETTLE * 2)
    assert holder.status is SubagentStatus.COMPLETED, holder.error
    assert holder.usage.model_calls == 2 and holder.usage.total_tokens == 20
    middles = [rt.get(i) for i in holder.children]
    assert len(middles) == 2
    for child in middles:
        assert child is not None
        assert child.usage.total_tokens == 200 and child.usage.model_calls == 2
        assert child.tree_usage.total_tokens == 1200 and child.tree_usage.model_calls == 3
        [grandchild] = [rt.get(i) for i in child.children]
        assert grandchild is not None and grandchild.usage == grandchild.tree_usage
        assert grandchild.usage.total_tokens == 1000
    total = rt.tree_usage(holder.task_id)
    assert total.total_tokens == 20 + 2 * 1200
    assert total.model_calls == 2 + 2 * 3
    assert total.usage_reported
    assert total.cost == pytest.approx(2420 / 1e6)
    assert holder.to_dict()["tree_usage"]["total_tokens"] == 2420
    assert holder.to_dict()["usage"]["model_calls"] == 2


def test_usage_of_forgotten_descendants_still_counts(make_runtime: MakeRuntime) -> None:
    # retain_max=0: each task is forgotten as soon as it ends.
    rt = make_runtime(max_workers=4, retain_max=0)
    leaf = finisher("leaf", tokens=1000, turns=2)
    root = delegator("root", "leaf", tokens=1, fan_out=3, latency=0.4)
    task = make_task_tool([leaf], tools=[lookup], runtime=rt)
    holder = SubagentExecutor(root, tools=[task], runtime=rt).start("job")
    # While the root makes its last (slow) call, its children are over and forgotten.
    assert wait_until(lambda: len(holder.children) == 3
                      and all(rt.get(c) is None for c in holder.children), SETTLE)
    assert wait_until(lambda: rt.tree_usage(holder.task_id).model_calls >= 7)
    assert rt.tree_usage(holder.task_id).total_tokens == 1 + 3 * 2000
    terminal(holder)
    assert holder.tree_usage.total_tokens == 2 + 3 * 2000  # kept on the holder too
    with pytest.raises(UnknownTaskError):
        rt.tree_usage(holder.task_id)  # forgotten itself now


def test_a_model_that_reports_no_usage_counts_calls_only(make_runtime: MakeRuntime) -> None:
    from subagent_exec import SubagentConfig
    from subagent_exec.testing import ScriptedChatModel

    rt = make_runtime(price_table=PRICES)
    config = SubagentConfig(name="quiet", model=ScriptedChatModel(default="hi", model_name=MODEL))
    holder = SubagentExecutor(config, runtime=rt).execute("say hi")
    assert holder.usage.model_calls == 1 and holder.usage.total_tokens == 0
    assert not holder.usage.usage_reported and holder.usage.cost is None
    assert holder.to_dict()["usage"]["usage_reported"] is False


# -- each limit, at depth 1 (execute_async) --------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "limit", "calls"),
    [
        (Budget(max_tokens=350, warn_at=None), "max_tokens", 4),  # 400 > 350 after the 4th
        (Budget(max_model_calls=3, warn_at=None), "max_model_calls", 3),
        (Budget(max_cost=0.00025, warn_at=None), "max_cost", 3),  # 300e-6 > 250e-6
    ],
)
def test_a_limit_stops_a_task_started_with_execute_async(
    make_backend_runtime: MakeRuntime, budget: Budget, limit: str, calls: int
) -> None:
    rt = make_backend_runtime(price_table=PRICES)
    executor = SubagentExecutor(looper(tokens=100), tools=[lookup], runtime=rt)
    task_id = executor.execute_async("look things up", budget=budget)
    holder = terminal(rt.get(task_id), SETTLE * 2)
    assert holder.status is SubagentStatus.FAILED
    assert holder.stop_reason == "budget"
    match = ERROR.fullmatch(holder.error or "")
    assert match is not None, holder.error
    assert match.group(1) == limit
    assert match.group(4) == f"task {task_id} (looper)"
    assert holder.usage.model_calls == calls
    # The partial answer is kept: the text of its last message.
    assert holder.result == f"progress after {calls - 1} lookups"


def test_max_seconds_times_out_a_task(make_backend_runtime: MakeRuntime) -> None:
    rt = make_backend_runtime()
    executor = SubagentExecutor(looper(latency=0.05), tools=[lookup], runtime=rt)
    started = time.monotonic()
    task_id = executor.execute_async("look", budget=Budget(max_seconds=0.6, warn_at=None))
    holder = terminal(rt.get(task_id), SETTLE * 2)
    assert holder.status is SubagentStatus.TIMED_OUT
    assert holder.stop_reason == "budget"
    assert re.fullmatch(r"TimeoutError: max_seconds [\d.]+/0\.6 \(budget of task \w{32} "
                        r"\(looper\)\)", holder.error or ""), holder.error
    assert 0.55 < time.monotonic() - started < 0.6 + SETTLE


def test_a_call_in_flight_is_not_cut_off_overshoot_is_one_call(
    make_backend_runtime: MakeRuntime,
) -> None:
    rt = make_backend_runtime()
    executor = SubagentExecutor(looper(tokens=100, latency=0.1), tools=[lookup], runtime=rt)
    holder = executor.execute("look", budget=Budget(max_tokens=150, warn_at=None))
    # The 2nd call crossed the limit: it ran to its end, its message is
    # recorded and counted, and nothing ran after it.
    assert holder.stop_reason == "budget"
    assert holder.usage.model_calls == 2 and holder.usage.total_tokens == 200
    assert len(holder.ai_messages) == 2
    assert holder.error == (f"BudgetExceeded: max_tokens 200/150 (budget of task "
                            f"{holder.task_id} (looper))")


def test_landing_on_a_limit_completes_the_last_call(make_backend_runtime: MakeRuntime) -> None:
    rt = make_backend_runtime()
    executor = SubagentExecutor(finisher(tokens=100, turns=3), tools=[lookup], runtime=rt)
    holder = executor.execute("answer", budget=Budget(max_model_calls=3, max_tokens=300))
    assert holder.status is SubagentStatus.COMPLETED, holder.error
    assert holder.result == "answer after 3 calls"


# -- depth 3: a budget on the root stops the whole tree --------------------------------------


@pytest.mark.parametrize(
    ("budget", "status"),
    [
        (Budget(max_tokens=2_000, warn_at=None), SubagentStatus.FAILED),
        (Budget(max_model_calls=8, warn_at=None), SubagentStatus.FAILED),
        (Budget(max_cost=0.002, warn_at=None), SubagentStatus.FAILED),
        (Budget(max_seconds=1.0, warn_at=None), SubagentStatus.TIMED_OUT),
    ],
)
def test_a_root_budget_stops_the_whole_tree_from_depth_3(
    make_backend_runtime: MakeRuntime, budget: Budget, status: SubagentStatus
) -> None:
    rt = make_backend_runtime(max_workers=4, max_depth=3, price_table=PRICES)
    leaf = looper("leaf", tokens=300, latency=0.05)
    middle = delegator("middle", "leaf", tokens=10)
    root = delegator("root", "middle", tokens=10, budget=budget)
    task = make_task_tool([middle, leaf], tools=[lookup], runtime=rt)
    holder = SubagentExecutor(root, tools=[task], runtime=rt).start("job")
    terminal(holder, SETTLE * 3)
    tree = _tree(rt, holder)
    assert [h.subagent_name for h in tree] == ["root", "middle", "leaf"]
    for member in tree:
        terminal(member)
        assert member.status is status, (member, member.error)
        assert member.stop_reason == "budget"
        assert f"(budget of task {holder.task_id} (root))" in (member.error or "")
    if status is SubagentStatus.FAILED:
        assert ERROR.fullmatch(holder.error or ""), holder.error
        used = rt.tree_usage(holder.task_id) if rt.get(holder.task_id) else holder.tree_usage
        assert used.total_tokens <= 2_000 + 300 or budget.max_tokens is None


# -- parallel siblings, through the task tool -----------------------------------------------------


def _lead(rt: SubagentRuntime, budget: Budget, fan_out: int, child: Any) -> Any:
    import functools

    from langchain.agents import create_agent

    from .budget_helpers import lead_reply, model

    task = make_task_tool([child], tools=[lookup], runtime=rt, budget=budget)
    lead_model = model(functools.partial(lead_reply, child=child.name, fan_out=fan_out))
    return create_agent(lead_model, tools=[task])


def test_a_lead_run_budget_stops_parallel_siblings_and_the_lead_still_answers(
    make_backend_runtime: MakeRuntime,
) -> None:
    rt = make_backend_runtime(max_workers=4)
    events = _events(rt)
    lead = _lead(rt, Budget(max_tokens=1_000, warn_at=None), 3, looper(tokens=100, latency=0.02))
    out = lead.invoke({"messages": [("user", "research")]})
    answers = [m for m in out["messages"] if m.type == "tool"]
    assert len(answers) == 3
    for answer in answers:
        assert answer.status == "error"
        assert "was stopped by its budget: BudgetExceeded: max_tokens" in answer.content
        assert "(budget of lead run " in answer.content
        assert "It (with its own sub-agents) used " in answer.content
        assert answer.artifact["stop_reason"] == "budget"
        assert answer.artifact["status"] == "failed"
        assert answer.artifact["usage"]["model_calls"] >= 1
    assert out["messages"][-1].content.startswith("children said: ")
    holders = [rt.get(a.artifact["task_id"]) for a in answers]
    errors = {h.error for h in holders if h is not None}
    assert len(errors) == 1  # the one overrun, the same for all three
    used = sum(h.usage.total_tokens for h in holders if h is not None)
    # Overshoot: at most one model call per running task past the limit.
    assert 1_000 <= used <= 1_000 + 3 * 100
    assert wait_until(lambda: sum(1 for e in events if e.kind == "failed") == 3)
    for event in events:
        if event.kind == "failed":
            assert event.data["usage"]["total_tokens"] >= 100
            assert "tree_usage" in event.data


def test_a_spent_lead_run_budget_refuses_the_next_delegation(make_runtime: MakeRuntime) -> None:
    from langchain.agents import create_agent
    from langchain_core.messages import ToolMessage

    from subagent_exec.testing import tool_call

    from .budget_helpers import model

    rt = make_runtime()

    def twice(messages: list[Any]) -> Any:
        answers = [m for m in messages if isinstance(m, ToolMessage)]
        if len(answers) < 2:
            return tool_call("task", {"description": "x", "prompt": f"try {len(answers)}",
                                      "subagent_type": "looper"})
        return "\n---\n".join(str(a.content) for a in answers)

    task = make_task_tool([looper(tokens=100)], tools=[lookup], runtime=rt,
                          budget=Budget(max_tokens=250, warn_at=None))
    out = create_agent(model(twice), tools=[task]).invoke({"messages": [("user", "go")]})
    first, second = out["messages"][-1].content.split("\n---\n")
    assert "was stopped by its budget" in first
    assert second.startswith("Error: could not start sub-agent 'looper': max_tokens 300/250")
    assert "nothing is left for another task" in second


# -- the warning --------------------------------------------------------------------------------


def test_the_warning_comes_once_as_an_event_and_once_as_a_note(
    make_backend_runtime: MakeRuntime,
) -> None:
    rt = make_backend_runtime()
    events = _events(rt)
    executor = SubagentExecutor(looper(tokens=100, heed=True), tools=[lookup], runtime=rt)
    # After 5 calls (500 tokens) the note is sent; the next call heeds it and
    # answers. On Ray the note travels from the driver to the worker while the
    # run goes on, so a fast run may read it some calls later (docs/budgets.md):
    # there the budget leaves room for that on a loaded machine.
    on_ray = rt.backend.name == "ray"
    allowed, warn_at, percent = (10_000, 0.05, 5) if on_ray else (1_000, 0.5, 50)
    holder = executor.execute("look", budget=Budget(max_tokens=allowed, warn_at=warn_at))
    assert holder.status is SubagentStatus.COMPLETED, holder.error
    assert holder.result == WARNED_ANSWER
    if on_ray:
        assert 6 <= holder.usage.model_calls < 100
    else:
        assert holder.usage.model_calls == 6
    assert wait_until(lambda: any(e.is_terminal for e in events))
    warnings = [e for e in events if e.kind == "budget_warning"]
    assert len(warnings) == 1
    data = warnings[0].data
    assert data["limit"] == "max_tokens" and data["used"] == 500 and data["allowed"] == allowed
    assert data["note"] == (
        f"You have used {percent}% of your token budget: finish with what you have."
    )
    assert data["budget_of"] == f"task {holder.task_id} (looper)"


def test_warnings_can_be_turned_off(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    events = _events(rt)
    executor = SubagentExecutor(looper(tokens=100, heed=True), tools=[lookup], runtime=rt)
    holder = executor.execute("look", budget=Budget(max_tokens=500, warn_at=None))
    assert holder.stop_reason == "budget"  # it never heard it should finish
    assert wait_until(lambda: any(e.is_terminal for e in events))
    assert [e for e in events if e.kind == "budget_warning"] == []


def test_every_running_task_on_the_budget_gets_the_note(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(max_workers=4)
    events = _events(rt)
    # Warns at 1,000 tokens: after 10 calls of 100, whoever makes them.
    shared = rt.open_budget(Budget(max_tokens=100_000, warn_at=0.01), label="the job")
    config = looper(tokens=100, heed=True, latency=0.05)
    executor = SubagentExecutor(config, tools=[lookup], runtime=rt)
    holders = [executor.start(f"part {i}", draw_on=[shared]) for i in range(3)]
    for holder in holders:
        terminal(holder, SETTLE * 2)
        assert holder.result == WARNED_ANSWER, (holder.status, holder.error)
    assert wait_until(lambda: sum(1 for e in events if e.is_terminal) == 3)
    assert len([e for e in events if e.kind == "budget_warning"]) == 1
    # Each task read the note once, in the call that answered; none after it.
    assert isinstance(config.model, ScriptedChatModel)
    noted = [c for c in config.model.calls if any(NOTE_WORDS in t for t in c.texts)]
    assert sorted(c.task for c in noted) == ["part 0", "part 1", "part 2"]
    assert all(sum(NOTE_WORDS in t for t in c.texts) == 1 for c in noted)
    # 10 calls to the warning, at most one in flight each, then one that heeds it.
    assert 10 + 3 <= shared.usage.model_calls <= 10 + 2 * 3


# -- prices -------------------------------------------------------------------------------------


def test_max_cost_with_an_unpriced_model_is_refused_at_submission(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(price_table={"other-model": (1.0, 1.0)})
    executor = SubagentExecutor(looper(), tools=[lookup], runtime=rt)
    with pytest.raises(UnpricedModelError, match=rf"model '{MODEL}': it has no price"):
        executor.execute_async("look", budget=Budget(max_cost=1.0))
    assert rt.list_tasks() == []  # nothing registered
    with pytest.raises(ValueError, match="price_table"):
        executor.execute("look", budget=Budget(max_cost=1.0))
    # A price on the budget itself is enough.
    ok = Budget(max_cost=0.00015, price_table=PRICES, warn_at=None)
    holder = executor.execute("look", budget=ok)
    assert holder.stop_reason == "budget" and "max_cost 0.0002/0.00015" in (holder.error or "")
    assert holder.usage.cost == pytest.approx(200 / 1e6)


def test_an_unpriced_model_known_only_at_its_call_is_stopped_there(
    make_backend_runtime: MakeRuntime,
) -> None:
    import functools

    from subagent_exec import SubagentConfig
    from subagent_exec.testing import ScriptedChatModel

    from .budget_helpers import loop_reply

    rt = make_backend_runtime(price_table={"other-model": (1.0, 1.0)})
    # A factory: its model's name is not known before the run.
    config = SubagentConfig(
        name="factory",
        model=functools.partial(ScriptedChatModel, model_name=MODEL,
                                router=functools.partial(loop_reply, tokens=100)),
        tools=["lookup"],
    )
    holder = SubagentExecutor(config, tools=[lookup], runtime=rt).execute(
        "look", budget=Budget(max_cost=1.0)
    )
    assert holder.status is SubagentStatus.FAILED and holder.stop_reason == "budget"
    assert (holder.error or "").startswith(
        f"UnpricedModelError: max_cost=1 cannot count calls of model '{MODEL}'"
    )
    # Thread backend: refused at the call's entry; Ray: after its first call.
    assert holder.usage.model_calls <= 1


def test_runtime_price_table_is_validated(make_runtime: MakeRuntime) -> None:
    with pytest.raises(TypeError, match=r"SubagentRuntime\.price_table"):
        make_runtime(price_table=[("m", (1, 2))])
    with pytest.raises(ValueError, match=r"SubagentRuntime\.price_table"):
        make_runtime(price_table={"m": (-1, 2)})
    rt = make_runtime(price_table={"m": [1, 2]})
    assert rt.price_table == {"m": (1.0, 2.0)}


# -- attaching ----------------------------------------------------------------------------------


def test_a_task_draws_on_every_budget_above_it(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(max_depth=3)
    shared = rt.open_budget(Budget(max_tokens=10**6), label="the job")
    leaf = looper("leaf", budget=Budget(max_model_calls=50))
    root = delegator("root", "leaf", budget=Budget(max_tokens=10**5))
    task = make_task_tool([leaf], tools=[lookup], runtime=rt)
    holder = SubagentExecutor(root, tools=[task], runtime=rt).start(
        "job", budget=Budget(max_seconds=60), draw_on=[shared]
    )
    assert wait_until(lambda: bool(holder.children) and rt.get(holder.children[0]) is not None)
    child_id = holder.children[0]
    root_meters = holder.budgets
    # Its own (config's, then the call's), then what it was given.
    assert [m.budget for m in root_meters] == [root.budget, Budget(max_seconds=60),
                                               shared.budget]
    assert root_meters[2] is shared
    child = rt.get(child_id)
    assert child is not None
    child_meters = child.budgets
    assert child_meters[0].budget == leaf.budget
    assert child_meters[1:] == root_meters
    terminal(holder, SETTLE * 3)
    # The leaf's own budget (50 calls) was the smallest remainder: spent, it
    # stops what draws on it (the leaf); the root goes on with the answer.
    assert child.stop_reason == "budget"
    assert child.error == (
        f"BudgetExceeded: max_model_calls 50/50 (budget of task {child_id} (leaf))"
    )
    assert holder.status is SubagentStatus.COMPLETED
    assert "was stopped by its budget" in (holder.result or "")
    assert shared.usage.model_calls == holder.tree_usage.model_calls == 52


def test_bad_budget_arguments_are_refused(make_runtime: MakeRuntime) -> None:
    from subagent_exec import SubagentConfig

    rt = make_runtime()
    with pytest.raises(TypeError, match=r"SubagentConfig\.budget"):
        SubagentConfig(name="x", model="openai:gpt-4o", budget={"max_tokens": 5})  # type: ignore[arg-type]
    executor = SubagentExecutor(looper(), tools=[lookup], runtime=rt)
    with pytest.raises(TypeError, match=r"budget"):
        executor.execute_async("x", budget=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"draw_on"):
        executor.start("x", draw_on=[Budget(max_tokens=5)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"make_task_tool\.budget"):
        make_task_tool([looper()], budget=100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"open_budget\.label"):
        rt.open_budget(Budget(max_tokens=5), label=" ")
    with pytest.raises(TypeError, match=r"open_budget\.budgets"):
        rt.open_budget("lots", label="x")  # type: ignore[arg-type]
    assert rt.list_tasks() == []


def test_a_spent_shared_budget_refuses_new_tasks(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    shared = rt.open_budget(Budget(max_tokens=150, warn_at=None), label="the job")
    executor = SubagentExecutor(looper(), tools=[lookup], runtime=rt)
    holder = terminal(executor.start("look", draw_on=[shared]))
    assert holder.stop_reason == "budget"
    with pytest.raises(BudgetExceeded, match=r"max_tokens 200/150 .*nothing is left"):
        executor.start("look again", draw_on=[shared])
    assert shared.spent is not None and shared.remaining()["max_tokens"] == 0

