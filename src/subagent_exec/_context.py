"""Context variables that cross into a sub-agent's loop on purpose.

Only these (and, for tracing, the caller's callback parents) are carried into
a sub-agent: never the parent's langgraph runtime, checkpointer or stream
writer, which belong to the parent's loop (see FIELD-NOTES "Context variables").
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runtime import SubagentRuntime

#: The id of the sub-agent task whose code is running (None in the lead agent).
current_task_id: ContextVar[str | None] = ContextVar("subagent_exec_task_id", default=None)
#: The runtime that runs the current sub-agent.
current_runtime: ContextVar[SubagentRuntime | None] = ContextVar(
    "subagent_exec_runtime", default=None
)


def get_current_task_id() -> str | None:
    """The task id of the sub-agent this code runs in, or None outside sub-agents."""
    return current_task_id.get()
