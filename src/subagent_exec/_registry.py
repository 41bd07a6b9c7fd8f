"""The tasks a runtime knows: registered in creation order, linked in a tree,
and forgotten, once finished, by the runtime's retention rules
(``retain_max``, ``retain_ttl_seconds``). Unfinished tasks are never forgotten.

Views of it (counts by status, tasks by status or by parent) come from
indexes kept with every transition (``_views.py``): none scans what is
retained.

The tree that stops follow is an index of its own, not ``holder.children``
(which records history): when a finished task is forgotten while some of its
descendants still run, its children are re-attached to its nearest registered
ancestor, so a stop of any ancestor still reaches all of them.

# Invariant: a Registry is used only under its runtime's lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import Context
from datetime import UTC, datetime, timedelta
from typing import Any

from ._contract import RunFunction
from ._errors import UnknownTaskError
from ._events import EventHub, TaskEvent
from ._result import SubagentResult
from ._status import SubagentStatus
from ._tasks import RegisteredTask, TaskSettings
from ._views import RegistryViews


class Registry:
    """Registered tasks by id, and the order in which finished ones are forgotten."""

    def __init__(self, *, retain_max: int, retain_ttl_seconds: float | None) -> None:
        self.retain_max = retain_max
        self.retain_ttl_seconds = retain_ttl_seconds
        self.submitted_total = 0
        #: Registered tasks that have not reached a terminal status yet.
        self.unfinished = 0
        self._tasks: dict[str, RegisteredTask] = {}
        # Finished tasks still registered, oldest first.
        self._finished: OrderedDict[str, None] = OrderedDict()
        # The tree stops follow: registered children by parent, and back.
        self._children: dict[str, list[str]] = {}
        self._parent: dict[str, str] = {}
        #: Counts by status, tasks by status and by parent, kept with each change.
        self.views = RegistryViews()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[RegisteredTask]:
        """The registered tasks, in creation order."""
        return iter(self._tasks.values())

    def get(self, task_id: str) -> RegisteredTask | None:
        return self._tasks.get(task_id)

    def status_changed(self, task_id: str) -> None:
        """A registered task's status was just written (its event hook calls this)."""
        entry = self._tasks.get(task_id)
        if entry is not None:
            self.views.changed(entry)

    def register(
        self,
        holder: SubagentResult,
        parent: RegisteredTask | None,
        *,
        run: RunFunction,
        payload: Any,
        timeout_seconds: float,
        context: Context,
        settings: TaskSettings,
    ) -> RegisteredTask:
        """Register a new task (its holder made by the runtime) under ``parent``."""
        entry = RegisteredTask(
            holder=holder,
            run=run,
            payload=payload,
            timeout_seconds=timeout_seconds,
            context=context,
            settings=settings,
        )
        self._tasks[entry.task_id] = entry
        self.views.added(entry)
        self.submitted_total += 1
        self.unfinished += 1
        if parent is not None:
            parent.holder.children.append(entry.task_id)
            self._children.setdefault(parent.task_id, []).append(entry.task_id)
            self._parent[entry.task_id] = parent.task_id
        return entry

    def descendants(self, task_id: str) -> list[RegisteredTask]:
        """Every registered task below ``task_id`` in the tree, parents first."""
        found: list[RegisteredTask] = []
        stack = list(reversed(self._children.get(task_id, ())))
        while stack:
            child_id = stack.pop()
            entry = self._tasks.get(child_id)
            if entry is not None:
                found.append(entry)
            stack.extend(reversed(self._children.get(child_id, ())))
        return found

    def stop_descendants(self, root: RegisteredTask, what: str) -> list[RegisteredTask]:
        """Latch CANCELLED, with a reason naming ``root`` and ``what`` became of
        it, on every unfinished descendant; returns those latched."""
        reason = f"ancestor {root.task_id} ({root.subagent_name}) {what}"
        return [
            entry
            for entry in self.descendants(root.task_id)
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason)
        ]

    @staticmethod
    def stop_each(
        entries: list[RegisteredTask],
        status: SubagentStatus,
        reason: str,
        *,
        error: str | None = None,
        stop_reason: str | None = None,
    ) -> list[RegisteredTask]:
        """Latch the same stop on each unfinished entry (a spent budget stops
        everything that draws on it); returns those latched."""
        return [
            entry
            for entry in entries
            if entry.holder._latch_stop(status, reason, error=error, stop_reason=stop_reason)
        ]

    def stop_thread(self, thread_id: str, reason: str) -> list[RegisteredTask]:
        """Latch CANCELLED on every unfinished task of a lead agent's thread and
        on its subtree; returns those latched (the thread's tasks from the index)."""
        stopped: list[RegisteredTask] = []
        for entry in self.views.of_thread(thread_id):
            if entry.holder._latch_stop(SubagentStatus.CANCELLED, reason):
                stopped.append(entry)
            stopped += self.stop_descendants(entry, f"was cancelled: {reason}")
        return stopped

    def finished(self, task_id: str) -> None:
        """``task_id`` reached its terminal status: retention may forget it now."""
        self.unfinished -= 1
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
        if entry is None:
            return
        self.views.removed(entry)
        entry.drop_references()
        # Re-attach its children (if any still exist) to its own parent.
        parent_id = self._parent.pop(task_id, None)
        children = self._children.pop(task_id, [])
        if parent_id is not None:
            siblings = self._children[parent_id]
            siblings.remove(task_id)
            siblings.extend(children)
            for child_id in children:
                self._parent[child_id] = parent_id
            if not siblings:
                del self._children[parent_id]
        else:
            for child_id in children:
                del self._parent[child_id]

    def watch(
        self,
        task: str | SubagentResult,
        hand_over: Callable[[TaskEvent], None],
        hub: EventHub,
        *,
        runtime_name: str,
    ) -> tuple[SubagentResult, list[TaskEvent], Callable[[], None]]:
        """The task's holder, its events so far, and a watch that hands over
        each later one (taken together under the lock: none lost or doubled)."""
        task_id = task if isinstance(task, str) else task.task_id
        entry = self._tasks.get(task_id)
        if isinstance(task, SubagentResult) and (entry is None or entry.holder is not task):
            if task.is_terminal:  # evicted: its history is complete
                return task, task._events_so_far(), nothing_to_undo
            entry = None
        if entry is None:
            raise UnknownTaskError(f"no task {task_id!r} in runtime {runtime_name!r}")
        holder = entry.holder
        history = holder._events_so_far()
        if holder.is_terminal:
            return holder, history, nothing_to_undo
        return holder, history, hub.watch(task_id, hand_over)


def nothing_to_undo() -> None:
    return None
