"""The offline demo (``make demo`` / ``python -m subagent_exec.demo``).

Two runs of the bundled lead agent (:mod:`subagent_exec.demo_agents`) share
one runtime. Each lead delegates through its ``task`` tool to two
researchers in parallel, each researcher to a fact-checker, then to a
writer: every sub-agent on its own event loop, scripted fake models whose
calls really await (no API key, no network). The tree is shown live with
statuses and elapsed times. Mid-way the "user" stops one researcher of the
first run (its lead gets a "cancelled" tool result and carries on) and then
the whole second run (every descendant stops). Final statuses and timings
are printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

from ._config import SubagentConfig
from ._display import LiveTree
from ._display_text import name_task_ids
from ._executor import SubagentExecutor
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus
from .demo_agents import build_demo_lead_agent

QUESTIONS = (
    "Compare solid-state batteries and heat pumps for a short briefing.",
    "Summarise the state of grid-scale storage for a short briefing.",
)


def _lead_config(runtime: SubagentRuntime, speed: float) -> SubagentConfig:
    # The lead agent itself runs as a root task, so its task-tool children
    # become its children in the tree and one stop reaches all of them.
    return SubagentConfig(
        name="lead-agent",
        graph_factory=lambda: build_demo_lead_agent(runtime, speed=speed),
        timeout_seconds=120,
    )


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

    print("subagent-exec demo: two lead agents delegating to sub-agents on one runtime")
    print("(every sub-agent runs on its own event loop; models are scripted and offline)\n")
    with SubagentRuntime(max_workers=8) as runtime:
        executor = SubagentExecutor(_lead_config(runtime, args.speed), runtime=runtime)
        started = time.perf_counter()
        with LiveTree(runtime) as live:
            run_a, run_b = (executor.execute_async(q) for q in QUESTIONS)
            root_a, root_b = runtime.get(run_a), runtime.get(run_b)
            assert root_a is not None and root_b is not None

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
            root_a.wait(60)
        total = time.perf_counter() - started

        if not live.redraws_in_place:  # a terminal already shows the final tree
            print()
            live.print_final_tree("Final statuses")
        label_a, label_b = live.runs.label(run_a), live.runs.label(run_b)
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
        print(f"Wall time: {total:.2f} s for two runs of {len(runtime.list_tasks())} tasks")
        if root_a.result:
            answer = name_task_ids(root_a.result, runtime.get).replace("\n", "\n  ")
            print(f"\n{label_a[0].upper()}{label_a[1:]}'s answer:\n  {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
