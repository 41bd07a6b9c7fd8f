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
    """The statuses asked for (None: any): one status or name, or several.
    ``TypeError`` for anything else, ``ValueError`` naming the allowed names."""
    if status is None:
        return None
    allowed = ", ".join(s.value for s in SubagentStatus)
    not_a_status = f"status must be a status name or a list of them ({allowed}); got {status!r}"
    items: Iterable[object]
    if isinstance(status, str):
        items = [status]
    elif isinstance(status, Iterable):
        items = list(status)
    else:
        raise TypeError(not_a_status)
    wanted: set[SubagentStatus] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(not_a_status)
        try:
            wanted.add(SubagentStatus(item))
        except ValueError:
            raise ValueError(f"status must be one of: {allowed}; got {status!r}") from None
    return frozenset(wanted)
