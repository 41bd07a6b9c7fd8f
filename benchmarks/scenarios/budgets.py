"""Scenario 14: what metering and budgets cost a dispatch (issue 15).

Trivial sub-agents (``create_agent`` over a ScriptedChatModel that answers at
once, reporting its usage) run one after the other through
``SubagentExecutor.execute``, in three variants that alternate within every
round, so machine noise hits them alike:

* **usage only**: no budget; the call's usage is still counted on the task
  (what every task pays now);
* **budget**: ``execute(..., budget=Budget(max_tokens=..., warn_at=None))``:
  a meter opened per task, checked at the model call's entry and charged
  after it;
* **budget that warns**: the same with ``warn_at=0.8``: the built-in agent
  also gets the hook that delivers budget notes (one more graph step per
  model call).

The ratio of medians to "usage only" is the overhead of metering with a
budget attached (target: within the noise, <= 3 %). What counting usage
costs against the engine without it is measured across revisions (the A/B
in docs/performance.md, "Budgets").
"""

from __future__ import annotations

import time

from langchain_core.messages import AIMessage

from subagent_exec import (
    Budget,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
)
from subagent_exec.testing import ScriptedChatModel

from ..core import Figure, Options, ScenarioResult, Target, median

NAME = "budgets"
TITLE = "14. metering and budgets: dispatch overhead"

#: Large enough never to be reached: the scenario measures the checks, not a stop.
NEVER_REACHED = Budget(max_tokens=10**12, max_model_calls=10**9, warn_at=None)
NEVER_REACHED_WARNS = Budget(max_tokens=10**12, max_model_calls=10**9, warn_at=0.8)


def run(options: Options) -> ScenarioResult:
    rounds = 4 if options.quick else 10
    per_round = 25 if options.quick else 100
    result = ScenarioResult(NAME, TITLE, params={"rounds": rounds, "tasks_per_round": per_round})
    reply = AIMessage(content="done", usage_metadata={
        "input_tokens": 12, "output_tokens": 3, "total_tokens": 15})
    model = ScriptedChatModel(default="done", router=lambda messages: reply, model_name="m")
    variants: dict[str, Budget | None] = {
        "usage only": None,
        "budget": NEVER_REACHED,
        "budget that warns": NEVER_REACHED_WARNS,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with SubagentRuntime(max_workers=8, name="bench-budgets",
                         price_table={"m": (1.0, 2.0)}) as runtime:
        executor = SubagentExecutor(SubagentConfig(name="trivial", model=model), runtime=runtime)
        for budget in variants.values():  # warm-up: imports, caches, compiled agents
            _through_executor(executor, 10, [], budget)
        for index in range(rounds):
            # A different order each round: none always runs first.
            order = list(variants.items())
            order = order[index % len(order):] + order[: index % len(order)]
            for name, budget in order:
                _through_executor(executor, per_round, samples[name], budget)

    base = median(samples["usage only"])
    for name, values in samples.items():
        result.add(Figure(f"execute(), {name}", "µs", samples=[s * 1e6 for s in values]))
    result.add(
        Figure(
            "budget / usage only (medians)",
            "ratio",
            value=median(samples["budget"]) / base,
            target=Target("value", "<=", 1.03),
            note="a meter per task: checked at the model call's entry, charged after it",
        )
    )
    result.add(
        Figure(
            "budget that warns / usage only (medians)",
            "ratio",
            value=median(samples["budget that warns"]) / base,
            note="plus the notes hook: one more graph step per model call",
        )
    )
    return result


def _through_executor(
    executor: SubagentExecutor, count: int, into: list[float], budget: Budget | None
) -> None:
    runtime = executor.runtime
    for i in range(count):
        started = time.perf_counter()
        holder = executor.execute(f"trivial {i}", budget=budget)
        into.append(time.perf_counter() - started)
        if holder.status is not SubagentStatus.COMPLETED or holder.usage.total_tokens != 15:
            raise RuntimeError(f"a trivial sub-agent ended {holder.status.value}: {holder.error}")
        runtime.cleanup(holder.task_id)
