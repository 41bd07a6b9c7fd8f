"""A runtime on a store: history outlives memory (get, paged list_tasks), seq
goes on after a restart, a restart marks what was left running interrupted,
kill -9 loses nothing older than the flush interval, and a failing store never
stops or corrupts a running task."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from subagent_exec import (
    MemoryStore,
    SqliteStore,
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
    TaskList,
    TaskStore,
    UnknownTaskError,
)
from subagent_exec._store import INTERRUPTED_ERROR
from subagent_exec.testing import ScriptedChatModel

from .helpers import terminal, wait_until

REPO = Path(__file__).resolve().parents[1]


def quick(runtime: SubagentRuntime, answer: str = "done", latency: float = 0.0) -> SubagentExecutor:
    model = ScriptedChatModel(default=answer, latency=latency)
    return SubagentExecutor(SubagentConfig(name="quick", model=model), runtime=runtime)


def test_a_bare_runtime_keeps_todays_behaviour(
    runtimes: Callable[..., SubagentRuntime],
) -> None:
    runtime = runtimes(retain_max=2)
    assert isinstance(runtime.store, MemoryStore)
    ex = quick(runtime)
    ids = [ex.execute(f"job {i}").task_id for i in range(4)]
    # Memory forgot the oldest two, and a memory store keeps no more than memory.
    assert runtime.get(ids[0]) is None and runtime.get(ids[1]) is None
    assert terminal(runtime.get(ids[3])).result == "done"
    assert [h.task_id for h in runtime.list_tasks(limit=10)] == [ids[3], ids[2]]


def test_history_outlives_memory_on_a_durable_store(
    runtimes: Callable[..., SubagentRuntime], tmp_path: Path
) -> None:
    runtime = runtimes(retain_max=1, store=SqliteStore(tmp_path / "t.db"))
    ex = quick(runtime, "the answer")
    first = ex.execute("first job")
    second = ex.execute("second job")
    third_id = ex.execute_async("third job")
    terminal(runtime.get(third_id))
    wait_until(lambda: runtime.stats()["registered"] == 1)
    # The first task is gone from memory; the store has all of it.
    restored = runtime.get(first.task_id)
    assert restored is not None and restored is not first and restored.stored
    assert restored.status is SubagentStatus.COMPLETED and restored.result == "the answer"
    assert restored.task == "first job" and restored.completed_at == first.completed_at
    assert restored.ai_messages == first.ai_messages
    assert restored.wait(0) and restored.is_terminal
    # Waiting on a restored task replays its stored events and returns at once.
    seen: list[str] = []
    assert runtime.wait_terminal_blocking(restored, on_event=lambda e: seen.append(e.kind))
    assert seen[0] == "created" and seen[-1] == "completed"
    # By id too: a task only the store has is waited for like any other.
    by_id = runtime.wait_terminal_blocking(first.task_id, timeout=5.0)
    assert by_id.stored and by_id.result == "the answer"
    with pytest.raises(UnknownTaskError):
        runtime.wait_terminal_blocking("no-such-task", timeout=1.0)

    page = runtime.list_tasks(limit=2)
    assert isinstance(page, TaskList)
    assert [h.task_id for h in page] == [third_id, second.task_id]
    assert page[0] is runtime.get(third_id)  # memory's live holder where it has one
    rest = runtime.list_tasks(limit=2, cursor=page.next_cursor)
    assert [h.task_id for h in rest] == [first.task_id] and rest.next_cursor is None
    assert [h.task_id for h in runtime.list_tasks(status="completed", limit=10)] == [
        third_id, second.task_id, first.task_id
    ]
    # cleanup forgets a task in the store too.
    assert runtime.cleanup(first.task_id) is True
    assert runtime.get(first.task_id) is None
    assert runtime.cleanup(first.task_id) is False


def test_seq_goes_on_after_a_restart_and_history_is_there(
    where: str, runtimes: Callable[..., SubagentRuntime]
) -> None:
    first = runtimes(store=where)
    done = quick(first, "before the restart").execute("a job")
    last = first.last_event_seq
    assert first.shutdown(wait=True, timeout=30.0)

    second = runtimes(store=where)
    assert second.last_event_seq == last
    restored = second.get(done.task_id)
    assert restored is not None and restored.result == "before the restart"
    later = quick(second).execute("another job")
    events = second.store.read_events(task_id=later.task_id)
    assert events[0].seq == last + 1
    assert [h.task_id for h in second.list_tasks(limit=5)] == [later.task_id, done.task_id]


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime
    from subagent_exec.testing import ScriptedChatModel
    where, stamp = sys.argv[1], sys.argv[2]
    runtime = SubagentRuntime(max_workers=3, store=where)
    # Two that never end on their own, and a stream of quick ones beside them.
    stuck = SubagentExecutor(
        SubagentConfig(name="stuck", model=ScriptedChatModel(default="never", latency=600)),
        runtime=runtime,
    )
    stuck_ids = [stuck.execute_async("hold on") for _ in range(2)]
    quick = SubagentExecutor(
        SubagentConfig(name="quick", model=ScriptedChatModel(default="ok", latency=0.005)),
        runtime=runtime,
    )
    with open(stamp, "w") as f:
        f.write(" ".join(stuck_ids))
    # Tell the parent about every event as it is emitted (seq and time), one
    # whole line at a time (the dispatcher thread and this one both write).
    out = threading.Lock()
    def say(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()
    runtime.subscribe(lambda e: say(f"event {e.seq} {e.timestamp!r}"))
    say("ready")
    while True:
        quick.execute("tick")
    """
)


def test_kill_9_then_restart(
    where: str, runtimes: Callable[..., SubagentRuntime], tmp_path: Path
) -> None:
    # (``where`` first: its database outlives the runtimes, torn down before it.)
    """The durability test and the restart test, on one killed process."""
    stamp = tmp_path / "ids.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, where, str(stamp)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:  # events may come first
            if line.strip() == "ready":
                break
        else:
            raise AssertionError(f"the child ended before it was ready: {child.wait(10)}")
        time.sleep(1.5)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    unfinished = stamp.read_text().split()

    # Durability: read the store as the dead process left it.
    store: TaskStore = SqliteStore(where) if not where.startswith("postgres") else \
        __import__("subagent_exec").PostgresStore(where)
    events = store.read_events(limit=100_000)
    assert len(events) > 50, "the child ran quick tasks for a while"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # a prefix
    stored = {e.seq for e in events}
    emitted = [line.split() for line in child.stdout.read().splitlines()]
    emitted_at = {int(seq): float(stamp) for _, seq, stamp in emitted}
    old_enough = [seq for seq, at in emitted_at.items() if at < killed_at - 0.1]
    assert len(old_enough) > 50
    missing = sorted(set(old_enough) - stored)
    assert not missing, (
        f"{len(missing)} events emitted more than 0.1 s before the kill are not stored, "
        f"the oldest {killed_at - emitted_at[missing[0]]:.3f} s before it"
    )
    last = {e.task_id: e for e in events}
    records = {r.task_id: r for r in store.list_tasks(limit=10_000).tasks}
    assert set(records) == set(last)
    for task_id, record in records.items():
        assert (record.last_seq, record.status.value) == (last[task_id].seq,
                                                          last[task_id].status)
    for task_id in unfinished:
        assert not records[task_id].is_terminal
    # The stuck ones, and the quick one in flight at the kill, if any.
    unfinished = [task_id for task_id, r in records.items() if not r.is_terminal]
    store.close()

    # Restart: the runtime opened on it marks what was unfinished as interrupted.
    runtime = runtimes(store=where)
    top = events[-1].seq
    for task_id in unfinished:
        holder = runtime.get(task_id)
        assert holder is not None and holder.status is SubagentStatus.FAILED
        assert holder.stop_reason == "interrupted" and holder.error == INTERRUPTED_ERROR
        terminal_event = runtime.store.read_events(task_id=task_id)[-1]
        assert terminal_event.kind == "failed" and terminal_event.seq > top
    assert runtime.last_event_seq == top + len(unfinished)
    # Nothing is re-run, and the runtime works as usual.
    assert runtime.stats()["running"] == 0
    assert quick(runtime, "after").execute("a new job").result == "after"
    failed = runtime.list_tasks(status="failed", limit=10)
    assert sorted(h.task_id for h in failed) == sorted(unfinished)


def test_a_failing_store_never_stops_a_task(
    runtimes: Callable[..., SubagentRuntime], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.db"
    runtime = runtimes(store=SqliteStore(path, flush_interval_seconds=0.02))
    caplog.set_level(logging.WARNING, logger="subagent_exec.store")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # "database is locked" for every write
    try:
        results = [quick(runtime, f"answer {i}").execute(f"job {i}") for i in range(3)]
        assert [r.result for r in results] == ["answer 0", "answer 1", "answer 2"]
        assert all(r.status is SubagentStatus.COMPLETED for r in results)
        wait_until(lambda: runtime.stats()["store_errors"] > 0, timeout=15.0)
        assert runtime.stats()["store_pending"] > 0
        # Reads are right meanwhile (the store reads its own writes).
        page = runtime.list_tasks(limit=10)
        assert [h.result for h in page] == ["answer 2", "answer 1", "answer 0"]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert runtime.store.flush(30.0)
    assert runtime.stats()["store_pending"] == 0
    # Once per episode for the store (the checkpoint writer logs its own episode).
    assert sum("retrying" in r.getMessage() for r in caplog.records
               if r.name == "subagent_exec.store") == 1
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM subagent_tasks").fetchone()[0] == 3


def test_store_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"SubagentRuntime.store must be a TaskStore"):
        SubagentRuntime(store=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SubagentRuntime.store"):
        SubagentRuntime(store="  ")
    with pytest.raises(ValueError, match=r"SubagentRuntime.store_retain_max must be an int >= 0"):
        SubagentRuntime(store_retain_max=-1)
    with pytest.raises(TypeError, match=r"SubagentRuntime.store_retain_days"):
        SubagentRuntime(store_retain_days="30")  # type: ignore[arg-type]


def test_a_store_given_as_a_path_is_made_and_closed_by_the_runtime(tmp_path: Path) -> None:
    runtime = SubagentRuntime(store=str(tmp_path / "own.db"))
    assert isinstance(runtime.store, SqliteStore)
    quick(runtime).execute("job")
    assert runtime.shutdown(wait=True, timeout=30.0)
    with pytest.raises(Exception, match=r"closed"):
        runtime.store.get_task("x")
    given = SqliteStore(tmp_path / "given.db")
    other = SubagentRuntime(store=given)
    done = quick(other).execute("job")
    assert other.shutdown(wait=True, timeout=30.0)
    # A store the caller gave is flushed, not closed: it is the caller's.
    record = given.get_task(done.task_id)
    assert record is not None and record.status is SubagentStatus.COMPLETED
    given.close()



class _Refusing(MemoryStore):
    """A store whose writes raise while ``refuse`` is set (a broken custom store)."""

    refuse = False

    def record(self, event: Any, changes: Any) -> None:
        if self.refuse:
            raise OSError("the store is on fire")
        super().record(event, changes)


def test_a_store_that_raises_is_logged_once_and_counted(
    runtimes: Callable[..., SubagentRuntime], caplog: pytest.LogCaptureFixture
) -> None:
    store = _Refusing()
    runtime = runtimes(store=store)
    caplog.set_level(logging.WARNING, logger="subagent_exec.store")
    store.refuse = True
    results = [quick(runtime, f"a{i}").execute(f"job {i}") for i in range(2)]
    assert [r.result for r in results] == ["a0", "a1"]  # the tasks never noticed
    assert runtime.stats()["store_errors"] >= 8  # four events per task
    refused = [r for r in caplog.records if "refused an event" in r.getMessage()]
    assert len(refused) == 1 and f"[task={results[0].task_id}" in refused[0].getMessage()
    store.refuse = False
    quick(runtime).execute("again")
    assert any("takes events again" in r.getMessage() for r in caplog.records)


def test_store_retention_bounds_a_durable_store(
    runtimes: Callable[..., SubagentRuntime], tmp_path: Path
) -> None:
    runtime = runtimes(store=str(tmp_path / "r.db"), store_retain_max=2, store_retain_days=None)
    done = [quick(runtime).execute(f"job {i}").task_id for i in range(4)]
    assert runtime.store.apply_retention() >= 0
    assert [h.task_id for h in runtime.list_tasks(limit=10)] == [done[3], done[2]]
    assert runtime.store.removed_through() > 0


EXITING = textwrap.dedent(
    """
    import sys
    from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime
    from subagent_exec.testing import ScriptedChatModel
    runtime = SubagentRuntime(store=sys.argv[1])
    config = SubagentConfig(name="quick", model=ScriptedChatModel(default="ok"))
    print(SubagentExecutor(config, runtime=runtime).execute("last words").task_id)
    runtime.shutdown(wait=False)  # and the interpreter ends at once
    """
)


def test_the_last_events_are_written_when_the_interpreter_ends(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    done = subprocess.run(
        [sys.executable, "-c", EXITING, str(path)], capture_output=True, text=True,
        timeout=120, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.split()[-1]
    store = SqliteStore(path)
    try:
        record = store.get_task(task_id)
        assert record is not None and record.status is SubagentStatus.COMPLETED
        assert [e.kind for e in store.read_events(task_id=task_id)][-1] == "completed"
    finally:
        store.close()


def test_usage_outlives_a_restart(
    where: str, runtimes: Callable[..., SubagentRuntime]
) -> None:
    """A task's own and tree usage (docs/budgets.md) are read back from the store."""
    from subagent_exec import make_task_tool

    from .budget_helpers import PRICES, delegator, finisher, lookup

    first = runtimes(store=where, max_workers=4, price_table=PRICES)
    leaf = finisher("leaf", tokens=1000, turns=1)
    root = delegator("root", "leaf", tokens=10)
    task = make_task_tool([leaf], tools=[lookup], runtime=first)
    done = terminal(SubagentExecutor(root, tools=[task], runtime=first).start("a job"))
    assert done.status is SubagentStatus.COMPLETED, done.error
    own, tree = done.usage, done.tree_usage
    assert tree.total_tokens == 1020 and tree.cost == pytest.approx(1020 / 1e6)
    assert first.shutdown(wait=True, timeout=30.0)

    second = runtimes(store=where)
    restored = second.get(done.task_id)
    assert restored is not None and restored.stored
    assert (restored.usage, restored.tree_usage) == (own, tree)
    # The record answers in the same public form as the result.
    record = second.store.get_task(done.task_id)
    assert record is not None
    assert (record.to_dict()["usage"], record.to_dict()["tree_usage"]) == (
        own.to_dict(), tree.to_dict()
    )
    assert second.tree_usage(done.task_id) == tree
