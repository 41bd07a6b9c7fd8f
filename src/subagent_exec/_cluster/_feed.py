"""Other processes' events, read from the store in the order they were
committed (``feed_id``), for this process's subscribers and waiters; and the
relay that lets a caller here wait for a task that runs elsewhere.

A process's writer commits its events with ``NOTIFY subagent_events`` under
one advisory lock (``PostgresStore._before_events``), so ``feed_id`` order is
commit order and a reader that goes on from the highest ``feed_id`` it has
read misses nothing. Per task, that is ``seq`` order (one process owns a task).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._events import TaskEvent
from .._result import SubagentResult
from .._store._records import event_from_dict, loads

FEED_BATCH = 1000


def feed_start(conn: Any) -> int:
    cur = conn.cursor()
    cur.execute("SELECT coalesce(max(feed_id), 0) FROM subagent_events")
    return int(cur.fetchone()[0])


def read_feed(conn: Any, after: int) -> tuple[list[TaskEvent], int]:
    """Events committed after ``after`` (a feed_id), and the new position."""
    cur = conn.cursor()
    cur.execute(
        "SELECT feed_id, event FROM subagent_events WHERE feed_id > %s ORDER BY feed_id "
        "LIMIT %s",
        (after, FEED_BATCH),
    )
    rows = cur.fetchall()
    events = [event_from_dict(loads(text)) for _, text in rows]
    return events, int(rows[-1][0]) if rows else after


class Relay:
    """Hands a remote task's events to a waiter: those the feed delivers
    while its history is read are held, and none is handed twice. On the
    terminal event the waiter's result is refreshed from the store first, so
    the waiter returns it as it ended."""

    def __init__(
        self, hand_over: Callable[[TaskEvent], None], refresh: Callable[[SubagentResult], None]
    ) -> None:
        self._hand_over = hand_over
        self._refresh = refresh
        self._lock = threading.Lock()
        self._held: list[TaskEvent] = []
        self._floor: int | None = None
        self._holder: SubagentResult | None = None

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            if self._floor is None or self._holder is None:
                self._held.append(event)
                return
            self._pass_locked(event, self._holder)

    def start(self, holder: SubagentResult, history: list[TaskEvent]) -> None:
        with self._lock:
            self._holder = holder
            self._floor = max((e.seq for e in history), default=0)
            held, self._held = self._held, []
            for event in held:
                self._pass_locked(event, holder)

    def _pass_locked(self, event: TaskEvent, holder: SubagentResult) -> None:
        assert self._floor is not None
        if event.seq <= self._floor:
            return
        self._floor = event.seq
        if event.is_terminal:
            self._refresh(holder)
        self._hand_over(event)
