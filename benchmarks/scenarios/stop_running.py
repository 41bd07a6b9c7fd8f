"""Scenario 1: stop latency of a RUNNING sub-agent in a long await.

From ``request_cancel`` to the status being terminal (the
moment ``SubagentResult.wait()`` returns in the caller). The sub-agent is a
real ``create_agent`` agent inside a long model call (ScriptedChatModel,
latency really awaited) or a long async tool call. The stop is issued at a
random point shortly after the call was entered.

Baseline, same run: :class:`CooperativeFlagExecutor` (a flag checked only
between ``astream`` chunks) on the same agent; its stop has to wait for the
rest of the step.
"""

from __future__ import annotations

import random
import threading
import time

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
)

from ..agents import EntryProbe, slow_model, slow_tool, tool_calling_model
from ..baseline import CooperativeFlagExecutor, FlagTask
from ..core import Figure, Options, ScenarioResult, Target, median, ms, wait_event

NAME = "stop_running"
TITLE = "1. stop a RUNNING sub-agent"


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    trials = 30 if quick else 200
    baseline_trials = 8 if quick else 40
    step_seconds = 0.5 if quick else 2.0
    offset = (0.002, 0.05) if quick else (0.002, 0.1)
    rng = random.Random(options.seed)
    result = ScenarioResult(
        NAME,
        TITLE,
        params={
            "trials_per_kind": trials,
            "baseline_trials": baseline_trials,
            "step_seconds": step_seconds,
            "stop_issued_after_entry_s": offset,
        },
    )

    model_probe = EntryProbe()
    tool_probe = EntryProbe()
    from langchain.agents import create_agent  # heavy import, kept local

    with SubagentRuntime(max_workers=4, name="bench-stop") as runtime:
        model_agent = SubagentExecutor(
            SubagentConfig(name="slow-model", model=slow_model(model_probe, step_seconds)),
            runtime=runtime,
        )
        tool_model = tool_calling_model("slow_lookup")
        tool_agent = SubagentExecutor(
            SubagentConfig(name="slow-tool", model=tool_model, tools=["slow_lookup"]),
            tools=[slow_tool(tool_probe, step_seconds)],
            runtime=runtime,
        )
        kinds = [("model call", model_agent, model_probe), ("tool call", tool_agent, tool_probe)]
        latencies: dict[str, list[float]] = {kind: [] for kind, _, _ in kinds}
        wrong: list[str] = []
        for trial in range(trials):
            for kind, executor, probe in kinds:
                task = f"stop-{kind}-{trial}"
                task_id = executor.execute_async(task)
                holder = runtime.get(task_id)
                assert holder is not None
                wait_event(probe.event(task), 10.0, f"{task} to enter its await")
                time.sleep(rng.uniform(*offset))
                started = time.perf_counter()
                runtime.request_cancel(task_id, "benchmark stop")
                holder.wait()
                latencies[kind].append(ms(time.perf_counter() - started))
                if holder.status is not SubagentStatus.CANCELLED:
                    wrong.append(f"{task}: {holder.status.value}")
                runtime.cleanup(task_id)
                probe.forget(task)

    for kind, samples in latencies.items():
        result.add(
            Figure(
                f"stop latency, in a {kind}",
                "ms",
                samples=samples,
                target=Target("p99", "<", 10.0),
                note=f"{step_seconds:g} s {kind}, request -> CANCELLED",
            )
        )
    result.add(
        Figure(
            "tasks not CANCELLED",
            "count",
            value=float(len(wrong)),
            target=Target("value", "==", 0),
            note="; ".join(wrong[:5]),
        )
    )

    baseline_probe = EntryProbe()
    baseline = CooperativeFlagExecutor(
        lambda: create_agent(slow_model(baseline_probe, step_seconds), tools=[])
    )
    baseline_samples = _run_baseline(baseline, baseline_probe, baseline_trials, offset, rng)
    result.add(
        Figure(
            "baseline: flag checked between chunks",
            "ms",
            samples=baseline_samples,
            note=f"same agent, {step_seconds:g} s model call; waits for the rest of the step",
        )
    )
    ours = latencies["model call"]
    if ours and baseline_samples:
        result.add(
            Figure(
                "baseline / executor (medians)",
                "ratio",
                value=median(baseline_samples) / median(ours),
                note="how many times sooner a stop takes effect",
            )
        )
    return result


def _run_baseline(
    baseline: CooperativeFlagExecutor,
    probe: EntryProbe,
    trials: int,
    offset: tuple[float, float],
    rng: random.Random,
) -> list[float]:
    """Baseline trials run side by side (each waits out a whole step, so
    running them one after another would only cost time), each timed by its
    own controller thread."""
    samples: list[float] = []
    lock = threading.Lock()
    delays = [rng.uniform(*offset) for _ in range(trials)]

    def control(flag_task: FlagTask, delay: float) -> None:
        wait_event(probe.event(flag_task.task), 30.0, f"{flag_task.task} to enter its await")
        time.sleep(delay)
        started = time.perf_counter()
        flag_task.request_stop()
        flag_task.done.wait()
        with lock:
            samples.append(ms(time.perf_counter() - started))

    controllers = []
    for trial, delay in enumerate(delays):
        flag_task = baseline.submit(f"baseline-{trial}")
        controller = threading.Thread(target=control, args=(flag_task, delay), daemon=True)
        controller.start()
        controllers.append(controller)
    for controller in controllers:
        controller.join(60.0)
    baseline.join()
    return samples
