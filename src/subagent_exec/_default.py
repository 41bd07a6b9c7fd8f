"""The process-wide default runtime and the module-level functions it backs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._budget import Budget
from ._events import EventCallback
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus

_lock = threading.Lock()
_default: SubagentRuntime | None = None


def get_default_runtime() -> SubagentRuntime:
    """The process-wide runtime, created on first use with default options."""
    global _default
    with _lock:
        if _default is None or _default.closed:
            _default = SubagentRuntime(name="subagent")
        return _default


def configure(**options: Any) -> SubagentRuntime:
    """Replace the default runtime with one built from ``options``
    (the ``SubagentRuntime`` arguments). The previous default runtime is shut
    down: its unfinished tasks are cancelled (without waiting here)."""
    global _default
    runtime = SubagentRuntime(**options)
    with _lock:
        previous, _default = _default, runtime
    if previous is not None and not previous.closed:
        previous.shutdown(cancel=True, wait=False)
    return runtime


def request_cancel_background_task(task_id: str, reason: str | None = None) -> bool:
    """Stop a task of the default runtime and its whole subtree."""
    return get_default_runtime().request_cancel(task_id, reason)


def resume_background_task(
    task_id: str, message: str | None = None, *, timeout_seconds: float | None = None,
    budget: Budget | None = None,
) -> SubagentResult:
    """Resume a stopped task of the default runtime from its last step (a
    finished one with ``message``): a new task; docs/resume.md."""
    return get_default_runtime().resume(
        task_id, message, timeout_seconds=timeout_seconds, budget=budget
    )


def get_background_task_result(task_id: str) -> SubagentResult | None:
    """The result holder of a task of the default runtime, or None."""
    return get_default_runtime().get(task_id)


def list_background_tasks(
    parent_id: str | None = None,
    status: SubagentStatus | str | Iterable[SubagentStatus | str] | None = None,
) -> list[SubagentResult]:
    """Tasks of the default runtime, optionally by parent and status."""
    return get_default_runtime().list_tasks(parent_id=parent_id, status=status)


def cleanup_background_task(task_id: str) -> bool:
    """Forget a terminal task of the default runtime."""
    return get_default_runtime().cleanup(task_id)


def subscribe(callback: EventCallback) -> Callable[[], None]:
    """Receive the default runtime's task events; returns ``unsubscribe``."""
    return get_default_runtime().subscribe(callback)
