"""The offline demo (``make demo`` / ``python -m subagent_exec.demo``).

Three runs of the bundled lead agent (:mod:`subagent_exec.demo_agents`) share
one runtime. Each lead delegates through its ``task`` tool to two
researchers in parallel, each researcher to a fact-checker, then to a
writer: every sub-agent on its own event loop, scripted fake models whose
calls really await (no API key, no network). The first lead also starts a
news scout in the background (``start_task``) and works on; the scout's
findings are pushed into its turns when they arrive. The tree is shown live
with statuses and elapsed times. Mid-way the "user" stops one researcher of
the first run (its lead gets a "cancelled" tool result and carries on) and
then the whole second run (every descendant stops), and then resumes the
second run's lead, which goes on from its last completed step
(docs/resume.md). The third run has a budget of :data:`RUN_C_TOKENS` tokens
for itself and everything it delegates: when its tree has used them up, every
task of it still running is stopped (FAILED, ``stop_reason="budget"``). Final
statuses, timings and what each run used (tokens, and cost at the demo's
made-up prices) are printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from ._budget import Budget
from ._config import SubagentConfig
from ._display import LiveTree
from ._display_text import name_task_ids, task_ref
from ._executor import SubagentExecutor
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus
from .demo_agents import DEMO_PRICES, build_demo_lead_agent

QUESTIONS = (
    "Compare solid-state batteries and heat pumps for a short briefing.",
    "Summarise the state of grid-scale storage for a short briefing.",
    "Summarise offshore wind for a short briefing.",
)
#: Run C's budget: a whole run takes about 2,100 tokens, so it stops mid-way.
RUN_C_TOKENS = 900


def _lead_config(
    runtime: SubagentRuntime, speed: float, background: bool, budget: Budget | None = None
) -> SubagentConfig:
    # The lead agent itself runs as a root task, so its task-tool children
    # become its children in the tree and one stop reaches all of them; a
    # budget on it counts the lead's own model calls and all of theirs.
    return SubagentConfig(
        name="lead-agent",
        graph_factory=lambda: build_demo_lead_agent(runtime, speed=speed, background=background),
        timeout_seconds=120,
        budget=budget,
    )


def _start_run(executor: SubagentExecutor, question: str) -> str:
    """Start one lead; its run is its own thread, so its background news scout
    (a root task) is shown with it and ``cancel_thread`` would reach it."""
    task_id = uuid.uuid4().hex
    return executor.start(question, task_id=task_id, thread_id=task_id).task_id


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _descendants(runtime: SubagentRuntime, root: SubagentResult) -> list[SubagentResult]:
    found, stack = [], list(root.children)
    while stack:
        holder = runtime.get(stack.pop())
        if holder is not None:
            found.append(holder)
            stack.extend(holder.children)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="subagent-exec offline demo")
    parser.add_argument("--speed", type=float, default=1.0, help="latency scale (1.0 = ~6 s)")
    parser.add_argument(
        "--stop-at",
        type=float,
        default=1.5,
        help="when the first stop happens, in seconds at speed 1.0 (scaled with --speed)",
    )
    args = parser.parse_args(argv)

    print("subagent-exec demo: three lead agents delegating to sub-agents on one runtime")
    print("(every sub-agent runs on its own event loop; models are scripted and offline)\n")
    with SubagentRuntime(max_workers=12, price_table=DEMO_PRICES) as runtime:
        with_scout = SubagentExecutor(_lead_config(runtime, args.speed, True), runtime=runtime)
        plain = SubagentExecutor(_lead_config(runtime, args.speed, False), runtime=runtime)
        budget = Budget(max_tokens=RUN_C_TOKENS)
        budgeted = SubagentExecutor(
            _lead_config(runtime, args.speed, False, budget), runtime=runtime
        )
        started = time.perf_counter()
        with LiveTree(runtime) as live:
            run_a, run_b = _start_run(with_scout, QUESTIONS[0]), _start_run(plain, QUESTIONS[1])
            run_c = _start_run(budgeted, QUESTIONS[2])
            root_a, root_b, root_c = runtime.get(run_a), runtime.get(run_b), runtime.get(run_c)
            assert root_a is not None and root_b is not None and root_c is not None

            def elapsed() -> float:
                return time.perf_counter() - started

            def busy_researcher() -> SubagentResult | None:
                for h in _descendants(runtime, root_a):
                    running = h.status is SubagentStatus.RUNNING
                    if h.subagent_name == "researcher" and h.children and running:
                        return h
                return None

            # 1. The user stops one researcher of run A once it has delegated.
            time.sleep(max(0.0, args.stop_at * args.speed - elapsed()))
            _wait_for(busy_researcher, 30)
            one = busy_researcher()
            stop_one_latency = None
            if one is not None:
                t0 = time.perf_counter()
                runtime.request_cancel(one.task_id, "the user stopped this researcher")
                one.wait(10)
                stop_one_latency = time.perf_counter() - t0

            # 2. The user stops the whole of run B while its tree is busy.
            time.sleep(max(0.0, (args.stop_at + 1.0) * args.speed - elapsed()))
            _wait_for(
                lambda: any(
                    h.depth >= 3 and h.status is SubagentStatus.RUNNING
                    for h in _descendants(runtime, root_b)
                ),
                30,
            )
            # What was still unfinished when the user pressed Stop.
            tree_b = [h for h in (root_b, *_descendants(runtime, root_b)) if not h.is_terminal]
            t0 = time.perf_counter()
            runtime.request_cancel(run_b, "the user pressed Stop on the whole run")
            for holder in tree_b:
                holder.wait(10)
            stop_tree_latency = time.perf_counter() - t0

            # 3. The user resumes run B: a new task goes on from the lead's last
            # completed step (its model calls so far are not made again; the
            # delegations the stop interrupted are started afresh).
            # The three leads share the name "lead-agent" (with different
            # budgets); a runtime resumes with the config registered last
            # under a name, so run B's is registered again first.
            runtime.register_subagents([plain.config])
            resumed_b = runtime.resume(run_b)
            resumed_b.wait(60)
            root_a.wait(60)
            root_c.wait(60)
            tree_c = [root_c, *_descendants(runtime, root_c)]
            for holder in tree_c:
                holder.wait(10)
            scouts = [h for h in runtime.list_tasks(thread_id=run_a) if h.background]
            for scout in scouts:
                scout.wait(60)
        total = time.perf_counter() - started

        if not live.redraws_in_place:  # a terminal already shows the final tree
            print()
            live.print_final_tree("Final statuses")
        label_a, label_b = live.runs.label(run_a), live.runs.label(run_b)
        label_c = live.runs.label(run_c)
        cancelled = sum(1 for h in tree_b if h.status is SubagentStatus.CANCELLED)
        print()
        if stop_one_latency is not None:
            print(
                f"Stop of one researcher (and its fact-checker) -> CANCELLED: "
                f"{stop_one_latency * 1000:.1f} ms; {label_a}'s lead carried on: "
                f"{root_a.status.value}"
            )
        print(
            f"Stop of {label_b}: {cancelled}/{len(tree_b)} unfinished tasks CANCELLED, "
            f"the last one {stop_tree_latency * 1000:.1f} ms after the request"
        )
        print(
            f"Resume of {label_b}: {task_ref(resumed_b.subagent_name, resumed_b.task_id)} went "
            f"on from its last completed step: {resumed_b.status.value}"
            + (f" after {resumed_b.duration_seconds:.1f} s" if resumed_b.duration_seconds else "")
        )
        by_budget = sum(1 for h in tree_c if h.stop_reason == "budget")
        print(
            f"Budget of {label_c}: {name_task_ids(root_c.error or 'not spent', runtime.get)}; "
            f"{by_budget}/{len(tree_c)} of its tasks stopped by it (failed, stop reason "
            "\"budget\")"
        )
        for label, root in ((label_a, root_a), (label_b, root_b), (label_c, root_c)):
            print(f"{label[0].upper()}{label[1:]} used {root.tree_usage.summary()}")
        for scout in scouts:
            print(
                f"Background task of {label_a}: {task_ref(scout.subagent_name, scout.task_id)} "
                f"{scout.status.value}; its findings were pushed into the lead's turns"
            )
        print(f"Wall time: {total:.2f} s for three runs of {len(runtime.list_tasks())} tasks")
        if root_a.result:
            answer = name_task_ids(root_a.result, runtime.get).replace("\n", "\n  ")
            print(f"\n{label_a[0].upper()}{label_a[1:]}'s answer:\n  {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
