"""Resume (issue 17) on a MemoryStore: a stopped sub-agent goes on from its
last step without redoing it; a finished one takes a follow-up; refusals."""

from __future__ import annotations

from typing import Any

import pytest

from subagent_exec import (
    ResumeError,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
    UnknownTaskError,
)

from .resume_support import FINAL, TASK, CountingAgent


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_runtime(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A runtime on each kind of store (its checkpointer follows the store).
    The database is asked for first: it outlives the runtime, torn down before it."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    make_runtime = request.getfixturevalue("make_runtime")
    if dsn is not None:
        return make_runtime(store=str(dsn))
    if request.param == "sqlite":
        return make_runtime(store=str(tmp_path / "tasks.db"))
    return make_runtime()


def _stop_in_slow(runtime: SubagentRuntime, agent: CountingAgent, **config: Any) -> Any:
    executor = SubagentExecutor(agent.config(**config), tools=agent.tools(), runtime=runtime)
    holder = executor.start(TASK)
    assert agent.slow_started.wait(10)
    runtime.request_cancel(holder.task_id, "stopped by mistake")
    assert holder.wait(10)
    assert holder.status is SubagentStatus.CANCELLED
    return holder


def test_resume_after_cancel_does_not_redo_steps(store_runtime: Any, make_runtime: Any) -> None:
    runtime = store_runtime
    agent = CountingAgent()
    first = _stop_in_slow(runtime, agent)
    assert agent.model_calls == 3
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 1}
    before = first.to_dict()

    resumed = runtime.resume(first.task_id)
    assert resumed.task_id != first.task_id
    assert resumed.resumed_from == first.task_id
    assert resumed.wait(10)
    assert resumed.status is SubagentStatus.COMPLETED, resumed.error
    assert resumed.result == FINAL
    # Only the step the stop interrupted ran again; one model call more.
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2}
    assert agent.model_calls == 4
    # The new task records only its own AI messages; the old record is unchanged.
    assert [m["text"] for m in resumed.ai_messages] == [FINAL]
    assert first.to_dict() == before
    assert (resumed.task, resumed.trace_id, resumed.thread_id) == (
        first.task, first.trace_id, first.thread_id,
    )
    record = runtime.store.get_task(resumed.task_id)
    assert record is not None and record.extra.get("resumed_from") == first.task_id


def test_follow_up_on_a_completed_task(store_runtime: Any, make_runtime: Any) -> None:
    runtime = store_runtime
    agent = CountingAgent(block_first_slow=False)
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    done = executor.execute(TASK)
    assert done.result == FINAL and agent.model_calls == 4
    follow = runtime.resume(done.task_id, "and which source is newest?")
    assert follow.wait(10) and follow.status is SubagentStatus.COMPLETED, follow.error
    assert follow.result == "follow-up answer to: and which source is newest?"
    assert follow.task == "and which source is newest?"
    assert agent.model_calls == 5
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 1}
    # The model saw the whole conversation before the new message.
    seen = agent.model.calls[-1].texts
    assert seen[0] == TASK and FINAL in seen and seen[-1] == "and which source is newest?"


def test_resume_with_message_answers_the_interrupted_tool_call(
    store_runtime: Any, make_runtime: Any
) -> None:
    runtime = store_runtime
    agent = CountingAgent()
    first = _stop_in_slow(runtime, agent)
    resumed = runtime.resume(first.task_id, "skip the slow source")
    assert resumed.wait(10) and resumed.status is SubagentStatus.COMPLETED, resumed.error
    assert resumed.result == "follow-up answer to: skip the slow source"
    # With a message, the interrupted call is not run again: it is answered
    # with a note, so the model sees it was stopped.
    assert agent.calls["slow"] == 1
    seen = agent.model.calls[-1].messages
    assert any(kind == "tool" and "not run" in text for kind, text in seen)


def test_resume_after_timeout(store_runtime: Any, make_runtime: Any) -> None:
    runtime = store_runtime
    agent = CountingAgent()
    executor = SubagentExecutor(
        agent.config(timeout_seconds=0.5), tools=agent.tools(), runtime=runtime
    )
    holder = executor.start(TASK)
    assert holder.wait(10) and holder.status is SubagentStatus.TIMED_OUT
    resumed = runtime.resume(holder.task_id, timeout_seconds=5.0)
    assert resumed.wait(10) and resumed.status is SubagentStatus.COMPLETED, resumed.error
    assert resumed.result == FINAL
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2}
    assert agent.model_calls == 4


def test_refusals(store_runtime: Any, make_runtime: Any) -> None:
    runtime = store_runtime
    agent = CountingAgent()
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    running = executor.start(TASK)
    assert agent.slow_started.wait(10)
    with pytest.raises(ResumeError, match="message_task") as unfinished:
        runtime.resume(running.task_id)
    assert unfinished.value.reason == "unfinished"
    agent.release.set()
    assert running.wait(10) and running.status is SubagentStatus.COMPLETED
    with pytest.raises(ResumeError, match="give a message") as completed:
        runtime.resume(running.task_id)
    assert completed.value.reason == "completed"
    with pytest.raises(UnknownTaskError, match="nothing to resume"):
        runtime.resume("no-such-task")
    with pytest.raises(TypeError, match=r"resume\.message"):
        runtime.resume(running.task_id, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"resume\.message"):
        runtime.resume(running.task_id, "  ")
    with pytest.raises(ValueError, match="timeout_seconds"):
        runtime.resume(running.task_id, "more", timeout_seconds=-1)


def test_refused_for_an_unregistered_subagent(make_runtime: Any) -> None:
    agent = CountingAgent()
    first_runtime = make_runtime()
    stopped = _stop_in_slow(first_runtime, agent)
    # Another runtime on the same store that never declared "surveyor".
    other = make_runtime(store=first_runtime.store, checkpointer=first_runtime.checkpoints.saver)
    with pytest.raises(ResumeError, match="no sub-agent named 'surveyor'") as refused:
        other.resume(stopped.task_id)
    assert refused.value.reason == "unknown_subagent"
    other.register_subagents([agent.config()], tools=agent.tools())
    resumed = other.resume(stopped.task_id)
    assert resumed.wait(10) and resumed.result == FINAL, resumed.error


def test_refused_when_checkpoints_are_gone_or_off(store_runtime: Any, make_runtime: Any) -> None:
    runtime = store_runtime
    agent = CountingAgent()
    stopped = _stop_in_slow(runtime, agent)
    runtime.checkpoints.forget(stopped.task_id)
    with pytest.raises(ResumeError, match="no checkpoints") as gone:
        runtime.resume(stopped.task_id)
    assert gone.value.reason == "no_checkpoint"

    off = make_runtime(checkpointer=False)
    agent2 = CountingAgent()
    stopped2 = _stop_in_slow(off, agent2)
    with pytest.raises(ResumeError, match="checkpointer=False") as unavailable:
        off.resume(stopped2.task_id)
    assert unavailable.value.reason == "unavailable"


def test_checkpoints_follow_store_retention(make_runtime: Any) -> None:
    import time

    from subagent_exec import SubagentConfig
    from subagent_exec.testing import ScriptedChatModel

    runtime = make_runtime(retain_max=5)  # a MemoryStore keeps no more than memory
    executor = SubagentExecutor(
        SubagentConfig(name="quick", model=ScriptedChatModel(default="ok")), runtime=runtime
    )
    first = [executor.execute(f"job {i}").task_id for i in range(80)]
    saver = runtime.checkpoints.saver
    runtime.store.apply_retention()  # the store applies it at most once a second itself
    time.sleep(1.1)  # pruning runs at most once a second, as runs start
    last = executor.execute("one more").task_id
    # (Counted first: InMemorySaver's reads of an unknown thread add an empty entry.)
    assert len(saver.storage) <= 5 + 1  # type: ignore[union-attr]
    assert runtime.checkpoints.latest(last) is not None
    kept = [t for t in first if runtime.checkpoints.latest(t) is not None]
    # Only what the store still has keeps its checkpoints (the newest few).
    assert len(kept) <= 5 and set(kept) <= set(first[-5:])


def test_resuming_a_task_of_a_stopped_tree_resumes_that_task_only(make_runtime: Any) -> None:
    runtime = make_runtime()
    lead, child = CountingAgent(), CountingAgent()
    lead_exec = SubagentExecutor(lead.config("lead"), tools=lead.tools(), runtime=runtime)
    child_exec = SubagentExecutor(child.config("child"), tools=child.tools(), runtime=runtime)
    parent = lead_exec.start(TASK)
    kid = child_exec.start(TASK, parent_id=parent.task_id)
    assert lead.slow_started.wait(10) and child.slow_started.wait(10)
    runtime.request_cancel(parent.task_id, "stop the tree")
    assert parent.wait(10) and kid.wait(10)
    assert kid.status is SubagentStatus.CANCELLED

    resumed = runtime.resume(kid.task_id)
    # Its parent is stopped: it goes on as a root of the same thread that
    # outlives it; the parent itself is not resumed.
    assert resumed.parent_id is None and resumed.background
    assert resumed.wait(10) and resumed.result == FINAL, resumed.error
    assert child.calls == {"step1": 1, "step2": 1, "slow": 2}
    assert lead.calls == {"step1": 1, "step2": 1, "slow": 1} and lead.model_calls == 3
    assert [t.task_id for t in runtime.list_tasks(parent_id=parent.task_id)] == [kid.task_id]


def test_resuming_a_child_of_a_running_parent_keeps_the_parent(make_runtime: Any) -> None:
    runtime = make_runtime()
    lead, child = CountingAgent(), CountingAgent()
    lead_exec = SubagentExecutor(lead.config("lead"), tools=lead.tools(), runtime=runtime)
    child_exec = SubagentExecutor(child.config("child"), tools=child.tools(), runtime=runtime)
    parent = lead_exec.start(TASK)
    kid = child_exec.start(TASK, parent_id=parent.task_id)
    assert lead.slow_started.wait(10) and child.slow_started.wait(10)
    runtime.request_cancel(kid.task_id, "only this one")
    assert kid.wait(10)
    resumed = runtime.resume(kid.task_id)
    assert resumed.parent_id == parent.task_id and not resumed.background
    assert resumed.task_id in parent.children
    assert resumed.wait(10) and resumed.result == FINAL, resumed.error
    lead.release.set()
    assert parent.wait(10) and parent.status is SubagentStatus.COMPLETED


def test_what_finished_after_the_stop_request_is_not_kept(make_runtime: Any) -> None:
    # During a grace period the step in flight may finish after the stop was
    # requested (the task tool, whose children the cascade cancelled, then
    # answers "cancelled"): that step belongs to the stop, so nothing it wrote
    # is kept, and a resume runs it again.
    runtime = make_runtime(cancel_grace_seconds=1.0)
    agent = CountingAgent()
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    first = executor.start(TASK)
    assert agent.slow_started.wait(10)
    runtime.request_cancel(first.task_id, "stop")
    agent.release.set()  # slow finishes within the grace period
    assert first.wait(10) and first.status is SubagentStatus.CANCELLED
    assert agent.calls["slow"] == 1 and agent.model_calls == 3
    agent.release.clear()
    agent.block_first_slow = False
    resumed = runtime.resume(first.task_id)
    assert resumed.wait(10) and resumed.result == FINAL, resumed.error
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 2}


def test_resume_after_a_budget_stop_draws_on_the_budget_given(store_runtime: Any) -> None:
    from subagent_exec import Budget

    runtime = store_runtime
    agent = CountingAgent(block_first_slow=False)
    executor = SubagentExecutor(agent.config(), tools=agent.tools(), runtime=runtime)
    stopped = executor.start(TASK, budget=Budget(max_model_calls=2, warn_at=None))
    assert stopped.wait(10) and stopped.status is SubagentStatus.FAILED
    assert stopped.stop_reason == "budget"
    # The second call used the budget up: the stop came as its answer was
    # counted, before its step was checkpointed, so that call is made again.
    assert agent.calls == {"step1": 1} and agent.model_calls == 2

    # Too small again: the new task has a budget of its own, counted afresh.
    short = runtime.resume(stopped.task_id, budget=Budget(max_model_calls=1, warn_at=None))
    assert short.wait(10) and short.stop_reason == "budget"
    assert agent.calls == {"step1": 1} and agent.model_calls == 3

    enough = runtime.resume(short.task_id, budget=Budget(max_model_calls=5, warn_at=None))
    assert enough.wait(10) and enough.status is SubagentStatus.COMPLETED, enough.error
    assert enough.result == FINAL
    # step1 (before the last checkpoint) was never done again.
    assert agent.calls == {"step1": 1, "step2": 1, "slow": 1} and agent.model_calls == 6
    with pytest.raises(TypeError, match=r"resume\.budget"):
        runtime.resume(enough.task_id, "more", budget=5)  # type: ignore[arg-type]
