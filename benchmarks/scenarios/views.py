"""Scenario 12: registry views next to status changes, with many tasks retained.

A monitoring page or an HTTP listing calls ``stats()`` and ``list_tasks``
while sub-agents start, finish and are stopped. Every status change takes
the runtime lock, so a view that holds the lock for long stalls every
transition of every sub-agent meanwhile.

Set-up: one runtime with ``retain_max`` large enough to keep everything,
filled with finished tasks cheaply (parents stopped while queued, and their
children, CANCELLED at submission under a stopped parent: no run at all),
``CHILDREN`` children per parent, one sub-agent RUNNING in a long await.

Figures:

* the cost of each view (``stats()``, ``list_tasks(status="running")``,
  ``list_tasks(parent_id=...)``), called back to back from one thread, at
  ``SMALL`` and at ``LARGE`` retained tasks; the answers have the same size
  at both (1 running task; ``CHILDREN`` children), so a view proportional to
  its answer costs the same at both, and one that scans what is retained
  grows with it;
* status-change latency at ``LARGE`` retained, with no reader (baseline,
  same run) and while another thread calls one view in a loop (1 ms pause
  between calls, like a poller): an ``execute()`` of a trivial sub-agent
  (created, started and terminal transitions) and a ``request_cancel`` of a
  RUNNING one (the call, and until CANCELLED).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from ..agents import EntryProbe, sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, median, ms, wait_until

NAME = "views"
TITLE = "12. registry views vs status changes"

CHILDREN = 49  # per parent: a parent and its children are 50 retained tasks
SLOTS = 4
READER_PAUSE_SECONDS = 0.001


def run(options: Options) -> ScenarioResult:
    quick = options.quick
    small = 1_000
    large = 5_000 if quick else 50_000
    calls = 20 if quick else 50
    changes = 30 if quick else 150
    result = ScenarioResult(
        NAME,
        TITLE,
        params={
            "retained_small": small,
            "retained_large": large,
            "children_per_parent": CHILDREN,
            "view_calls_each": calls,
            "status_changes_per_reader": changes,
            "reader_pause_s": READER_PAUSE_SECONDS,
        },
    )
    rng = random.Random(options.seed)
    runtime = SubagentRuntime(
        max_workers=SLOTS, max_depth=2, retain_max=10 * large, name="bench-views"
    )
    try:
        _measure(result, runtime, small, large, calls, changes, rng)
    finally:
        runtime.shutdown(cancel=True, wait=True, timeout=60.0)
    return result


def _measure(
    result: ScenarioResult,
    runtime: SubagentRuntime,
    small: int,
    large: int,
    calls: int,
    changes: int,
    rng: random.Random,
) -> None:
    probe = EntryProbe()
    long_runs = SubagentExecutor(
        SubagentConfig(name="long", graph_factory=sleep_graph(3600.0, probe)), runtime=runtime
    )
    trivial = SubagentExecutor(
        SubagentConfig(name="trivial", graph_factory=sleep_graph(0.0)), runtime=runtime
    )
    filler = _Filler(runtime, long_runs, probe)
    filler.fill_to(small)
    sample_parent = filler.parents[len(filler.parents) // 2]
    views: dict[str, Callable[[], Any]] = {
        "stats()": runtime.stats,
        'list_tasks(status="running")': functools.partial(runtime.list_tasks, status="running"),
        "list_tasks(parent_id=...)": functools.partial(runtime.list_tasks, parent_id=sample_parent),
    }
    at_small = {name: _call_costs(view, calls) for name, view in views.items()}
    filler.fill_to(large)
    at_large = {name: _call_costs(view, calls) for name, view in views.items()}
    answers = {name: _answer_size(view()) for name, view in views.items()}
    result.params["answer_sizes"] = answers
    result.params["stats_at_large"] = runtime.stats()

    for name in views:
        result.add(
            Figure(
                f"{name} at {large:,} retained",
                "ms",
                samples=at_large[name],
                target=Target("p50", "<", 0.1) if name == "stats()" else None,
                note=f"back to back from one thread; answer size {answers[name]}",
            )
        )
        result.add(Figure(f"{name} at {small:,} retained", "ms", samples=at_small[name]))
        result.add(
            Figure(
                f"{name}: cost at {large:,} / at {small:,} (medians)",
                "ratio",
                value=median(at_large[name]) / median(at_small[name]),
                target=Target("value", "<=", 2.0),
                note="same answer at both: a view proportional to its answer stays near 1",
            )
        )

    readers: dict[str, Callable[[], Any] | None] = {"no reader": None, **views}
    baseline_execute = 0.0
    for reader_name, view in readers.items():
        latencies = _status_changes(runtime, trivial, long_runs, probe, view, changes, rng)
        label = "no reader (baseline)" if view is None else f"while {reader_name} loops"
        if view is None:
            baseline_execute = median(latencies["execute"])
        result.add(
            Figure(
                f"execute() of a trivial sub-agent, {label}",
                "ms",
                samples=latencies["execute"],
                note="created + started + terminal transitions, each under the runtime lock",
            )
        )
        result.add(
            Figure(
                f"request_cancel() call on a RUNNING sub-agent, {label}",
                "ms",
                samples=latencies["cancel_call"],
                target=None if view is None else Target("p99", "<", 5.0),
                note="the latch of the stop, under the runtime lock",
            )
        )
        result.add(
            Figure(
                f"request_cancel() -> CANCELLED, {label}",
                "ms",
                samples=latencies["cancelled"],
            )
        )
        if view is not None:
            result.add(
                Figure(
                    f"execute(), {label} / no reader (medians)",
                    "ratio",
                    value=median(latencies["execute"]) / baseline_execute,
                )
            )
            result.add(
                Figure(
                    f"{reader_name} cost while status changes run",
                    "ms",
                    samples=latencies["view"],
                    note="as timed by the reader thread",
                )
            )


class _Filler:
    """Fills the runtime with finished tasks without running any of them."""

    def __init__(
        self, runtime: SubagentRuntime, executor: SubagentExecutor, probe: EntryProbe
    ) -> None:
        self.runtime = runtime
        self.executor = executor
        self.probe = probe
        self.parents: list[str] = []
        self._rounds = 0
        self._running: str | None = None

    def fill_to(self, retained: int) -> None:
        runtime, executor = self.runtime, self.executor
        if self._running is not None:
            self._stop(self._running)
        # Hold every slot, so the parents queue as PENDING and a stop ends them at once.
        keys = [f"blocker {self._rounds}-{i}" for i in range(SLOTS)]
        self._rounds += 1
        blockers = [executor.execute_async(key) for key in keys]
        wait_until(
            lambda: all(self.probe.entered(key) for key in keys), 30.0, "the blockers to run"
        )
        # Counted here, not with stats(): the engine's stats() may scan what is retained.
        registered = runtime.stats()["registered"]
        while registered + 1 + CHILDREN <= retained - 1:
            parent = executor.execute_async(f"parent {len(self.parents)}")
            runtime.request_cancel(parent, "benchmark fill: stopped while queued")
            for i in range(CHILDREN):
                child = runtime.get(executor.execute_async(f"child {i}", parent_id=parent))
                assert child is not None and child.status is SubagentStatus.CANCELLED
            self.parents.append(parent)
            registered += 1 + CHILDREN
        # One blocker stays RUNNING (the answer of list_tasks(status="running")).
        for task_id in blockers[1:]:
            self._stop(task_id)
        self._running = blockers[0]

    def _stop(self, task_id: str) -> None:
        self.runtime.request_cancel(task_id, "benchmark fill done")
        holder = self.runtime.get(task_id)
        assert holder is not None
        holder.wait(30.0)


def _call_costs(view: Callable[[], Any], calls: int) -> list[float]:
    view()  # warm
    costs = []
    for _ in range(calls):
        started = time.perf_counter()
        view()
        costs.append(ms(time.perf_counter() - started))
    return costs


def _answer_size(answer: Any) -> int:
    return len(answer) if isinstance(answer, list) else 1


def _status_changes(
    runtime: SubagentRuntime,
    trivial: SubagentExecutor,
    long_runs: SubagentExecutor,
    probe: EntryProbe,
    view: Callable[[], Any] | None,
    changes: int,
    rng: random.Random,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"execute": [], "cancel_call": [], "cancelled": [], "view": []}
    stop = threading.Event()
    reader: threading.Thread | None = None
    if view is not None:
        reader = threading.Thread(
            target=_read_in_a_loop, args=(view, stop, out["view"]), name="bench-reader"
        )
        reader.start()
    try:
        for i in range(changes):
            time.sleep(rng.uniform(0.0, 0.002))  # do not move in step with the reader
            started = time.perf_counter()
            holder = trivial.execute(f"trivial {i}")
            out["execute"].append(ms(time.perf_counter() - started))
            if holder.status is not SubagentStatus.COMPLETED:
                raise RuntimeError(f"a trivial sub-agent ended {holder.status}: {holder.error}")

            key = f"stopped {id(out)}-{i}"
            target = long_runs.start(key)
            wait_until(functools.partial(probe.entered, key), 30.0, "the sub-agent to run")
            time.sleep(rng.uniform(0.0, 0.002))
            started = time.perf_counter()
            runtime.request_cancel(target.task_id, "benchmark stop")
            out["cancel_call"].append(ms(time.perf_counter() - started))
            target.wait(30.0)
            out["cancelled"].append(ms(time.perf_counter() - started))
            probe.forget(key)
    finally:
        stop.set()
        if reader is not None:
            reader.join(30.0)
    return out


def _read_in_a_loop(view: Callable[[], Any], stop: threading.Event, costs: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        view()
        costs.append(ms(time.perf_counter() - started))
        time.sleep(READER_PAUSE_SECONDS)
