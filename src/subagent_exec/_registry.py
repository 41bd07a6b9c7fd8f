"""The tasks a runtime knows: registered in creation order, and forgotten,
once finished, by the runtime's retention rules (``retain_max``,
``retain_ttl_seconds``). Unfinished tasks are never forgotten.

# Invariant: a Registry is used only under its runtime's lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ._tasks import RegisteredTask


class Registry:
    """Registered tasks by id, and the order in which finished ones are forgotten."""

    def __init__(self, *, retain_max: int, retain_ttl_seconds: float | None) -> None:
        self.retain_max = retain_max
        self.retain_ttl_seconds = retain_ttl_seconds
        self.submitted_total = 0
        self._tasks: dict[str, RegisteredTask] = {}
        # Finished tasks still registered, oldest first.
        self._finished: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[RegisteredTask]:
        """The registered tasks, in creation order."""
        return iter(self._tasks.values())

    def get(self, task_id: str) -> RegisteredTask | None:
        return self._tasks.get(task_id)

    def add(self, entry: RegisteredTask) -> None:
        self._tasks[entry.task_id] = entry
        self.submitted_total += 1

    def finished(self, task_id: str) -> None:
        """``task_id`` reached its terminal status: retention may forget it now."""
        self._finished[task_id] = None
        while len(self._finished) > self.retain_max:
            self.forget(next(iter(self._finished)))
        self.forget_expired()

    def forget_expired(self) -> None:
        """Forget the finished tasks older than ``retain_ttl_seconds``."""
        if self.retain_ttl_seconds is None:
            return
        horizon = datetime.now(UTC) - timedelta(seconds=self.retain_ttl_seconds)
        while self._finished:
            oldest = next(iter(self._finished))
            entry = self._tasks.get(oldest)
            completed = entry.holder.completed_at if entry else None
            if completed is not None and completed > horizon:
                return
            self.forget(oldest)

    def forget(self, task_id: str) -> None:
        self._finished.pop(task_id, None)
        entry = self._tasks.pop(task_id, None)
        if entry is not None:
            entry.drop_references()
