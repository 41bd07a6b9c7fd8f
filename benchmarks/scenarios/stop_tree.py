"""Scenario 3: stop a whole tree (1 root, 5 children, 5 grandchildren each).

Every one of the 31 sub-agents is RUNNING, each on its own loop, in a long
await; the children were spawned from inside their parents (so the runtime
knows the tree). One ``request_cancel`` on the root; the figure is the time
until the *last* descendant is terminal.
"""

from __future__ import annotations

import functools
import time

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import EntryProbe, TreeAgent, tree_size
from ..core import Figure, Options, ScenarioResult, Target, ms, wait_until

NAME = "stop_tree"
TITLE = "3. stop a tree of 1+5+25"

FANOUT = 5
LEVELS = 3


def run(options: Options) -> ScenarioResult:
    trials = 8 if options.quick else 100
    size = tree_size(FANOUT, LEVELS)
    result = ScenarioResult(
        NAME, TITLE, params={"trials": trials, "fanout": FANOUT, "levels": LEVELS, "tasks": size}
    )
    to_last: list[float] = []
    to_root: list[float] = []
    cpu: list[float] = []
    not_cancelled = 0
    agent = TreeAgent(EntryProbe(), fanout=FANOUT, levels=LEVELS, hold_seconds=60.0)
    # Every node of the tree runs at once, so the pool must hold all of them.
    with SubagentRuntime(max_workers=size + 1, max_depth=LEVELS, name="bench-tree") as runtime:
        executor = SubagentExecutor(
            SubagentConfig(name="tree", graph_factory=agent.factory), runtime=runtime
        )
        agent.executor = executor
        for trial in range(trials):
            probe = agent.probe = EntryProbe()
            root_id = executor.execute_async(f"tree{trial} level=1 #0")
            wait_until(functools.partial(_all_entered, probe, size), 30.0, "the tree to run")
            root = runtime.get(root_id)
            assert root is not None
            tree = [h for h in runtime.list_tasks() if h.trace_id == root.trace_id]
            assert len(tree) == size, f"expected {size} tasks in the tree, found {len(tree)}"
            assert all(h.status is SubagentStatus.RUNNING for h in tree)

            cpu_started = time.process_time()
            started = time.perf_counter()
            runtime.request_cancel(root_id, "benchmark stop")
            root.wait()
            to_root.append(ms(time.perf_counter() - started))
            for holder in tree:
                holder.wait()
            to_last.append(ms(time.perf_counter() - started))
            cpu.append(ms(time.process_time() - cpu_started))

            not_cancelled += sum(h.status is not SubagentStatus.CANCELLED for h in tree)
            for holder in tree:
                runtime.cleanup(holder.task_id)

    result.add(
        Figure(
            "stop latency, to the last of 31 terminal",
            "ms",
            samples=to_last,
            target=Target("p99", "<", 25.0),
            note="one request_cancel on the root; every task in a 60 s await",
        )
    )
    result.add(Figure("stop latency, to the root terminal", "ms", samples=to_root))
    result.add(
        Figure(
            "CPU time of the whole stop, all threads",
            "ms",
            samples=cpu,
            note="process CPU during the stop; rises with contention on a shared VM",
        )
    )
    result.add(
        Figure(
            "tasks of the trees not CANCELLED",
            "count",
            value=float(not_cancelled),
            target=Target("value", "==", 0),
        )
    )
    return result


def _all_entered(probe: EntryProbe, size: int) -> bool:
    return probe.count() == size
