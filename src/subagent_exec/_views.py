"""Indexes of the registry kept with the status transitions, so that no view
of it scans what is retained: counts by status (``stats()`` in O(1)), tasks
by status, by parent and by lead-agent thread (``list_tasks`` proportional to
its answer, ``cancel_thread`` to the thread's tasks).

Every status change, registration and removal takes the runtime lock, and so
does every view. A view that walked every retained task held that lock for
~30 ms at 50,000 retained tasks (docs/performance.md, scenario "views"),
and every sub-agent's next transition waited for it.

Who calls what, always under the runtime's lock: the registry calls
:meth:`RegistryViews.added` and :meth:`RegistryViews.removed`; the runtime
calls :meth:`RegistryViews.changed` from each transition's event hook
("started" and the terminal kinds are the only events that change a status).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._status import SubagentStatus
from ._tasks import RegisteredTask


class RegistryViews:
    """Tasks by status and by ``parent_id``, in creation order where it matters."""

    def __init__(self) -> None:
        self._next_seq = 0
        #: Creation order of each registered task (answers are sorted by it).
        self._seq: dict[str, int] = {}
        #: The status each task is indexed under.
        self._indexed: dict[str, SubagentStatus] = {}
        self._by_status: dict[SubagentStatus, dict[str, RegisteredTask]] = {
            status: {} for status in SubagentStatus
        }
        #: Registered tasks by their holder's ``parent_id`` (the parent they were
        #: started under, whether or not it is still registered), in creation order.
        self._by_parent: dict[str, dict[str, RegisteredTask]] = {}
        #: Registered tasks by their holder's ``thread_id``, in creation order.
        self._by_thread: dict[str, dict[str, RegisteredTask]] = {}

    def added(self, entry: RegisteredTask) -> None:
        task_id, holder = entry.task_id, entry.holder
        self._seq[task_id] = self._next_seq
        self._next_seq += 1
        self._indexed[task_id] = holder.status
        self._by_status[holder.status][task_id] = entry
        if holder.parent_id is not None:
            self._by_parent.setdefault(holder.parent_id, {})[task_id] = entry
        if holder.thread_id is not None:
            self._by_thread.setdefault(holder.thread_id, {})[task_id] = entry

    def changed(self, entry: RegisteredTask) -> None:
        """``entry``'s status was just written: move it to its new index."""
        task_id = entry.task_id
        old = self._indexed.get(task_id)
        new = entry.holder.status
        if old is None or old is new:
            return
        del self._by_status[old][task_id]
        self._by_status[new][task_id] = entry
        self._indexed[task_id] = new

    def removed(self, entry: RegisteredTask) -> None:
        task_id = entry.task_id
        self._seq.pop(task_id, None)
        status = self._indexed.pop(task_id, None)
        if status is not None:
            self._by_status[status].pop(task_id, None)
        for index, key in (
            (self._by_parent, entry.holder.parent_id),
            (self._by_thread, entry.holder.thread_id),
        ):
            if key is None:
                continue
            group = index.get(key)
            if group is not None:
                group.pop(task_id, None)
                if not group:
                    del index[key]

    def counts(self) -> dict[str, int]:
        """Registered tasks per status value (every status present)."""
        return {status.value: len(tasks) for status, tasks in self._by_status.items()}

    def unfinished(self) -> list[RegisteredTask]:
        """PENDING and RUNNING tasks, in creation order."""
        return self._in_creation_order(
            [
                *self._by_status[SubagentStatus.PENDING].values(),
                *self._by_status[SubagentStatus.RUNNING].values(),
            ]
        )

    def of_thread(self, thread_id: str) -> list[RegisteredTask]:
        """The registered tasks of a lead agent's thread, in creation order."""
        return list(self._by_thread.get(thread_id, {}).values())

    def select(
        self,
        parent_id: str | None,
        wanted: Iterable[SubagentStatus] | None,
        *,
        thread_id: str | None = None,
    ) -> list[RegisteredTask] | None:
        """Tasks with this ``parent_id``, this ``thread_id`` and a status in
        ``wanted``, in creation order, taken from the smallest index that
        answers; None when no filter is given (the answer is every task:
        iterate the registry)."""
        if parent_id is None and thread_id is None and wanted is None:
            return None
        statuses = frozenset(wanted) if wanted is not None else None
        groups = [
            group
            for key, index in ((parent_id, self._by_parent), (thread_id, self._by_thread))
            if key is not None
            for group in [index.get(key, {})]
        ]
        smallest = min(groups, key=len) if groups else None
        if statuses is not None and (smallest is None or self._size(statuses) < len(smallest)):
            found = self._in_creation_order(
                [task for status in statuses for task in self._by_status[status].values()]
            )
        else:
            assert smallest is not None
            found = list(smallest.values())  # already in creation order
        return [
            e
            for e in found
            if (parent_id is None or e.holder.parent_id == parent_id)
            and (thread_id is None or e.holder.thread_id == thread_id)
            and (statuses is None or self._indexed.get(e.task_id) in statuses)
        ]

    def _size(self, statuses: frozenset[SubagentStatus]) -> int:
        return sum(len(self._by_status[status]) for status in statuses)

    def _in_creation_order(self, entries: list[RegisteredTask]) -> list[RegisteredTask]:
        seq = self._seq
        entries.sort(key=lambda entry: seq[entry.task_id])
        return entries
