"""Task events: what happened to which task, in the order it happened.

Events are created under the runtime lock, so their ``seq`` numbers follow the
real order of transitions. Two kinds of consumers:

* public subscribers (:meth:`EventHub.subscribe`) are called on one dispatcher
  thread, fed by an unbounded queue: a slow subscriber delays other
  subscribers, never a sub-agent;
* internal watchers (the ``task`` tool, ``aexecute``) are called inline, under
  the lock, and must only hand the event over (``call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("subagent_exec")

TERMINAL_EVENT_KINDS = frozenset({"completed", "failed", "cancelled", "timed_out"})
# "resumed": a run went on from its last checkpoint after a transient error.
EVENT_KINDS = (
    frozenset({"created", "started", "ai_message", "cancel_requested", "budget_warning",
               "resumed"})
    | TERMINAL_EVENT_KINDS
)


@dataclass(frozen=True)
class TaskEvent:
    """One thing that happened to a task."""

    seq: int
    kind: str
    task_id: str
    parent_id: str | None
    trace_id: str
    subagent_name: str
    status: str
    timestamp: float
    data: dict[str, Any] = field(default_factory=dict)
    #: The task's owner (fixed at creation), so a host can filter events per user
    #: without looking up a task that may already have been cleaned up.
    owner: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL_EVENT_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "task_id": self.task_id,
            "parent_id": self.parent_id,
            "trace_id": self.trace_id,
            "subagent_name": self.subagent_name,
            "status": self.status,
            "timestamp": self.timestamp,
            "data": self.data,
            "owner": self.owner,
        }


EventCallback = Callable[[TaskEvent], None]
_STOP = object()


class EventHub:
    """Numbers events and fans them out to subscribers and watchers."""

    def __init__(self, name: str = "subagent-events", first_seq: int = 1, step: int = 1) -> None:
        self._name = name
        self._lock = threading.Lock()
        #: Numbering goes on from a store's last seq after a restart. With
        #: ``step`` > 1 (several processes on one store, _cluster/) this hub's
        #: seqs are ``first_seq`` plus multiples of ``step``: another process's
        #: never collide with them.
        self._step = step
        self._seq = first_seq - step
        self._subscribers: dict[int, EventCallback] = {}
        self._watchers: dict[str, dict[int, EventCallback]] = {}
        self._next_token = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    # Called by the runtime under its lock, so seq order is transition order.
    def publish(self, kind: str, holder: Any, data: dict[str, Any]) -> TaskEvent:
        with self._lock:
            self._seq += self._step
            event = TaskEvent(
                seq=self._seq,
                kind=kind,
                task_id=holder.task_id,
                parent_id=holder.parent_id,
                trace_id=holder.trace_id,
                subagent_name=holder.subagent_name,
                status=holder.status.value,
                timestamp=time.time(),
                data=data,
                owner=getattr(holder, "owner", None),
            )
            watchers = list(self._watchers.get(holder.task_id, {}).values())
            has_subscribers = bool(self._subscribers)
        # (The hot path: as _fan_out, inlined.)
        for watcher in watchers:
            try:
                watcher(event)
            except Exception:  # a watcher must never break a transition
                logger.exception("task watcher failed [task=%s]", event.task_id)
        if has_subscribers:
            self._queue.put(event)
        return event

    def take_seq(self, above: int = 0) -> int:
        """A seq of this hub's numbering for an event built elsewhere (a task
        of a dead process marked interrupted), greater than ``above``."""
        with self._lock:
            self._advance_locked(above)
            self._seq += self._step
            return self._seq

    def deliver(self, event: TaskEvent) -> None:
        """Hand an event numbered elsewhere (another process's task, read from
        the store) to this hub's watchers and subscribers, as if published
        here; later seqs of this hub follow it."""
        with self._lock:
            self._advance_locked(event.seq)
            watchers = list(self._watchers.get(event.task_id, {}).values())
            has_subscribers = bool(self._subscribers)
        self._fan_out(event, watchers, has_subscribers)

    def _advance_locked(self, seq: int) -> None:
        # Keep this hub's residue (seq modulo step) while moving past ``seq``.
        if seq > self._seq:
            self._seq += (seq - self._seq) // self._step * self._step

    def _fan_out(
        self, event: TaskEvent, watchers: list[EventCallback], has_subscribers: bool
    ) -> None:
        for watcher in watchers:
            try:
                watcher(event)
            except Exception:  # a watcher must never break a transition
                logger.exception("task watcher failed [task=%s]", event.task_id)
        if has_subscribers:
            self._queue.put(event)

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest event published (0 before the first one)."""
        with self._lock:
            return self._seq

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every later event, on the dispatcher thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the event hub is closed")
            token = self._next_token
            self._next_token += 1
            self._subscribers[token] = callback
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._dispatch, name=self._name, daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(token, None)

        return unsubscribe

    def watch(self, task_id: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` inline for each event of one task (internal)."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._watchers.setdefault(task_id, {})[token] = callback

        def unwatch() -> None:
            with self._lock:
                per_task = self._watchers.get(task_id)
                if per_task is not None:
                    per_task.pop(token, None)
                    if not per_task:
                        del self._watchers[task_id]

        return unwatch

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, then stop the dispatcher thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _dispatch(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            with self._lock:
                subscribers = list(self._subscribers.values())
            for callback in subscribers:
                try:
                    callback(event)
                except Exception:
                    logger.exception(
                        "event subscriber failed [task=%s trace=%s]",
                        event.task_id,
                        event.trace_id,
                    )
