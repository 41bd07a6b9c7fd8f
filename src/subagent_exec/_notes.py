"""``Inbox``: messages waiting for a running sub-agent's next model call.

Two kinds travel this way, and both are read before the next model call, so
a call in flight is never interrupted: follow-up messages of a background
task (``message_task``, ``_background_board.py``) and the warnings of the
budgets a task draws on (``_metering.py``), which the runtime puts in the
inbox of every running task the budget applies to.
"""

from __future__ import annotations

import threading


class Inbox:
    """Messages for one running task, taken by its run before its next model call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self.delivered = 0

    def put(self, text: str) -> int:
        """Queue ``text``; returns how many messages are waiting now."""
        with self._lock:
            self._pending.append(text)
            return len(self._pending)

    def take(self) -> list[str]:
        """Every waiting message, oldest first (they count as delivered)."""
        with self._lock:
            taken, self._pending = self._pending, []
            self.delivered += len(taken)
            return taken

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
