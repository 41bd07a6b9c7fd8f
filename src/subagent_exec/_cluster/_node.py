"""``Cluster``: one runtime process's membership in a cluster of processes
sharing a ``PostgresStore`` (``SubagentRuntime(cluster=True)``).

The runtime hands it what it needs explicitly (its public methods, its event
hub) and calls it at four seams: a stop of a task it does not hold, a wait
for a task it does not hold, a child whose parent runs elsewhere, shutdown.
Three threads, each with a connection of its own:

* the *listener*: ``LISTEN subagent_stop, subagent_events``; handles this
  process's stop requests at once, wakes the feed, and every
  ``poll_seconds`` polls both (and the remote parents of local tasks) in
  case a notification was missed;
* the *feed*: other processes' events, to local subscribers and waiters;
  bookkeeping of remote children (stops cascade to them);
* the *keeper*: the heartbeat, and reaping dead processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from .._errors import UnknownTaskError
from .._events import EventCallback, EventHub, TaskEvent
from .._result import SubagentResult
from ._feed import Relay, feed_start, read_feed
from ._link import Link
from ._members import Numbering, claim_slot, dead_processes, heartbeat, reap
from ._options import STRIDE, ClusterOptions
from ._stops import (
    STOPS_CHANNEL,
    StoredTask,
    claim_stops,
    read_task,
    send_stop,
    stopped_parents,
)

logger = logging.getLogger("subagent_exec.cluster")
#: How many stopped or ended local tasks are remembered for late remote children.
ENDED_KEPT = 10_000
EVENTS_CHANNEL = "subagent_events"


class RuntimeSide(Protocol):
    """What a cluster uses of its runtime: public methods only."""

    name: str

    def request_cancel(self, task_id: str, reason: str | None = None) -> bool: ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]: ...

    def get(self, task_id: str) -> SubagentResult | None: ...


class Cluster:
    """This process in a cluster. Made by :meth:`open` before the runtime
    numbers any event (its :attr:`numbering` decides the seqs), started by
    :meth:`attach` once the runtime is built."""

    @classmethod
    def open(cls, persistence: Any, options: ClusterOptions) -> Cluster:
        """Join the cluster of ``persistence``'s store (a ``PostgresStore``);
        on failure the store the runtime opened is let go of."""
        try:
            return cls(persistence.store, options)
        except BaseException:
            persistence.close(1.0)
            raise

    def __init__(self, store: Any, options: ClusterOptions) -> None:
        from .._store._postgres import PostgresStore

        if not isinstance(store, PostgresStore):
            raise ValueError(
                "SubagentRuntime.cluster needs a PostgresStore (store='postgresql://...') "
                f"that every process shares, got {store!r}"
            )
        self.options = options
        self.store = store
        self.process_id: str = store.process_id
        self._links: list[Link] = []
        self._work = self._link()  # request_cancel, lookups, cascades (under _send_lock)
        self.numbering: Numbering = claim_slot(
            self._work.get(), self.process_id, store.last_seq()
        )
        store.share()
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        # Invariant: the five maps below are read and written under self._lock.
        #: Tasks other processes run, by parent (a stop of the parent reaches them).
        self._remote_children: dict[str, set[str]] = {}
        self._child_parent: dict[str, str] = {}
        #: Parents looked up for a local child; local children whose parent runs elsewhere.
        self._remote_parents: set[str] = set()
        self._adopted: dict[str, str] = {}
        #: Local tasks stopped or ended lately, with why: a remote child seen
        #: only after its parent stopped is stopped at once (bounded, oldest out).
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._stopping = threading.Event()
        self._feed_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runtime: RuntimeSide | None = None
        self._hub: EventHub | None = None
        self._gone_logged = False

    @property
    def first_seq(self) -> int:
        return self.numbering.first_seq

    step = STRIDE

    def _link(self, *channels: str) -> Link:
        link = Link(self.store.connect, channels)
        self._links.append(link)
        return link

    # -- starting and stopping ---------------------------------------------------------

    def attach(self, runtime: RuntimeSide, hub: EventHub) -> None:
        """Start: reap what dead processes left, then the three threads."""
        self._runtime, self._hub = runtime, hub
        keeper = self._link()
        self._reap(keeper.get())
        feed = self._link()
        position = feed_start(feed.get())
        listener, stops = self._link(STOPS_CHANNEL, EVENTS_CHANNEL), self._link()
        listener.get()  # listening before the first poll
        runtime.subscribe(self._on_local_event)
        name = runtime.name
        for target, args, what in (
            (self._listen, (listener, stops), "listener"),
            (self._follow, (feed, position), "feed"),
            (self._keep, (keeper,), "keeper"),
        ):
            thread = threading.Thread(
                target=target, args=args, name=f"{name}-cluster-{what}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        # Stops asked while this process was starting.
        self._handle_stops(stops.get())

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads, say this process stopped, close the connections."""
        self._stopping.set()
        self._feed_wake.set()
        for thread in self._threads:
            thread.join(timeout)
        try:
            with self._send_lock:
                self._work.get().execute(
                    "UPDATE subagent_processes SET stopped_at = %s WHERE process_id = %s",
                    (time.time(), self.process_id),
                )
        except Exception:  # the database is gone: nothing more to say to it
            pass
        for link in self._links:
            link.drop()

    # -- the runtime's seams -----------------------------------------------------------

    def request_cancel(self, task_id: str, reason: str) -> bool:
        """Stop a task another process runs: False if the store does not have
        it, or it has ended; else the request is on its way (True)."""
        with self._send_lock:
            task = self._work.retry(lambda conn: read_task(conn, task_id))
            if task is None or task.is_terminal or task.process_id in (None, self.process_id):
                return False
            target = task.process_id
            self._work.retry(
                lambda conn: send_stop(conn, task_id, target, reason, self.process_id)
            )
        logger.info("[task=%s trace=%s] stop sent to process %s: %s",
                    task_id, task.trace_id, task.process_id, reason)
        return True

    def remote_parent(self, parent_id: str) -> StoredTask | None:
        """A parent another process runs, for a child submitted here (None:
        the store does not have it)."""
        with self._send_lock:
            task = self._work.retry(lambda conn: read_task(conn, parent_id))
        if task is not None:
            with self._lock:
                self._remote_parents.add(parent_id)
        return task

    def watch(
        self, task_id: str, hand_over: Callable[[TaskEvent], None]
    ) -> tuple[SubagentResult, list[TaskEvent], Callable[[], None]]:
        """Wait for a task another process runs: its stored result and events,
        then its later events as the feed brings them."""
        assert self._hub is not None
        relay = Relay(hand_over, self._refresh)
        unwatch = self._hub.watch(task_id, relay)
        record = self.store.get_task(task_id)
        events = self.store.read_events(task_id=task_id, limit=100_000)
        if record is not None and any(e.is_terminal for e in events) and not record.is_terminal:
            record = self.store.get_task(task_id)  # it ended between the two reads
        if record is None:
            unwatch()
            raise UnknownTaskError(f"task {task_id!r} is not known to any process of this store")
        holder = SubagentResult.from_record(record, events)
        if record.is_terminal and not any(e.is_terminal for e in events):
            events = [*events, *_terminal_of(holder)]
        relay.start(holder, events)
        return holder, events, unwatch

    def _refresh(self, holder: SubagentResult) -> None:
        record = self.store.get_task(holder.task_id)
        if record is not None:
            holder.refresh_from_record(record)

    # -- events: local ones (cascades to remote children) ------------------------------

    def _on_local_event(self, event: TaskEvent) -> None:
        if not self.numbering.is_mine(event.seq):
            return  # another process's, delivered by the feed
        children: set[str] = set()
        reason = ""
        with self._lock:
            if event.kind == "created" and event.parent_id in self._remote_parents:
                self._adopted[event.task_id] = event.parent_id
            if event.kind == "cancel_requested" or event.is_terminal:
                # Together with the feed's check in _foreign: a remote child is
                # either found here or finds its parent ended there.
                children = self._remote_children.pop(event.task_id, set())
                why = str(event.data.get("reason") or f"parent {event.task_id} {event.kind}")
                # Worded as a local cascade words it (once, however deep).
                reason = self._ended.setdefault(
                    event.task_id,
                    why if why.startswith("was cancelled: ") else f"was cancelled: {why}",
                )
                while len(self._ended) > ENDED_KEPT:
                    self._ended.popitem(last=False)
            if event.is_terminal:
                self._adopted.pop(event.task_id, None)
        for child in sorted(children):
            self._stop_child(child, reason)

    def _stop_child(self, child: str, reason: str) -> None:
        try:
            self.request_cancel(child, reason)
        except Exception:
            logger.exception("[task=%s] could not send a stop to its process", child)

    # -- threads -----------------------------------------------------------------------

    def _listen(self, listener: Link, stops: Link) -> None:
        poll = self.options.poll_seconds
        while not self._stopping.is_set():
            try:
                mine = events = False
                fresh = listener.connected
                for note in listener.get().notifies(timeout=poll, stop_after=1):
                    if note.channel == STOPS_CHANNEL:
                        mine = note.payload == self.process_id
                    else:
                        events = note.payload != self.process_id
                if self._stopping.is_set():
                    return
                if events:
                    self._feed_wake.set()
                if mine:
                    self._handle_stops(stops.get())
                elif not events or not fresh:  # the poll's turn, or notes lost meanwhile
                    self._handle_stops(stops.get())
                    self._check_remote_parents(stops.get())
                    self._feed_wake.set()
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("cluster listener of process %s failed; reconnecting",
                                 self.process_id)
                listener.drop()
                stops.drop()
                self._stopping.wait(poll)

    def _handle_stops(self, conn: Any) -> None:
        assert self._runtime is not None
        for task_id, reason in claim_stops(conn, self.process_id):
            self._runtime.request_cancel(task_id, reason)

    def _check_remote_parents(self, conn: Any) -> None:
        """Fallback: a local child whose remote parent stopped, should that
        parent's stop have missed it (it was being created at the time)."""
        assert self._runtime is not None
        with self._lock:
            adopted = dict(self._adopted)
        if not adopted:
            return
        stopped = stopped_parents(conn, sorted(set(adopted.values())))
        for child, parent in adopted.items():
            if parent in stopped:
                self._runtime.request_cancel(child, f"was cancelled: {stopped[parent]}")

    def _follow(self, feed: Link, position: int) -> None:
        assert self._hub is not None
        while not self._stopping.is_set():
            self._feed_wake.wait(self.options.poll_seconds)
            self._feed_wake.clear()
            if self._stopping.is_set():
                return
            try:
                while True:
                    events, position = read_feed(feed.get(), position)
                    for event in events:
                        if not self.numbering.is_mine(event.seq):
                            self._foreign(event)
                            self._hub.deliver(event)
                    if not events:
                        break
            except Exception:
                logger.exception("cluster feed of process %s failed; reconnecting",
                                 self.process_id)
                feed.drop()
                self._stopping.wait(self.options.poll_seconds)

    def _foreign(self, event: TaskEvent) -> None:
        """Bookkeeping of another process's task: whose child it is."""
        parent = event.parent_id
        if event.kind == "created" and parent is not None:
            with self._lock:
                # Its parent may be one of ours that stopped before this child was seen.
                ended = self._ended.get(parent)
                if ended is None:
                    self._remote_children.setdefault(parent, set()).add(event.task_id)
                    self._child_parent[event.task_id] = parent
            if ended is not None:
                self._stop_child(event.task_id, ended)
        elif event.is_terminal:
            with self._lock:
                owner = self._child_parent.pop(event.task_id, None)
                if owner is not None:
                    siblings = self._remote_children.get(owner)
                    if siblings is not None:
                        siblings.discard(event.task_id)
                        if not siblings:
                            del self._remote_children[owner]

    def _keep(self, keeper: Link) -> None:
        while not self._stopping.wait(self.options.heartbeat_seconds):
            try:
                conn = keeper.get()
                if not heartbeat(conn, self.process_id) and not self._gone_logged:
                    self._gone_logged = True
                    logger.error(
                        "process %s was declared gone by another process (its heartbeat was "
                        "late by more than %gs); its unfinished tasks were marked interrupted",
                        self.process_id, self.options.dead_after_seconds,
                    )
                self._reap(conn)
            except Exception:
                logger.exception("cluster keeper of process %s failed; reconnecting",
                                 self.process_id)
                keeper.drop()

    def _reap(self, conn: Any) -> None:
        assert self._hub is not None
        options = self.options
        for dead in dead_processes(
            conn, self.process_id, options.dead_after_seconds, 2 * options.heartbeat_seconds
        ):
            events = reap(conn, dead, self.process_id, self._hub.take_seq)
            if not events:
                continue
            logger.warning(
                "process %s is gone; %d unfinished tasks marked FAILED (interrupted): %s",
                dead, len(events), ", ".join(e.task_id for e in events[:10]),
            )
            for event in events:
                self._hub.deliver(event)


def _terminal_of(holder: SubagentResult) -> list[TaskEvent]:
    """The terminal event of a stored terminal result without a logged one."""
    return [
        TaskEvent(
            seq=0, kind=holder.status.value, task_id=holder.task_id,
            parent_id=holder.parent_id, trace_id=holder.trace_id,
            subagent_name=holder.subagent_name, status=holder.status.value,
            timestamp=(holder.completed_at or holder.created_at).timestamp(),
            owner=holder.owner,
        )
    ]
