"""The statuses of a sub-agent task.

A task moves PENDING -> RUNNING -> exactly one terminal status. A PENDING task
may also go straight to CANCELLED (stopped before it started). The transitions
themselves, and the rules that guard them, live in
:class:`~subagent_exec.SubagentResult`; this module only names the statuses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class SubagentStatus(enum.StrEnum):
    """Where a sub-agent task is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """True for the four statuses a task never leaves."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        SubagentStatus.COMPLETED,
        SubagentStatus.FAILED,
        SubagentStatus.CANCELLED,
        SubagentStatus.TIMED_OUT,
    }
)

TERMINAL_STATUSES = _TERMINAL


def status_filter(
    status: SubagentStatus | str | Iterable[SubagentStatus | str] | None,
) -> frozenset[SubagentStatus] | None:
    """The statuses asked for (None: any); ``ValueError`` naming the allowed ones."""
    if status is None:
        return None
    items: Iterable[SubagentStatus | str] = (
        [status] if isinstance(status, SubagentStatus | str) else status
    )
    try:
        return frozenset(SubagentStatus(s) for s in items)
    except ValueError:
        allowed = ", ".join(s.value for s in SubagentStatus)
        raise ValueError(f"status must be one of: {allowed}; got {status!r}") from None
