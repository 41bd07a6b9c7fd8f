"""The driver's view of one task on Ray (``RemoteTask``), the queue of tasks
waiting for a ready actor (``WaitingTasks``), and how Ray's errors become a
task's ending. Used on the driver loop only."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayTaskError, TaskCancelledError

from ..._contract import RunEnding, TaskTicket
from ..._errors import describe
from ..._status import SubagentStatus
from .pool import PoolActor

#: How many times a run is placed again after losing its actor before it
#: started (each time, none of its code ran); then it fails.
MAX_RESENDS = 3


@dataclass(eq=False)
class RemoteTask:
    """One task the backend was given, from its slot to its end."""

    ticket: TaskTicket
    #: ``ticket.begin()`` returned True (RUNNING; the deadline runs).
    begun: bool = False
    #: The actor it was sent to (None while it waits for one).
    member: PoolActor | None = None
    gen: Any = None  # ray.ObjectRefGenerator of the current send
    #: The current send's STARTED item arrived: its code may have run there.
    started: bool = False
    resends: int = 0
    #: Why the actor of an earlier send was lost (for a later error).
    lost_error: str | None = None
    consumer: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    stop_sent: bool = False
    ended: bool = False
    #: The worker's calls of driver-side tools being served, by request id.
    calls: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class WaitingTasks:
    """Tasks waiting for a ready actor, oldest first; each fails after the
    pool's placement timeout (``on_timeout``) if it is still here."""

    def __init__(
        self,
        loop: Callable[[], asyncio.AbstractEventLoop],
        timeout: Callable[[], float],
        on_timeout: Callable[[RemoteTask], None],
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._queue: deque[RemoteTask] = deque()
        self._timers: dict[RemoteTask, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, task: RemoteTask, *, first: bool = False) -> None:
        """Wait for an actor; ``first``: ahead of the others (a run placed
        again is older than anything queued)."""
        if task in self._timers:
            return
        if first:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)
        self._timers[task] = self._loop().call_later(self._timeout(), self._expire, task)

    def oldest(self) -> RemoteTask | None:
        return self._queue[0] if self._queue else None

    def remove(self, task: RemoteTask) -> None:
        timer = self._timers.pop(task, None)
        if timer is not None:
            timer.cancel()
            self._queue.remove(task)

    def take_all(self) -> list[RemoteTask]:
        tasks = list(self._queue)
        for task in tasks:
            self.remove(task)
        return tasks

    def _expire(self, task: RemoteTask) -> None:
        if task in self._timers:
            self.remove(task)
            self._on_timeout(task)


def task_error_ending(exc: Exception, ticket: TaskTicket) -> RunEnding:
    """The ending of a run whose stream raised Ray's ``TaskCancelledError`` or
    ``RayTaskError``: the original exception's type and message, never Ray's
    wrapper."""
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(exc, TaskCancelledError) or isinstance(cause, TaskCancelledError):
        if ticket.cancel_event.is_set():
            return RunEnding(SubagentStatus.CANCELLED)
        return RunEnding(
            SubagentStatus.FAILED,
            error="TaskCancelledError: the Ray task was cancelled outside subagent-exec",
        )
    if isinstance(cause, BaseException) and cause is not exc:
        return RunEnding(SubagentStatus.FAILED, error=describe(cause))
    return RunEnding(SubagentStatus.FAILED, error=f"Ray error: {first_line(exc)}")


def actor_lost_ending(exc: BaseException) -> RunEnding:
    """A run whose actor died (or became unreachable) after the run started."""
    return RunEnding(
        SubagentStatus.FAILED,
        error=(
            "RayActorError: the Ray worker running this sub-agent died before it "
            f"finished ({first_line(exc)})"
        ),
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
