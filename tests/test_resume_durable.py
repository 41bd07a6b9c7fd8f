"""Resume on durable stores (SQLite, PostgreSQL): after a clean restart, and
after the process running the task was killed (kill -9): a new runtime on the
same store resumes the interrupted task, and what was done before the last
checkpoint is not done again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from subagent_exec import SubagentExecutor, SubagentRuntime, SubagentStatus

from .resume_support import FINAL, TASK, CountingAgent

REPO = Path(__file__).resolve().parents[1]


def test_checkpointer_follows_the_store(
    where: str, runtimes: Callable[..., SubagentRuntime]
) -> None:
    runtime = runtimes(store=where)
    saver = runtime.checkpoints.saver
    assert saver is not None
    inner = type(saver.inner).__name__  # type: ignore[attr-defined]
    assert inner == ("PostgresSaver" if where.startswith("postgres") else "SqliteSaver")


def test_resume_after_a_clean_restart(
    where: str, runtimes: Callable[..., SubagentRuntime]
) -> None:
    agent = CountingAgent()
    first = runtimes(store=where)
    holder = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=first).start(TASK)
    assert agent.slow_started.wait(10)
    first.request_cancel(holder.task_id, "stopped by mistake")
    assert holder.wait(10) and holder.status is SubagentStatus.CANCELLED
    assert first.shutdown(wait=True, timeout=30.0)

    # A new runtime (as a new process would) declares the same sub-agent.
    again = CountingAgent(block_first_slow=False)
    second = runtimes(store=where)
    second.register_subagents([again.config()], tools=again.tools())
    resumed = second.resume(holder.task_id)
    assert resumed.wait(10) and resumed.status is SubagentStatus.COMPLETED, resumed.error
    assert resumed.result == FINAL
    assert again.calls == {"slow": 1} and again.model_calls == 1
    follow = second.resume(resumed.task_id, "which one is newest?")
    assert follow.wait(10) and follow.result == "follow-up answer to: which one is newest?"
    assert again.model_calls == 2
    # The records say who goes on from whom, in the store.
    record = second.store.get_task(follow.task_id)
    assert record is not None and record.extra["resumed_from"] == resumed.task_id


CHILD = textwrap.dedent(
    """
    import sys
    from subagent_exec import SubagentExecutor, SubagentRuntime
    from tests.resume_support import TASK, CountingAgent
    where = sys.argv[1]
    runtime = SubagentRuntime(store=where)
    agent = CountingAgent()
    holder = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime).start(TASK)
    agent.slow_started.wait(30)
    runtime.store.flush(10)
    runtime.checkpoints.flush(10)
    print("ready", holder.task_id, agent.model_calls, sum(agent.calls.values()), flush=True)
    agent.release.wait()  # never set: the parent kills this process
    """
)


def test_resume_after_kill_9(where: str, runtimes: Callable[..., SubagentRuntime]) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, where], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line and line[0] == "ready", f"the child ended first: {child.wait(10)}"
        task_id, model_calls, tool_calls = line[1], int(line[2]), int(line[3])
        assert (model_calls, tool_calls) == (3, 3)  # step, step, then stuck in slow
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()

    agent = CountingAgent(block_first_slow=False)
    runtime = runtimes(store=where)
    interrupted = runtime.get(task_id)
    assert interrupted is not None and interrupted.status is SubagentStatus.FAILED
    assert interrupted.stop_reason == "interrupted"
    SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)  # declares it
    resumed = runtime.resume(task_id)
    assert resumed.wait(15) and resumed.status is SubagentStatus.COMPLETED, resumed.error
    assert resumed.result == FINAL
    # Only the interrupted tool call and the last model call happened here.
    assert agent.calls == {"slow": 1} and agent.model_calls == 1


def test_a_locked_database_never_stops_a_task_and_checkpoints_catch_up(
    runtimes: Callable[..., SubagentRuntime], tmp_path: Path
) -> None:
    import sqlite3
    import time

    from subagent_exec import SqliteStore

    path = tmp_path / "locked.db"
    runtime = runtimes(store=SqliteStore(path, flush_interval_seconds=0.02))
    agent = CountingAgent()
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # every checkpoint write fails meanwhile
    try:
        started = time.monotonic()
        holder = executor.start(TASK)
        assert agent.slow_started.wait(10)
        # The steps were not held up by the database (writes are queued).
        assert time.monotonic() - started < 5.0
        runtime.request_cancel(holder.task_id, "stopped")
        assert holder.wait(10) and holder.status is SubagentStatus.CANCELLED
        saver = runtime.checkpoints.saver
        assert saver is not None and saver.queued > 0  # type: ignore[attr-defined]
        # Monitoring sees the backlog (and, once a write gave up waiting, the errors).
        assert runtime.stats()["checkpoint_pending"] > 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert runtime.checkpoints.flush(30.0)  # written once the lock is gone
    counters = runtime.stats()
    assert counters["checkpoint_pending"] == 0 and counters["checkpoint_dropped"] == 0
    assert counters["checkpoint_errors"] == saver.errors  # type: ignore[attr-defined]
    resumed = runtime.resume(holder.task_id)
    assert resumed.wait(15) and resumed.result == FINAL, resumed.error
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2} and agent.model_calls == 4
