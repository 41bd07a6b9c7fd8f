"""The status of a sub-agent task and the rules for moving between statuses.

A task moves PENDING -> RUNNING -> exactly one terminal status. A PENDING task
may also go straight to CANCELLED (stopped before it started). The transitions
themselves are performed by :class:`~subagent_exec.SubagentResult` under the
runtime lock; this module only names the statuses and the allowed edges.
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

#: The only edges a task may take. Anything else is refused by the holder.
ALLOWED_TRANSITIONS: dict[SubagentStatus, frozenset[SubagentStatus]] = {
    SubagentStatus.PENDING: frozenset({SubagentStatus.RUNNING, *_TERMINAL}),
    SubagentStatus.RUNNING: _TERMINAL,
    **{status: frozenset() for status in _TERMINAL},
}

TERMINAL_STATUSES = _TERMINAL
