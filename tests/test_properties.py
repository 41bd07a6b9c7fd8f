"""Property tests: random interleavings of complete / fail / cancel / timeout /
cleanup from several threads never produce more than one terminal status per
task, never change a terminal status once seen, and a latched stop always wins
over a later completion."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langgraph.graph import MessagesState

from subagent_exec import SubagentResult, SubagentRuntime, SubagentStatus, TaskEvent

from .helpers import executor, graph_of, terminal, wait_until

S = SubagentStatus
ORDER = {S.PENDING: 0, S.RUNNING: 1}  # every terminal status ranks 2

# -- the holder against a reference model ---------------------------------------------------

HOLDER_OPS = ("start", "complete", "fail", "cancel", "timeout", "unwound")


@dataclass
class Model:
    """The rules of SubagentResult, written as plainly as possible."""

    status: SubagentStatus = S.PENDING
    stop: SubagentStatus | None = None

    def apply(self, op: str) -> bool:
        if op == "start":
            if self.status is S.PENDING and self.stop is None:
                self.status = S.RUNNING
                return True
            return False
        if op in ("cancel", "timeout"):
            if self.status.is_terminal or self.stop is not None:
                return False
            self.stop = S.CANCELLED if op == "cancel" else S.TIMED_OUT
            if self.status is S.PENDING:
                self.status = self.stop
            return True
        wanted = {"complete": S.COMPLETED, "fail": S.FAILED, "unwound": S.CANCELLED}[op]
        if self.status.is_terminal:
            return False
        self.status = self.stop or wanted
        return True


def apply_to_holder(holder: SubagentResult, op: str) -> bool:
    if op == "start":
        return holder._start()
    if op == "cancel":
        return holder._latch_stop(S.CANCELLED, "cancel")
    if op == "timeout":
        return holder._latch_stop(S.TIMED_OUT, "deadline")
    if op == "complete":
        return holder._finish(S.COMPLETED, result="done")
    if op == "fail":
        return holder._finish(S.FAILED, error="ValueError: failed")
    return holder._finish(S.CANCELLED)  # "unwound": what the runtime writes after a stop


@settings(max_examples=150, deadline=None)
@given(
    per_thread=st.lists(
        st.lists(st.sampled_from(HOLDER_OPS), min_size=1, max_size=6), min_size=2, max_size=4
    ),
    seed=st.integers(0, 2**16),
)
def test_holder_transitions_under_random_thread_interleavings(
    per_thread: list[list[str]], seed: int
) -> None:
    lock = threading.RLock()
    events: list[str] = []
    log: list[tuple[str, bool]] = []
    holder = SubagentResult(
        task_id="t",
        subagent_name="w",
        task="x",
        trace_id="tr",
        lock=lock,
        on_event=lambda kind, h, data: events.append(kind),
    )
    observed: list[SubagentStatus] = []
    stop_observing = threading.Event()
    barrier = threading.Barrier(len(per_thread) + 1)
    rng = random.Random(seed)
    pauses = [[rng.random() < 0.3 for _ in ops] for ops in per_thread]

    def worker(ops: list[str], pause: list[bool]) -> None:
        barrier.wait()
        for op, yield_first in zip(ops, pause, strict=True):
            if yield_first:
                time.sleep(0)
            # The log entry is written under the holder's own lock, so the log
            # order is the order in which the transitions really happened.
            with lock:
                log.append((op, apply_to_holder(holder, op)))

    def observer() -> None:
        barrier.wait()
        while not stop_observing.is_set():
            observed.append(holder.status)
            time.sleep(0)
        observed.append(holder.status)

    threads = [
        threading.Thread(target=worker, args=(ops, pause))
        for ops, pause in zip(per_thread, pauses, strict=True)
    ]
    watcher = threading.Thread(target=observer)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(10)
    stop_observing.set()
    watcher.join(10)

    model = Model()
    for op, returned in log:
        assert model.apply(op) == returned, (op, log)
    assert holder.status is model.status

    # Statuses only move forward, and a terminal one never changes once seen.
    ranks = [ORDER.get(s, 2) for s in observed]
    assert ranks == sorted(ranks)
    seen_terminal = {s for s in observed if s.is_terminal}
    assert len(seen_terminal) <= 1
    if seen_terminal:
        assert seen_terminal == {holder.status}

    terminal_events = [e for e in events if e in {s.value for s in S if s.is_terminal}]
    if holder.status.is_terminal:
        assert terminal_events == [holder.status.value]
        assert holder.completed_at is not None and holder.wait(0)
    else:
        assert terminal_events == [] and holder.completed_at is None and not holder.wait(0)

    # A latched stop wins over any later completion or failure.
    first_stop = next((op for op, ok in log if ok and op in ("cancel", "timeout")), None)
    if first_stop is not None:
        assert holder.cancel_event.is_set()
        if holder.status.is_terminal:
            expected = S.CANCELLED if first_stop == "cancel" else S.TIMED_OUT
            assert holder.status is expected
    # PENDING -> RUNNING never happens after a stop was latched.
    if first_stop is not None:
        stop_index = next(i for i, (op, ok) in enumerate(log) if ok and op == first_stop)
        assert not any(op == "start" and ok for op, ok in log[stop_index:])


# -- the runtime, driven through real sub-agents -----------------------------------------------


@dataclass
class Remote:
    """Lets test threads tell a running graph node to complete or fail."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = field(
        default_factory=dict
    )
    commands: dict[str, str] = field(default_factory=dict)

    def factory(self) -> Any:
        async def node(state: MessagesState) -> dict[str, Any]:
            label = str(state["messages"][0].content)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[str] = loop.create_future()
            with self.lock:
                command = self.commands.get(label)
                if command is None:
                    self.waiting[label] = (loop, future)
            if command is None:
                command = await future
            if command == "fail":
                raise ValueError(f"{label} was told to fail")
            return {"messages": [AIMessage(content=f"{label} ok")]}

        return graph_of(node)

    def send(self, label: str, command: str) -> None:
        with self.lock:
            if label in self.commands:
                return  # the first command wins, like a real run ends once
            self.commands[label] = command
            target = self.waiting.pop(label, None)
        if target is not None:
            loop, future = target
            try:
                loop.call_soon_threadsafe(_resolve, future, command)
            except RuntimeError:
                pass  # that sub-agent's loop is already closed


def _resolve(future: asyncio.Future[str], command: str) -> None:
    if not future.done():
        future.set_result(command)


RUNTIME_OPS = ("complete", "fail", "cancel", "cleanup", "nap")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    n_tasks=st.integers(1, 5),
    deadlines=st.lists(st.sampled_from([0.005, 0.03, 60.0]), min_size=5, max_size=5),
    per_thread=st.lists(
        st.lists(st.tuples(st.sampled_from(RUNTIME_OPS), st.integers(0, 4)), max_size=8),
        min_size=2,
        max_size=3,
    ),
)
def test_runtime_tasks_under_random_interleavings(
    n_tasks: int, deadlines: list[float], per_thread: list[list[tuple[str, int]]]
) -> None:
    runtime = SubagentRuntime(max_workers=2, cleanup_timeout_seconds=2.0)
    try:
        events: list[TaskEvent] = []
        runtime.subscribe(events.append)
        remote = Remote()
        holders: list[SubagentResult] = []
        for i in range(n_tasks):
            ex = executor(runtime, remote.factory, name=f"w{i}", timeout_seconds=deadlines[i])
            task_id = ex.execute_async(f"task{i}")
            holder = runtime.get(task_id)
            assert holder is not None
            holders.append(holder)
        cancel_accepted: set[int] = set()
        cleaned: dict[int, SubagentStatus] = {}
        barrier = threading.Barrier(len(per_thread))

        def worker(ops: list[tuple[str, int]]) -> None:
            barrier.wait()
            for op, index in ops:
                index %= n_tasks
                holder = holders[index]
                if op == "complete":
                    remote.send(f"task{index}", "complete")
                elif op == "fail":
                    remote.send(f"task{index}", "fail")
                elif op == "cancel":
                    if runtime.request_cancel(holder.task_id, f"cancel {index}"):
                        cancel_accepted.add(index)
                elif op == "cleanup":
                    if runtime.cleanup(holder.task_id):
                        # Only a terminal task can be cleaned up.
                        cleaned[index] = holder.status
                        assert holder.status.is_terminal
                else:
                    time.sleep(0.01)

        threads = [threading.Thread(target=worker, args=(ops,)) for ops in per_thread]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        for i in range(n_tasks):  # let whatever is still waiting end on its own
            remote.send(f"task{i}", "complete")
        for holder in holders:
            terminal(holder)
        ids = {h.task_id for h in holders}
        assert wait_until(lambda: ids <= {e.task_id for e in list(events) if e.is_terminal})
    finally:
        assert runtime.shutdown(cancel=True, wait=True, timeout=10)

    for holder in holders:
        event(f"final status {holder.status.value}")
    for index, holder in enumerate(holders):
        mine = [e for e in events if e.task_id == holder.task_id]
        kinds = [e.kind for e in mine]
        terminal_kinds = [e.kind for e in mine if e.is_terminal]
        # Exactly one terminal status per task, the last thing that happened to it.
        assert terminal_kinds == [holder.status.value], kinds
        assert kinds[-1] == holder.status.value
        assert kinds[0] == "created"
        assert kinds.count("started") <= 1
        assert holder.completed_at is not None
        # A task stopped while PENDING never started.
        if "started" not in kinds:
            assert holder.status in (S.CANCELLED,)
        # A cancel accepted before the end means a stop was latched: it wins.
        if index in cancel_accepted:
            assert holder.status in (S.CANCELLED, S.TIMED_OUT)
        if holder.status is S.TIMED_OUT:
            assert deadlines[index] < 1
        if holder.status is S.COMPLETED:
            assert holder.result == f"task{index} ok"
        if holder.status is S.FAILED:
            assert holder.error == f"ValueError: task{index} was told to fail"
        # What cleanup saw was already the final status.
        if index in cleaned:
            assert cleaned[index] is holder.status
            assert runtime.get(holder.task_id) is None
