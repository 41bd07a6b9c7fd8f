"""The context variables that cross into a sub-agent's loop on purpose.

A sub-agent's run starts from an empty ``contextvars.Context`` plus the
:class:`TaskScope` set here. Nothing else of the caller's context crosses:
copying it would drag the caller's langgraph runtime, checkpointer and stream
writer along, which belong to the caller's loop and fail ("Event loop is
closed") once that loop is gone. Tracing parents cross explicitly, as
callbacks (``_tracing.py``).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskScope:
    """Which task's code is running, and on which runtime."""

    task_id: str
    #: The runtime that runs the task, compared by identity (``is``) only: a
    #: task started from inside a sub-agent becomes its child only on the same
    #: runtime. None where no runtime is in this process (a Ray worker).
    runtime_key: object | None


#: The task whose code is running (None in the lead agent / outside sub-agents).
current_scope: ContextVar[TaskScope | None] = ContextVar("subagent_exec_scope", default=None)


def get_current_task_id() -> str | None:
    """The task id of the sub-agent this code runs in, or None outside sub-agents."""
    scope = current_scope.get()
    return scope.task_id if scope is not None else None


def task_in_scope(runtime_key: object) -> str | None:
    """The id of the task running this code, if it runs on ``runtime_key``."""
    scope = current_scope.get()
    if scope is None or scope.runtime_key is not runtime_key:
        return None
    return scope.task_id
