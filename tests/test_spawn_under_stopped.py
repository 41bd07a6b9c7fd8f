"""A child spawned under a parent whose stop is under way is CANCELLED at
once, and its reason names the ancestor whose stop reached the parent (a
page shows every task of a stopped tree as stopped by the same root)."""

from __future__ import annotations

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentRuntime, SubagentStatus

from .helpers import SETTLE, reply_graph


def test_a_child_spawned_under_a_stopping_parent_names_the_root_of_the_stop(
    runtime: SubagentRuntime,
) -> None:
    graph = reply_graph("late", delay=30.0)
    executor = SubagentExecutor(SubagentConfig(name="long", graph_factory=graph), runtime=runtime)
    root = executor.start("root")
    child = executor.start("child", parent_id=root.task_id)
    runtime.request_cancel(root.task_id, "user pressed Stop")
    late = executor.start("spawned while stopping", parent_id=child.task_id)
    assert late.status is SubagentStatus.CANCELLED  # at once: it never starts
    reason = late.cancel_reason or ""
    assert f"parent {child.task_id} (long) was already stopped" in reason
    assert root.task_id in reason and "user pressed Stop" in reason
    assert root.wait(SETTLE) and child.wait(SETTLE)
