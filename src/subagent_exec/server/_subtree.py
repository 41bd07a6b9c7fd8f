"""Which events belong to one task's subtree (``GET /tasks/{id}/events``)."""

from __future__ import annotations

from .._runtime import SubagentRuntime
from ._stream import BufferedEvent


class Subtree:
    """Which events belong to a task's subtree, and whether it has all ended.

    Members start as the tree known at connect time and grow from events:
    a task whose parent is a member is a member (a parent's ``created`` event
    always precedes its children's, the ring being in seq order).
    """

    def __init__(self, runtime: SubagentRuntime, root_id: str, owner: str | None) -> None:
        self._runtime = runtime
        self._owner = owner
        self.members: set[str] = set()
        stack = [root_id]
        while stack:
            task_id = stack.pop()
            if task_id in self.members:
                continue
            self.members.add(task_id)
            holder = runtime.get(task_id)
            if holder is not None:
                stack.extend(holder.children)

    def wants(self, item: BufferedEvent) -> bool:
        if item.owner != self._owner:
            return False
        if item.task_id in self.members:
            return True
        if item.parent_id is not None and item.parent_id in self.members:
            self.members.add(item.task_id)
            return True
        return False

    def finished(self) -> bool:
        """Every member has ended (a cleaned-up member counts as ended)."""
        for task_id in self.members:
            holder = self._runtime.get(task_id)
            if holder is not None and not holder.is_terminal:
                return False
        return True
