"""Waiting for a task to end: the one primitive behind ``aexecute``, the
``task`` tool and the Ray backend's remote delegation, in an async and a
blocking twin.

Both twins share the steps that matter: the task's events so far and a watch
for the later ones are taken together under the runtime's lock (none is lost
or delivered twice), the caller's slot is lent to its children while it
waits, and a cancellation of the caller can be forwarded to the task. They
differ only in how they wait: a future on the caller's loop, or a queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ._checks import check_callable, check_text
from ._contract import remaining
from ._events import EventCallback, TaskEvent
from ._result import SubagentResult

logger = logging.getLogger("subagent_exec")

#: The reason a waiter's cancellation gives the task it forwards it to.
CALLER_CANCELLED = "the caller was cancelled"

#: Watch a task: (its holder, its events so far, undo) for a hand-over that is
#: called under the runtime's lock, from any thread, for each later event.
Watch = Callable[
    [str | SubagentResult, Callable[[TaskEvent], None]],
    tuple[SubagentResult, list[TaskEvent], Callable[[], None]],
]


@dataclass(frozen=True)
class TaskWaiter:
    """Waits for tasks of one runtime (which hands over its operations)."""

    watch: Watch
    #: While entered, the calling task (if it is one of the runtime's) lends its slot.
    lending: Callable[[], AbstractContextManager[None]]
    request_cancel: Callable[[str, str | None], bool]
    cleanup_timeout_seconds: float

    async def wait(
        self,
        task: str | SubagentResult,
        *,
        on_event: EventCallback | None,
        forward_cancel: bool,
        cancel_reason: str,
    ) -> SubagentResult:
        """See ``SubagentRuntime.wait_terminal``."""
        loop = asyncio.get_running_loop()
        caller_context = contextvars.copy_context()
        ended: asyncio.Future[None] = loop.create_future()

        def on_loop(event: TaskEvent) -> None:
            if on_event is not None:
                _deliver(on_event, event)
            if event.is_terminal and not ended.done():
                ended.set_result(None)

        def hand_over(event: TaskEvent) -> None:  # under the lock, any thread
            # Every event is handed over, listened to or not: the loop woken by
            # the ones before the terminal one is still awake for it (measured:
            # the hand-back ~50 us sooner than a cold wake-up from select()).
            try:
                loop.call_soon_threadsafe(on_loop, event, context=caller_context)
            except RuntimeError:  # the waiting loop is closed: nobody to tell
                pass

        holder, history, unwatch = self.watch(task, hand_over)
        try:
            for event in history:
                on_loop(event)
            if not ended.done():
                with self.lending():
                    try:
                        await asyncio.shield(ended)
                    except asyncio.CancelledError:
                        if forward_cancel:
                            self.request_cancel(holder.task_id, cancel_reason)
                            try:
                                await asyncio.wait_for(
                                    asyncio.shield(ended), self.cleanup_timeout_seconds + 1.0
                                )
                            except (TimeoutError, asyncio.CancelledError):
                                pass  # a second cancel or a stuck cleanup
                        raise
        finally:
            unwatch()
        return holder

    def wait_blocking(
        self,
        task: str | SubagentResult,
        *,
        timeout: float | None,
        on_event: EventCallback | None,
        forward_cancel: bool,
        cancel_reason: str,
    ) -> SubagentResult:
        """See ``SubagentRuntime.wait_terminal_blocking``."""
        inbox: queue.SimpleQueue[TaskEvent] = queue.SimpleQueue()

        def hand_over(event: TaskEvent) -> None:  # under the lock, any thread
            # Every hand-over wakes this thread: without a listener, only the end does.
            if on_event is not None or event.is_terminal:
                inbox.put(event)

        holder, history, unwatch = self.watch(task, hand_over)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self.lending():
                try:
                    for event in _events_until_terminal(history, inbox, deadline):
                        if on_event is not None:
                            _deliver(on_event, event)
                except BaseException:
                    if forward_cancel:
                        self.request_cancel(holder.task_id, cancel_reason)
                        holder.wait(self.cleanup_timeout_seconds + 1.0)
                    raise
        finally:
            unwatch()
        return holder


def _deliver(on_event: EventCallback, event: TaskEvent) -> None:
    try:
        on_event(event)
    except Exception:  # a listener must never break the wait
        logger.exception("[task=%s trace=%s] event listener failed", event.task_id, event.trace_id)


def _events_until_terminal(
    history: list[TaskEvent], inbox: queue.SimpleQueue[TaskEvent], deadline: float | None
) -> Iterator[TaskEvent]:
    """The recorded events, then live ones, up to the terminal one or the deadline."""
    for event in history:
        yield event
        if event.is_terminal:
            return
    while True:
        try:
            event = inbox.get(timeout=remaining(deadline))
        except queue.Empty:
            return
        yield event
        if event.is_terminal:
            return


def check_wait(
    owner: str, task: object, on_event: object, cancel_reason: object
) -> None:
    if not isinstance(task, str | SubagentResult):
        raise TypeError(f"{owner}.task must be a task id or a SubagentResult, got {task!r}")
    if on_event is not None:
        check_callable(owner, "on_event", on_event)
    check_text(owner, "cancel_reason", cancel_reason)
