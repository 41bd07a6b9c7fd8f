"""Scenario 8a: scale. 5,000 short sub-agents (one LangGraph step awaiting
10 ms) submitted at once through pools of 8, 32 and 128 workers, with 10%
of them cancelled at random moments (some while queued, some while running,
some too late to matter).

Figures per pool size: throughput (tasks/s, from the first submit to the
last terminal status), peak RSS (sampled every 5 ms), OS threads after
``shutdown()`` minus before the runtime existed (must be 0), and tasks not
terminal at the end (must be 0).
"""

from __future__ import annotations

import random
import threading
import time

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentResult, SubagentRuntime

from ..agents import sleep_graph
from ..core import (
    Figure,
    Options,
    RssSampler,
    ScenarioResult,
    Target,
    rss_mib,
    settled_thread_count,
)

NAME = "scale"
TITLE = "8. scale"

POOL_SIZES = (8, 32, 128)
WORK_SECONDS = 0.01
CANCEL_SHARE = 0.10


def run(options: Options) -> ScenarioResult:
    tasks = 500 if options.quick else 5000
    result = ScenarioResult(
        NAME,
        TITLE,
        params={
            "tasks": tasks,
            "pool_sizes": list(POOL_SIZES),
            "work_seconds": WORK_SECONDS,
            "cancelled_share": CANCEL_SHARE,
        },
    )
    rng = random.Random(options.seed)
    for workers in POOL_SIZES:
        _one_pool(result, workers, tasks, rng)
    return result


def _one_pool(result: ScenarioResult, workers: int, tasks: int, rng: random.Random) -> None:
    threads_before = settled_thread_count()
    python_threads_before = threading.active_count()
    rss_before = rss_mib()
    targets = sorted(rng.sample(range(tasks), int(tasks * CANCEL_SHARE)))
    with RssSampler() as rss:
        runtime = SubagentRuntime(max_workers=workers, name=f"bench-scale-{workers}")
        executor = SubagentExecutor(
            SubagentConfig(name="short", graph_factory=sleep_graph(WORK_SECONDS)), runtime=runtime
        )
        canceller = _Canceller(runtime, targets, workers, rng)
        started = time.perf_counter()
        holders: list[SubagentResult] = []
        for i in range(tasks):
            holder = runtime.get(executor.execute_async(f"short {i}"))
            assert holder is not None
            holders.append(holder)
            if i == 0:
                canceller.start(holders)
        for holder in holders:
            holder.wait(120.0)
        elapsed = time.perf_counter() - started
        canceller.join()
        shut = runtime.shutdown(cancel=True, wait=True, timeout=30.0)
        stats = runtime.stats()
    threads_after = settled_thread_count()
    python_threads_after = threading.active_count()

    not_terminal = sum(not h.is_terminal for h in holders)
    by_status: dict[str, int] = {}
    for holder in holders:
        by_status[holder.status.value] = by_status.get(holder.status.value, 0) + 1
    label = f"max_workers={workers}"
    result.params[label] = {
        "statuses": by_status,
        "cancel_requests": canceller.hits,
        "rss_before_mib": rss_before,
        "os_threads_before_after": [threads_before, threads_after],
        "python_threads_before_after": [python_threads_before, python_threads_after],
        "shutdown_clean": shut,
        "runtime_stats": stats,
    }
    result.add(
        Figure(
            f"{label}: throughput",
            "tasks/s",
            value=tasks / elapsed,
            note=f"{tasks} tasks in {elapsed:.2f} s; statuses {by_status}",
        )
    )
    result.add(
        Figure(
            f"{label}: peak RSS",
            "MiB",
            value=rss.peak_mib,
            note=f"{rss.peak_mib - rss_before:+.1f} MiB over the process before the run",
        )
    )
    result.add(
        Figure(
            f"{label}: threads after shutdown - before",
            "count",
            value=float(threads_after - threads_before),
            target=Target("value", "==", 0),
        )
    )
    result.add(
        Figure(
            f"{label}: tasks not terminal",
            "count",
            value=float(not_terminal + (0 if shut else 1)),
            target=Target("value", "==", 0),
            note="" if shut else "shutdown() timed out",
        )
    )


class _Canceller:
    """Cancels the ``targets`` (task indexes, ascending) at random moments.

    Task ``i`` is cancelled once an earlier task ``i - k`` has started, with
    ``k`` random in ``[0, 3 * workers]``: with at most ``workers`` tasks
    running at once (FIFO), a large ``k`` hits ``i`` while still queued, a
    small one while running or after it finished.
    """

    def __init__(
        self, runtime: SubagentRuntime, targets: list[int], workers: int, rng: random.Random
    ) -> None:
        self._runtime = runtime
        self._plan = [(i, max(0, i - rng.randint(0, 3 * workers))) for i in targets]
        self._thread: threading.Thread | None = None
        self.hits: dict[str, int] = {"pending": 0, "running": 0, "already_terminal": 0}

    def start(self, holders: list[SubagentResult]) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(holders,), name="bench-canceller", daemon=True
        )
        self._thread.start()

    def _run(self, holders: list[SubagentResult]) -> None:
        for index, anchor in self._plan:
            while len(holders) <= index or (
                holders[anchor].started_at is None and not holders[anchor].is_terminal
            ):
                time.sleep(0.0005)
            target = holders[index]
            state = target.status.value if not target.is_terminal else "already_terminal"
            if self._runtime.request_cancel(target.task_id, "benchmark: random cancel"):
                self.hits[state if state in self.hits else "running"] += 1
            else:
                self.hits["already_terminal"] += 1

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(60.0)
