"""Worker slots: who may run now, who waits, and slots lent to children.

``SlotPool`` has ``max_workers`` slots. A RUNNING task holds one. Tasks that
find no free slot wait in FIFO order. A task that waits for its own child
*lends* its slot: the child (taken from the lender's own queue of pending
children) runs on the lender's slot, so nested delegation cannot deadlock a
saturated pool, and at most ``max_workers`` tasks are doing work at once. A
chain of lent slots is at most ``max_depth`` long.

The pool only decides; the runtime starts what it is told to start.
# Invariant: every method of SlotPool (but ``lending``, which takes the lock
# itself) and every SlotState field is used only under the runtime's lock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SlotKind(enum.Enum):
    """Where a running task's slot comes from."""

    POOL = "pool"  # a slot of the pool, given back to the pool
    LENT = "lent"  # the slot of a parent waiting for it, given back to that parent


@dataclass(eq=False)
class SlotState(Generic[T]):
    """The slot bookkeeping of one task (``task`` is what the runtime starts)."""

    task: T
    #: None: holds no slot (not started yet, or released).
    kind: SlotKind | None = None
    #: With ``kind`` LENT: whose slot this task runs on.
    lender: SlotState[T] | None = None
    #: The child currently running on this task's slot.
    lent_to: SlotState[T] | None = None
    #: How many of this task's waits for children are in progress.
    lending: int = 0
    #: Waiting for a slot (in the pool's queue; counts toward ``max_pending``).
    queued: bool = False
    #: This task's own children waiting for a slot, oldest first.
    pending_children: deque[SlotState[T]] = field(default_factory=deque)


class SlotPool(Generic[T]):
    """``max_workers`` slots, a FIFO queue of waiting tasks, and lending."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        #: Tasks holding a slot and not lending it: the ones doing work.
        self.active = 0
        #: Tasks waiting for a slot.
        self.queued = 0
        # Lazily cleaned: an entry may have started through its parent's
        # queue or have been cancelled while waiting (then ``queued`` is False).
        self._queue: deque[SlotState[T]] = deque()

    def can_start_now(self, parent: SlotState[T] | None) -> bool:
        """Whether a new task (a child of ``parent``) would get a slot at once."""
        return self.free > 0 or (
            parent is not None and parent.lending > 0 and parent.lent_to is None
        )

    def enqueue(self, state: SlotState[T], parent: SlotState[T] | None) -> list[SlotState[T]]:
        """Queue a new task; returns the tasks that get a slot now."""
        state.queued = True
        self.queued += 1
        self._queue.append(state)
        if parent is not None:
            parent.pending_children.append(state)
        return self.dispatch(parent)

    def withdraw(self, state: SlotState[T]) -> None:
        """A queued task will never start (it was stopped while waiting)."""
        if state.queued:
            state.queued = False
            self.queued -= 1

    def dispatch(self, parent: SlotState[T] | None = None) -> list[SlotState[T]]:
        """Grant every slot that can be granted: a lending parent's slot first
        (to its own children), then free pool slots in FIFO order."""
        granted: list[SlotState[T]] = []
        if parent is not None and parent.lending and parent.lent_to is None:
            child = _pop_queued(parent.pending_children)
            if child is not None:
                parent.lent_to = child
                child.lender = parent
                self._grant(child, SlotKind.LENT)
                granted.append(child)
        while self.free > 0:
            state = _pop_queued(self._queue)
            if state is None:
                break
            self.free -= 1
            self._grant(state, SlotKind.POOL)
            granted.append(state)
        return granted

    def begin_lending(self, state: SlotState[T]) -> tuple[bool, list[SlotState[T]]]:
        """``state`` waits for a child: lend its slot. Returns whether it holds
        a slot to lend (then ``end_lending`` must follow) and the grants."""
        if state.kind is None:
            return False, []
        state.lending += 1
        if state.lending == 1:
            self.active -= 1
        return True, self.dispatch(state)

    @contextmanager
    def lending(
        self,
        state: SlotState[T] | None,
        *,
        lock: AbstractContextManager[Any],
        start: Callable[[list[SlotState[T]]], None],
    ) -> Iterator[None]:
        """While ``state``'s task waits for its children, lend its slot to them
        (``start`` starts what gets a slot; both ends take ``lock``)."""
        lends = False
        if state is not None:
            with lock:
                lends, granted = self.begin_lending(state)
                start(granted)
        try:
            yield
        finally:
            if lends and state is not None:
                with lock:
                    self.end_lending(state)

    def end_lending(self, state: SlotState[T]) -> None:
        state.lending -= 1
        if state.lending == 0 and state.kind is not None:
            self.active += 1

    def release(self, state: SlotState[T]) -> list[SlotState[T]]:
        """``state``'s run is over: give its slot back; returns the grants."""
        kind, lender = state.kind, state.lender
        state.kind, state.lender = None, None
        if kind is None:
            return []
        if state.lending == 0:
            self.active -= 1
        borrower, state.lent_to = state.lent_to, None
        if borrower is not None and borrower.kind is SlotKind.LENT:
            # We end while a child still runs on our slot: the slot passes
            # down to it instead of being freed while still in use.
            borrower.kind, borrower.lender = kind, lender
            if lender is not None:
                lender.lent_to = borrower
            return []
        if kind is SlotKind.POOL:
            self.free += 1
            return self.dispatch()
        if lender is not None:
            lender.lent_to = None
            return self.dispatch(lender)
        return []

    def _grant(self, state: SlotState[T], kind: SlotKind) -> None:
        state.kind = kind
        state.queued = False
        self.queued -= 1
        self.active += 1


def _pop_queued(queue: deque[SlotState[T]]) -> SlotState[T] | None:
    while queue:
        state = queue.popleft()
        if state.queued:
            return state
    return None
