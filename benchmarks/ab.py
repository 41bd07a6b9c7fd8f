"""A/B of single engine changes (issue 13), each variant in the same process,
alternating trial by trial so machine noise hits them alike.

    python -m benchmarks.ab                 # every comparison
    python -m benchmarks.ab loops compile   # some of them
    python -m benchmarks.ab --quick         # fewer trials

Each comparison swaps one piece of the engine (a backend subclass that keeps
the old code, or a module attribute) between trials, and prints the median
of each variant and its ratio to the first one, with the load average. The
old code is reproduced here, faithfully, only where it is no longer in the
package. These figures are for the record of each change (docs/performance.md,
"What changed"); the scenarios of ``python -m benchmarks`` are the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

import subagent_exec._run as run_module
import subagent_exec._waiting as waiting
from subagent_exec import (
    RunEnding,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
)
from subagent_exec._backends import thread as thread_backend
from subagent_exec._loops import LEFTOVER_SECONDS, WorkerLoop
from subagent_exec.testing import ScriptedChatModel

from .agents import EntryProbe, TreeAgent, slow_model, tree_size
from .core import load_average, wait_until

Trial = Callable[[int], float]


def alternate(variants: dict[str, Trial], trials: int, warm: int = 3) -> dict[str, list[float]]:
    """Run each variant's trial in a shuffled order, ``trials`` times."""
    rng = random.Random(13)
    for trial in variants.values():
        for i in range(warm):
            trial(-1 - i)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(trials):
        rng.shuffle(names)
        for name in names:
            samples[name].append(variants[name](i))
    return samples


def report(title: str, samples: dict[str, list[float]], unit: str) -> None:
    first = statistics.median(next(iter(samples.values())))
    cells = [
        f"{name} {statistics.median(values):,.2f} {unit} ({statistics.median(values) / first:.3f})"
        for name, values in samples.items()
    ]
    print(f"{title}: " + ", ".join(cells) + f"  [load {load_average()}]", flush=True)


# -- trials ------------------------------------------------------------------------------


def execute_trial(runtime: SubagentRuntime, before: Callable[[], None] | None = None) -> Trial:
    """One trivial create_agent sub-agent through ``execute()``, in µs."""
    executor = SubagentExecutor(
        SubagentConfig(name="trivial", model=ScriptedChatModel(default="done")), runtime=runtime
    )

    def trial(i: int) -> float:
        if before is not None:
            before()
        started = time.perf_counter()
        holder = executor.execute(f"trivial {i}")
        elapsed = (time.perf_counter() - started) * 1e6
        if holder.status is not SubagentStatus.COMPLETED:
            raise RuntimeError(f"trivial sub-agent ended {holder.status}: {holder.error}")
        runtime.cleanup(holder.task_id)
        return elapsed

    return trial


def tree_trial(
    fanout: int, levels: int, backend: Any = "thread", before: Callable[[], None] | None = None
) -> tuple[Trial, SubagentRuntime]:
    """One stop of a whole running tree, to the last task terminal, in ms."""
    size = tree_size(fanout, levels)
    agent = TreeAgent(EntryProbe(), fanout=fanout, levels=levels, hold_seconds=60.0)
    runtime = SubagentRuntime(
        max_workers=size + 1, max_depth=levels, backend=backend, name="ab-tree"
    )
    executor = SubagentExecutor(
        SubagentConfig(name="tree", graph_factory=agent.factory), runtime=runtime
    )
    agent.executor = executor

    def trial(i: int) -> float:
        if before is not None:
            before()
        probe = agent.probe = EntryProbe()
        root_id = executor.execute_async(f"ab{i} level=1 #0")
        wait_until(lambda: probe.count() == size, 60.0, "the tree to run")
        root = runtime.get(root_id)
        assert root is not None
        tree = [h for h in runtime.list_tasks() if h.trace_id == root.trace_id]
        started = time.perf_counter()
        runtime.request_cancel(root_id, "ab stop")
        for holder in tree:
            holder.wait()
        elapsed = (time.perf_counter() - started) * 1e3
        for holder in tree:
            runtime.cleanup(holder.task_id)
        return elapsed

    return trial, runtime


def start_trial(n: int, backend: Any = "thread") -> tuple[Trial, SubagentRuntime]:
    """``n`` create_agent sub-agents started at once, until all are in their
    first model call, in ms."""
    probe = EntryProbe()
    runtime = SubagentRuntime(max_workers=n, backend=backend, name="ab-start")
    executor = SubagentExecutor(
        SubagentConfig(name="starter", model=slow_model(probe, 3600.0)), runtime=runtime
    )
    entered = [0]

    def trial(i: int) -> float:
        started = time.perf_counter()
        holders = [executor.start(f"ab{i}-{j}") for j in range(n)]
        entered[0] += n
        wait_until(lambda: probe.count() >= entered[0], 120.0, "the sub-agents to run")
        elapsed = (time.perf_counter() - started) * 1e3
        for holder in holders:
            runtime.request_cancel(holder.task_id, "ab stop")
        for holder in holders:
            holder.wait(60.0)
            runtime.cleanup(holder.task_id)
        return elapsed

    return trial, runtime


# -- the old code of each change -----------------------------------------------------------


def wait_blocking_every_event(
    self: waiting.TaskWaiter,
    task: Any,
    *,
    timeout: float | None,
    on_event: Any,
    forward_cancel: bool,
    cancel_reason: str,
) -> Any:
    """``wait_terminal_blocking`` before: every event of the task woke the caller."""
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    holder, history, unwatch = self.watch(task, inbox.put)
    try:
        with self.lending():
            for event in waiting._events_until_terminal(history, inbox, None):
                if on_event is not None:
                    on_event(event)
    finally:
        unwatch()
    return holder


class DriverCoroutineBackend(thread_backend.ThreadBackend):
    """The thread backend's driver before: a ``_drive`` coroutine per run that
    awaited ``asyncio.wait([run task, abandon future])``."""

    def _work(self, ticket: Any) -> None:
        try:
            if not ticket.begin():
                return
            worker = self._worker_loop()
            loop, sync_calls = worker.open(f"ab-{ticket.task_id[:8]}")
            run = None
            try:
                run = loop.run_until_complete(self._drive(ticket))
                ending = thread_backend._ending(run, ticket)
            except BaseException:
                ending = RunEnding(SubagentStatus.FAILED, error="RuntimeError: driver crashed")
            self._count_abandoned(ticket, sync_calls.live_threads())
            ticket.finish(ending)
            worker.tidy(
                leftover_seconds=LEFTOVER_SECONDS, crashed=run is None, log_prefix=ticket.log_prefix
            )
        finally:
            with self._lock:
                self._runs.pop(ticket.task_id, None)
            ticket.release()

    async def _drive(self, ticket: Any) -> Any:
        loop = asyncio.get_running_loop()
        inner = loop.create_task(ticket.run(ticket), context=ticket.context.copy())
        run = thread_backend._LoopRun(loop=loop, inner=inner)
        abandon: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._runs[ticket.task_id] = run
        deadline = loop.call_later(ticket.timeout_seconds, self._on_deadline, ticket, run)
        try:
            await asyncio.wait([inner, abandon], return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            if run.cleanup_timer is not None:
                run.cleanup_timer.cancel()
        run.ended = True
        return run


class EagerPollLoop(WorkerLoop):
    lazy_polls = False


class EagerPollBackend(thread_backend.ThreadBackend):
    """Worker loops that poll at every iteration (before ``LazySelector``)."""

    def _worker_loop(self) -> WorkerLoop:
        worker: WorkerLoop | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = EagerPollLoop(reuse=True)
            with self._lock:
                self._workers.append(worker)
        return worker


class GatedInterruptBackend(thread_backend.ThreadBackend):
    """Tried and rejected: every interrupt of one stop posted before any
    worker unwinds (each woken loop waits on a gate opened after the last post)."""

    def interrupt_many(self, tickets: Sequence[Any]) -> None:
        with self._lock:
            runs = [(t, self._runs.get(t.task_id)) for t in tickets]
        gate = threading.Event()
        try:
            for ticket, run in runs:
                if run is not None:
                    with _closed_loop_ignored():
                        run.loop.call_soon_threadsafe(self._gated, gate, ticket, run)
        finally:
            gate.set()

    def _gated(self, gate: threading.Event, ticket: Any, run: Any) -> None:
        gate.wait()
        self._schedule_interrupt(ticket, run)


@contextmanager
def _closed_loop_ignored() -> Iterator[None]:
    try:
        yield
    except RuntimeError:
        pass


def _interrupting_many(runtime: SubagentRuntime) -> None:
    """Make ``runtime`` hand a whole stop to its backend's ``interrupt_many``."""
    backend: Any = runtime.backend

    def interrupt(entries: list[Any]) -> None:
        backend.interrupt_many(entries)

    runtime._interrupt = interrupt  # type: ignore[method-assign]


class LeanCheckpoint(run_module.StopCheckpoint):
    """Tried and rejected: the stop checkpoint told to ignore chain, retriever,
    custom-event and retry callbacks (model and tool entry still checked)."""

    ignore_chain = True
    ignore_retriever = True
    ignore_custom_event = True
    ignore_retry = True


# -- the comparisons -----------------------------------------------------------------------


def compare_loops(trials: int) -> None:
    fresh = SubagentRuntime(max_workers=8, backend="thread-fresh-loops", name="ab-fresh")
    kept = SubagentRuntime(max_workers=8, name="ab-kept")
    try:
        samples = alternate(
            {"fresh loop per run": execute_trial(fresh), "worker loop kept": execute_trial(kept)},
            trials * 10,
        )
        report("execute(), fresh loops vs worker loops", samples, "µs")
    finally:
        fresh.shutdown()
        kept.shutdown()
    for fanout, levels in ((5, 3), (1, 10)):
        one, rt_one = tree_trial(fanout, levels, "thread-fresh-loops")
        two, rt_two = tree_trial(fanout, levels, "thread")
        try:
            samples = alternate({"fresh loops": one, "worker loops": two}, trials)
            report(f"stop of {tree_size(fanout, levels)}, fresh vs worker loops", samples, "ms")
        finally:
            rt_one.shutdown()
            rt_two.shutdown()


def compare_wakeups(trials: int) -> None:
    runtime = SubagentRuntime(max_workers=8, name="ab-wakeups")
    new = waiting.TaskWaiter.wait_blocking

    def use(impl: Any) -> Callable[[], None]:
        return functools.partial(setattr, waiting.TaskWaiter, "wait_blocking", impl)

    try:
        samples = alternate(
            {
                "woken by every event": execute_trial(runtime, use(wait_blocking_every_event)),
                "woken by the end only": execute_trial(runtime, use(new)),
            },
            trials * 10,
        )
        report("execute(), waiter wake-ups", samples, "µs")
    finally:
        waiting.TaskWaiter.wait_blocking = new  # type: ignore[method-assign]
        runtime.shutdown()


def compare_compile(trials: int) -> None:
    runtime = SubagentRuntime(max_workers=8, name="ab-compile")
    cached = run_module.agent_for_run

    def per_run(model: Any, tools: Any, system_prompt: str | None) -> Any:
        return create_agent(model, tools=list(tools), system_prompt=system_prompt)

    def use(impl: Any) -> Callable[[], None]:
        return functools.partial(setattr, run_module, "agent_for_run", impl)

    model = ScriptedChatModel(default="done")
    loop = asyncio.new_event_loop()

    def direct(i: int) -> float:
        async def once() -> None:
            graph = create_agent(model, tools=[])
            await graph.ainvoke({"messages": [HumanMessage(content=f"direct {i}")]})

        started = time.perf_counter()
        loop.run_until_complete(once())
        return (time.perf_counter() - started) * 1e6

    try:
        samples = alternate(
            {
                "direct (compile + ainvoke)": direct,
                "execute(), compiled per run": execute_trial(runtime, use(per_run)),
                "execute(), compiled once": execute_trial(runtime, use(cached)),
            },
            trials * 10,
        )
        report("built-in agent compile", samples, "µs")
    finally:
        run_module.agent_for_run = cached  # type: ignore[assignment]
        loop.close()
        runtime.shutdown()


def compare_driver(trials: int) -> None:
    for fanout, levels in ((5, 3), (1, 10)):
        old, rt_old = tree_trial(fanout, levels, DriverCoroutineBackend())
        new, rt_new = tree_trial(fanout, levels, "thread")
        try:
            samples = alternate({"driver coroutine": old, "done-callback": new}, trials)
            report(f"stop of {tree_size(fanout, levels)}, run driver", samples, "ms")
        finally:
            rt_old.shutdown()
            rt_new.shutdown()


def compare_polls(trials: int) -> None:
    for fanout, levels in ((5, 3), (10, 3), (1, 10)):
        old, rt_old = tree_trial(fanout, levels, EagerPollBackend())
        new, rt_new = tree_trial(fanout, levels, "thread")
        try:
            count = trials if fanout != 10 else max(3, trials // 4)
            samples = alternate({"poll every iteration": old, "lazy polls": new}, count)
            report(f"stop of {tree_size(fanout, levels)}, loop polls", samples, "ms")
        finally:
            rt_old.shutdown()
            rt_new.shutdown()
    old, rt_old = start_trial(256, EagerPollBackend())
    new, rt_new = start_trial(256, "thread")
    try:
        samples = alternate(
            {"poll every iteration": old, "lazy polls": new}, max(3, trials // 10), warm=1
        )
        report("256 started at once, loop polls", samples, "ms")
    finally:
        rt_old.shutdown()
        rt_new.shutdown()


def compare_gate(trials: int) -> None:
    for fanout, levels in ((5, 3), (10, 3)):
        plain, rt_plain = tree_trial(fanout, levels, "thread")
        gated, rt_gated = tree_trial(fanout, levels, GatedInterruptBackend())
        _interrupting_many(rt_gated)
        try:
            count = trials if fanout != 10 else max(3, trials // 4)
            samples = alternate({"posted one by one": plain, "gated": gated}, count)
            report(f"stop of {tree_size(fanout, levels)}, interrupts", samples, "ms")
        finally:
            rt_plain.shutdown()
            rt_gated.shutdown()


def compare_lean(trials: int) -> None:
    current = run_module.StopCheckpoint

    def use(cls: Any) -> Callable[[], None]:
        return functools.partial(setattr, run_module, "StopCheckpoint", cls)

    runtime = SubagentRuntime(max_workers=8, name="ab-lean")
    try:
        samples = alternate(
            {
                "checkpoint": execute_trial(runtime, use(current)),
                "lean checkpoint": execute_trial(runtime, use(LeanCheckpoint)),
            },
            trials * 10,
        )
        report("execute(), stop checkpoint", samples, "µs")
        full, rt_full = tree_trial(5, 3, "thread", use(current))
        lean, rt_lean = tree_trial(5, 3, "thread", use(LeanCheckpoint))
        try:
            samples = alternate({"checkpoint": full, "lean checkpoint": lean}, trials)
            report("stop of 31, stop checkpoint", samples, "ms")
        finally:
            rt_full.shutdown()
            rt_lean.shutdown()
    finally:
        run_module.StopCheckpoint = current  # type: ignore[misc]
        runtime.shutdown()


def compare_deadline(trials: int) -> None:
    """Deadline lateness, one overrunning sub-agent at a time on each runtime."""
    from .agents import sleep_graph

    timeout = 0.05
    runtimes = {
        name: SubagentRuntime(max_workers=1, backend=backend, name=f"ab-{name}")
        for name, backend in (("fresh loops", "thread-fresh-loops"), ("worker loops", "thread"))
    }

    def late(runtime: SubagentRuntime) -> Trial:
        executor = SubagentExecutor(
            SubagentConfig(
                name="overrunning", graph_factory=sleep_graph(30.0), timeout_seconds=timeout
            ),
            runtime=runtime,
        )

        def trial(i: int) -> float:
            holder = executor.execute(f"late {i}")
            assert holder.started_at is not None and holder.completed_at is not None
            runtime.cleanup(holder.task_id)
            return ((holder.completed_at - holder.started_at).total_seconds() - timeout) * 1e3

        return trial

    try:
        samples = alternate({name: late(rt) for name, rt in runtimes.items()}, trials * 2)
        report("TIMED_OUT minus deadline (p50)", samples, "ms")
        tails = {
            name: sorted(values)[max(0, int(len(values) * 0.99) - 1)]
            for name, values in samples.items()
        }
        print(f"  p99: {tails}", flush=True)
    finally:
        for runtime in runtimes.values():
            runtime.shutdown()


class NoYieldBackend(thread_backend.ThreadBackend):
    """A worker that goes on tidying its loop right after the terminal status."""

    yield_after_finish = False


def compare_yield(trials: int) -> None:
    before = SubagentRuntime(max_workers=8, backend=NoYieldBackend(), name="ab-no-yield")
    after = SubagentRuntime(max_workers=8, name="ab-yield")
    try:
        samples = alternate(
            {"tidy at once": execute_trial(before), "yield first": execute_trial(after)},
            trials * 10,
        )
        report("execute(), the worker yields after the terminal status", samples, "µs")
    finally:
        before.shutdown()
        after.shutdown()


COMPARISONS: dict[str, Callable[[int], None]] = {
    "loops": compare_loops,
    "wakeups": compare_wakeups,
    "compile": compare_compile,
    "driver": compare_driver,
    "polls": compare_polls,
    "gate": compare_gate,
    "lean": compare_lean,
    "deadline": compare_deadline,
    "yield": compare_yield,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("which", nargs="*", help=f"some of: {', '.join(COMPARISONS)}")
    parser.add_argument("--quick", action="store_true", help="a few trials each")
    args = parser.parse_args(argv)
    unknown = [name for name in args.which if name not in COMPARISONS]
    if unknown:
        parser.error(f"unknown comparison(s) {unknown}; known: {', '.join(COMPARISONS)}")
    trials = 8 if args.quick else 60
    gc.collect()
    gc.freeze()
    for name in args.which or list(COMPARISONS):
        COMPARISONS[name](trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
