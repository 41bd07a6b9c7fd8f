"""The statuses of a sub-agent task.

A task moves PENDING -> RUNNING -> exactly one terminal status. A PENDING task
may also go straight to CANCELLED (stopped before it started). The transitions
themselves, and the rules that guard them, live in
:class:`~subagent_exec.SubagentResult`; this module only names the statuses.
"""

from __future__ import annotations

import enum


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
