"""The runtime: the registry of tasks, their tree, stops and cascades,
retention, and waiting for a task to end.

One :class:`SubagentRuntime` owns one ``threading.RLock``: every status write,
tree change and slot hand-over happens under it, so "is my parent stopped?"
and "register the child" cannot be separated by a cancel. A *backend* runs the
tasks (``_contract.py``), seeing each through a ticket (``_tasks.py``); slots
are decided by ``_slots.py``. How a task and a stop travel through all of it:
docs/architecture.md.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ._backends import load_backend
from ._budget import Budget
from ._checkpoints import Checkpoints, open_checkpoints
from ._checks import check_callable, check_number, check_task_id
from ._cluster import Cluster, ClusterOptions, cluster_options
from ._config import SubagentConfig
from ._context import TaskScope, current_scope, task_in_scope
from ._contract import Backend, BackendSettings, RunFunction, remaining
from ._errors import CapacityError, DepthError, RuntimeClosedError, UnknownTaskError
from ._events import TERMINAL_EVENT_KINDS, EventCallback, EventHub, TaskEvent
from ._exit import register_exit_hook
from ._meter import BudgetMeter
from ._metering import Metering
from ._options import RuntimeOptions
from ._persist import DEFAULT_STORE_RETAIN_DAYS, DEFAULT_STORE_RETAIN_MAX, Persistence
from ._registry import Registry
from ._result import SubagentResult
from ._resume import Resumer
from ._slots import SlotPool
from ._status import SubagentStatus, status_filter
from ._store import TaskStore
from ._tasks import RegisteredTask, TaskSettings, check_submission
from ._usage import Usage
from ._waiting import CALLER_CANCELLED, TaskWaiter, check_wait

logger = logging.getLogger("subagent_exec")

class SubagentRuntime:
    """The pool and registry that run sub-agents. Thread-safe; use one per app.

    ``max_workers``: sub-agents doing work at once (each on its own loop).
    ``max_pending``: queued tasks allowed before ``execute_async`` refuses.
    ``max_depth``: how deep a tree may nest (a top-level sub-agent has depth 1).
    ``retain_max`` / ``retain_ttl_seconds``: how many / how long finished
    results are kept. ``cancel_grace_seconds``: how long a cancelled run may
    finish its current await before it is interrupted (0 = at once).
    ``cleanup_timeout_seconds``: how long an interrupted run may spend in its
    ``finally:`` blocks before it is abandoned and its status written anyway.
    ``backend``: what runs the sub-agents: ``"thread"`` (the default: one
    event loop per sub-agent in a thread of this process), ``"ray"`` (a
    ``RayBackend()`` with default options, see docs/ray.md), or a backend
    object such as ``RayBackend(address=...)``. ``price_table``: model name ->
    (price per million input tokens, per million output tokens), what costs
    and ``Budget(max_cost=...)`` are counted with (docs/budgets.md).

    ``store``: where task records and events outlive memory (docs/store.md):
    a ``TaskStore`` (default: a new ``MemoryStore``), ``":memory:"``, a SQLite
    file path or a ``postgresql://`` URL. ``store_retain_max`` /
    ``store_retain_days``: what the store keeps (None: no bound).
    ``cluster``: True (or ``ClusterOptions``) when several processes share a
    ``PostgresStore`` as one host (docs/deploy.md).
    ``checkpointer``: a LangGraph checkpoint saver for every run's steps
    (default: the one matching ``store``; False: none), docs/resume.md.
    """

    def __init__(
        self,
        max_workers: int = 8,
        max_pending: int | None = None,
        max_depth: int = 3,
        retain_max: int = 1000,
        retain_ttl_seconds: float | None = None,
        cancel_grace_seconds: float = 0.0,
        cleanup_timeout_seconds: float = 10.0,
        name: str = "subagent",
        backend: str | Backend = "thread",
        price_table: Mapping[str, tuple[float, float]] | None = None,
        store: TaskStore | str | None = None,
        store_retain_max: int | None = DEFAULT_STORE_RETAIN_MAX,
        store_retain_days: float | None = DEFAULT_STORE_RETAIN_DAYS,
        cluster: bool | ClusterOptions = False,
        checkpointer: Any = None,
    ) -> None:
        options = RuntimeOptions(
            max_workers=max_workers,
            max_pending=max_pending,
            max_depth=max_depth,
            retain_max=retain_max,
            retain_ttl_seconds=retain_ttl_seconds,
            cancel_grace_seconds=cancel_grace_seconds,
            cleanup_timeout_seconds=cleanup_timeout_seconds,
            name=name,
            price_table=price_table,
        )
        self.options = options
        self.max_workers, self.max_pending = options.max_workers, options.max_pending
        self.max_depth, self.name = options.max_depth, options.name
        self.retain_max, self.retain_ttl_seconds = options.retain_max, options.retain_ttl_seconds
        self.cancel_grace_seconds = options.cancel_grace_seconds
        self.cleanup_timeout_seconds = options.cleanup_timeout_seconds

        self.store_retain_max, self.store_retain_days = store_retain_max, store_retain_days
        cluster_opts = cluster_options(cluster)
        self._persist = Persistence.open(
            store,
            retain=(store_retain_max, store_retain_days),
            memory=(retain_max, self.retain_ttl_seconds),
            runtime_name=name,
            interrupt=cluster_opts is None,
        )
        self._resumer = Resumer(open_checkpoints(checkpointer, self._persist.store))
        self._lock = threading.RLock()
        self._cluster = None if cluster_opts is None else Cluster.open(self._persist, cluster_opts)
        # Seqs go on from the store's, never repeated (in a cluster: in this process's slot).
        first, step = (self._persist.store.last_seq() + 1, 1) if self._cluster is None else (
            self._cluster.first_seq, self._cluster.step)
        self._events = EventHub(name=f"{name}-events", first_seq=first, step=step)
        # Invariant: the fields below are read and written under self._lock.
        self._tasks = Registry(retain_max=retain_max, retain_ttl_seconds=self.retain_ttl_seconds)
        self._slots: SlotPool[RegisteredTask] = SlotPool(max_workers)
        self._closed = False
        #: shutdown(wait=False) left the backend running for queued tasks.
        self._backend_to_close = False
        #: Descendants a task's end has just stopped, to interrupt (see _take_orphans).
        self._orphans: list[RegisteredTask] = []
        self._backend = load_backend(backend)
        self._backend.bind(
            BackendSettings(
                runtime_name=name,
                max_concurrent_runs=max_workers * max_depth,
                max_workers=max_workers,
                cancel_grace_seconds=self.cancel_grace_seconds,
                cleanup_timeout_seconds=self.cleanup_timeout_seconds,
            )
        )
        self.price_table = options.price_table
        self._metering = Metering(  # budgets and usage sums (a remote backend forwards notes)
            name=name, lock=self._lock, price_table=options.price_table,
            publish=self._publish_locked, interrupt=self._interrupt,
            forward_notes=getattr(self._backend, "forward_notes", None),
        )
        self._task_settings = TaskSettings(
            lock=self._lock,
            cancel_grace_seconds=self.cancel_grace_seconds,
            cleanup_timeout_seconds=self.cleanup_timeout_seconds,
            time_out=self._time_out,
            release=self._release_locked,
            ended=self._take_orphans,
            interrupt=self._interrupt,
            charge=self._metering.charge,
            refuse=self._metering.refuse,
        )
        self._waiter = TaskWaiter(
            watch=self._watch,
            lending=self._lending,
            request_cancel=self.request_cancel,
            cleanup_timeout_seconds=self.cleanup_timeout_seconds,
        )
        register_exit_hook(self)
        if self._cluster is not None:
            self._cluster.attach(self, self._events)

    # -- stopping ----------------------------------------------------------------------

    def request_cancel(self, task_id: str, reason: str | None = None) -> bool:
        """Stop a task and its whole subtree. False if unknown or already terminal.

        Returns True when the task was not terminal: it is now stopping (or was
        already). The status turns CANCELLED once the run has unwound.
        """
        check_task_id("request_cancel", "task_id", task_id)
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"request_cancel.reason must be a string or None, got {reason!r}")
        reason = reason or "cancelled by request"
        with self._lock:
            entry = self._tasks.get(task_id)
            if (entry is None and self._cluster is None) or (entry and entry.holder.is_terminal):
                return False
            to_interrupt: list[RegisteredTask] = []
            if entry is not None and entry.holder._latch_stop(SubagentStatus.CANCELLED, reason):
                to_interrupt.append(entry)
                logger.info("%s cancel requested: %s", entry.log_prefix, reason)
            if entry is not None:
                to_interrupt.extend(self._tasks.stop_descendants(entry, f"was cancelled: {reason}"))
        if entry is None and self._cluster is not None:
            # A task another process of the cluster runs: stopped there.
            return self._cluster.request_cancel(task_id, reason)
        self._interrupt(to_interrupt)
        return True

    def cancel_thread(self, thread_id: str, reason: str | None = None) -> int:
        """Stop every unfinished task of a lead agent's thread, foreground and
        background, each with its subtree; returns how many tasks it stopped."""
        check_task_id("cancel_thread", "thread_id", thread_id)
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"cancel_thread.reason must be a string or None, got {reason!r}")
        with self._lock:
            stopped = self._tasks.stop_thread(thread_id, reason or f"thread {thread_id} stopped")
        self._interrupt(stopped)
        return len(stopped)

    def _take_orphans(self, entry: RegisteredTask) -> list[RegisteredTask]:
        """What ``entry``'s end stopped (latched in ``_on_holder_event``), to be
        interrupted by the thread that wrote the end, once it has left the lock."""
        orphans, self._orphans = self._orphans, []
        return orphans

    def _interrupt(self, entries: list[RegisteredTask]) -> None:
        for entry in entries:
            self._backend.interrupt(entry)

    def _time_out(self, entry: RegisteredTask) -> None:
        """A running task's deadline passed (its backend says so): latch
        TIMED_OUT unless a stop was latched first, cascade, interrupt."""
        holder = entry.holder
        reason = (
            f"sub-agent {holder.subagent_name!r} exceeded "
            f"timeout_seconds={entry.timeout_seconds:g}"
        )
        with self._lock:
            if not holder._latch_stop(SubagentStatus.TIMED_OUT, reason):
                return
            others = self._tasks.stop_descendants(entry, "timed out")
        logger.info("%s %s", entry.log_prefix, reason)
        self._interrupt([entry, *others])

    # -- reading ---------------------------------------------------------------------------

    def get(self, task_id: str) -> SubagentResult | None:
        """The result holder of a task, or None if unknown / cleaned up."""
        check_task_id("get", "task_id", task_id)
        with self._lock:
            self._tasks.forget_expired()
            entry = self._tasks.get(task_id)
            if entry is not None:
                return entry.holder
        return self._persist.restore(task_id)

    def list_tasks(
        self,
        parent_id: str | None = None,
        status: SubagentStatus | str | Iterable[SubagentStatus | str] | None = None,
        *,
        thread_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> list[SubagentResult]:
        """Tasks in memory in creation order (in a cluster: every process's
        newest ``retain_max``, from the store), optionally filtered (``thread_id``:
        only the tasks of that lead agent's thread, foreground and background).
        With ``limit`` or ``cursor``: a page from the store, newest first,
        forgotten tasks included: a :class:`TaskList` with the ``next_cursor``."""
        if parent_id is not None:
            check_task_id("list_tasks", "parent_id", parent_id)
        if thread_id is not None:
            check_task_id("list_tasks", "thread_id", thread_id)
        wanted = status_filter(status)
        # In a cluster every process lists the same tasks: the store's, oldest first.
        every = limit is None and cursor is None and self._cluster is not None
        if limit is not None or cursor is not None or every:
            page = self._persist.page(
                limit=max(1, min(self.retain_max, 10_000)) if every
                else 100 if limit is None else limit,
                cursor=cursor, parent_id=parent_id, statuses=wanted, thread_id=thread_id,
                live=self._live,
            )
            return list(reversed(page)) if every else page
        with self._lock:
            self._tasks.forget_expired()
            # From the indexes (_views.py): proportional to the answer.
            found = self._tasks.views.select(parent_id, wanted, thread_id=thread_id)
            return [e.holder for e in (self._tasks if found is None else found)]

    def _live(self, task_ids: list[str]) -> dict[str, SubagentResult]:
        with self._lock:
            entries = (self._tasks.get(task_id) for task_id in task_ids)
            return {e.task_id: e.holder for e in entries if e is not None}

    def cleanup(self, task_id: str) -> bool:
        """Forget a terminal task (memory and store). False if unknown or unfinished."""
        check_task_id("cleanup", "task_id", task_id)
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is not None and not entry.holder.is_terminal:
                return False
            if entry is not None:
                self._tasks.forget(task_id)
        self._resumer.checkpoints.forget(task_id)
        return self._persist.store.delete_task(task_id) or entry is not None

    @property
    def checkpoints(self) -> Checkpoints:
        """This runtime's checkpointer (``.saver``), or why it has none (docs/resume.md)."""
        return self._resumer.checkpoints

    def register_subagents(self, configs: Iterable[SubagentConfig], **run: Any) -> None:
        """Know sub-agents by name to resume their tasks (``run``: tools, parent_model, ...)."""
        self._resumer.register(list(configs), **run)

    def resume(
        self, task_id: str, message: str | None = None, *,
        timeout_seconds: float | None = None, budget: Budget | None = None,
        new_task_id: str | None = None,
    ) -> SubagentResult:
        """A new task (id: ``new_task_id`` or a new one) going on from a stopped task's
        last step, or a finished one's with ``message``; ``ResumeError`` says why not."""
        return self._resumer.resume(task_id, message, timeout_seconds=timeout_seconds,
                                    budget=budget, task_id_new=new_task_id,
                                    get=self.get, submit=self.submit)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Receive every task event (created, started, ai_message, cancel_requested,
        and one terminal event per task) on a dispatcher thread. Returns unsubscribe."""
        check_callable("subscribe", "callback", callback)
        if self._closed:
            raise RuntimeClosedError(
                f"runtime {self.name!r} is shut down; subscribe to a new SubagentRuntime"
            )
        return self._events.subscribe(callback)

    @property
    def store(self) -> TaskStore:
        """The store this runtime keeps its task records and events in."""
        return self._persist.store

    @property
    def last_event_seq(self) -> int:
        """The ``seq`` of the latest task event published. A subscriber that has
        received this seq has every event published since it subscribed."""
        return self._events.last_seq

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: tasks by status, slots, the backend's, the
        store's and the checkpoint writer's (docs/store.md, docs/resume.md)."""
        with self._lock:
            counts = {
                **self._tasks.views.counts(),  # kept with the transitions: O(1)
                "registered": len(self._tasks),
                "submitted_total": self._tasks.submitted_total,
                "active": self._slots.active,
                "free_slots": self._slots.free,
                "queued": self._slots.queued,
                **self._backend.stats(),
                **self._persist.stats(),
            }
        return {**counts, **self.checkpoints.stats()}  # its writer has its own lock

    def tree_usage(self, task_id: str) -> Usage:
        """What a task and every descendant used, summed as they ran (descendants
        forgotten by retention count). ``UnknownTaskError`` if not registered."""
        holder = self.get(task_id)
        if holder is None:
            raise UnknownTaskError(f"no task {task_id!r} in runtime {self.name!r}")
        return holder.tree_usage

    def open_budget(self, budget: Budget, *, label: str) -> BudgetMeter:
        """A meter of ``budget`` shared by the tasks started with ``draw_on=[it]``
        and their subtrees; ``max_seconds`` counts from now; ``label`` names it
        in errors ("budget of <label>")."""
        return self._metering.open_checked(budget, label)

    @property
    def backend(self) -> Backend:
        """The backend that runs this runtime's sub-agents."""
        return self._backend

    @property
    def closed(self) -> bool:
        return self._closed

    # -- waiting ---------------------------------------------------------------------------

    async def wait_terminal(
        self,
        task: str | SubagentResult,
        *,
        on_event: EventCallback | None = None,
        forward_cancel: bool = True,
        cancel_reason: str = CALLER_CANCELLED,
    ) -> SubagentResult:
        """Await a task's terminal status on the caller's loop, without polling.

        * The terminal transition itself wakes the caller's loop.
        * ``on_event`` is called on the caller's loop (in the caller's context)
          for each event of the task, in order: first those recorded before the
          wait began, then each later one, the terminal event last.
        * Called from inside a sub-agent, that sub-agent lends its slot to its
          children while it waits (nested delegation cannot deadlock).
        * With ``forward_cancel``, a ``CancelledError`` in the caller stops the
          task with ``cancel_reason``, waits (shielded, bounded by
          ``cleanup_timeout_seconds`` + 1 s) for it to unwind, then propagates.

        Given the holder (not just the id), a task already evicted by
        retention still resolves: only terminal tasks are ever evicted.
        """
        check_wait("wait_terminal", task, on_event, cancel_reason)
        return await self._waiter.wait(
            task, on_event=on_event, forward_cancel=forward_cancel, cancel_reason=cancel_reason
        )

    def wait_terminal_blocking(
        self,
        task: str | SubagentResult,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        forward_cancel: bool = True,
        cancel_reason: str = CALLER_CANCELLED,
    ) -> SubagentResult:
        """The blocking twin of :meth:`wait_terminal`, for sync code.

        ``on_event`` is called on this thread. When ``timeout`` runs out the
        holder is returned as it is (not terminal; the task keeps running).
        An exception in the wait (``KeyboardInterrupt``) is forwarded like a
        cancellation: the task is stopped, waited for (bounded), and the
        exception propagates.
        """
        check_wait("wait_terminal_blocking", task, on_event, cancel_reason)
        if timeout is not None:
            check_number("wait_terminal_blocking", "timeout", timeout, positive=False, finite=True)
        return self._waiter.wait_blocking(
            task,
            timeout=timeout,
            on_event=on_event,
            forward_cancel=forward_cancel,
            cancel_reason=cancel_reason,
        )

    def _watch(
        self, task: str | SubagentResult, hand_over: Callable[[TaskEvent], None]
    ) -> tuple[SubagentResult, list[TaskEvent], Callable[[], None]]:
        try:
            with self._lock:
                return self._tasks.watch(task, hand_over, self._events, runtime_name=self.name)
        except UnknownTaskError:
            if self._cluster is not None and isinstance(task, str):
                return self._cluster.watch(task, hand_over)  # it may run elsewhere
            stored = self._persist.restore(task) if isinstance(task, str) else None
            if stored is None or not stored.is_terminal:
                raise
            return stored, stored._events_so_far(), lambda: None  # it never changes

    def _lending(self) -> AbstractContextManager[None]:
        """While the caller (a task of this runtime) waits, its slot runs its children."""
        task_id = task_in_scope(self)
        with self._lock:
            entry = self._tasks.get(task_id) if task_id is not None else None
        state = entry.slot if entry is not None else None
        return self._slots.lending(state, lock=self._lock, start=self._start_locked)

    # -- submission ------------------------------------------------------------------------

    def submit(
        self,
        *,
        subagent_name: str,
        task: str,
        run: RunFunction,
        timeout_seconds: float,
        task_id: str | None = None,
        parent_id: str | None = None,
        trace_id: str | None = None,
        owner: str | None = None,
        context: contextvars.Context | None = None,
        thread_id: str | None = None,
        background: bool = False,
        budgets: Sequence[Budget] = (),
        draw_on: Sequence[BudgetMeter] = (),
        model_name: str | None = None,
        resumed_from: str | None = None,
    ) -> SubagentResult:
        """Register a task and start it when a slot is free. Returns its holder.

        ``run`` is the coroutine function of the run (``SubagentExecutor``
        makes one from a config); ``context`` is what the run starts from
        (default: an empty context; the task's own scope is added).
        ``thread_id``: the lead agent's thread the task belongs to (default:
        its parent's). ``background``: a background task, always a root (no
        ``parent_id``), so no ancestor's end or stop reaches it. ``budgets``:
        new budgets of this task and its subtree; ``draw_on``: meters it also
        draws on (besides its ancestors'); ``model_name``: for ``max_cost``.

        Raises ``ValueError`` (bad id, unknown parent), ``DepthError``,
        ``CapacityError``, ``RuntimeClosedError``, ``BudgetExceeded`` (a budget
        it draws on is spent) or ``UnpricedModelError``; then nothing is registered.
        """
        check_submission(
            subagent_name=subagent_name,
            task=task,
            run=run,
            timeout_seconds=timeout_seconds,
            ids={"task_id": task_id, "parent_id": parent_id, "trace_id": trace_id, "owner": owner},
            context=context,
            thread_id=thread_id,
            background=background,
        )
        # Outside the lock: a remote backend serialises the run here and
        # refuses what it cannot send, before anything is registered.
        payload = self._backend.prepare(run, subagent_name=subagent_name)
        # A parent another process of the cluster runs: read from the store, unlocked.
        remote = None if self._cluster is None or parent_id is None or parent_id in self._tasks \
            else self._cluster.remote_parent(parent_id)
        with self._lock:
            if self._closed:
                raise RuntimeClosedError(
                    f"runtime {self.name!r} is shut down; create a new SubagentRuntime "
                    "or call subagent_exec.configure()"
                )
            if task_id is not None and task_id in self._tasks:
                raise ValueError(f"task_id {task_id!r} is already registered")
            parent: RegisteredTask | None = None
            if parent_id is not None:
                parent = self._tasks.get(parent_id)
                if parent is None and remote is None:
                    raise ValueError(f"parent_id {parent_id!r} is not a registered task")
            above = parent.holder if parent is not None else remote
            depth = 1 if above is None else above.depth + 1
            if depth > self.max_depth:
                raise DepthError(
                    f"sub-agent {subagent_name!r} would run at depth {depth}, deeper than "
                    f"max_depth={self.max_depth}; finish this work without delegating or "
                    "raise SubagentRuntime(max_depth=...)"
                )
            if (
                self.max_pending is not None
                and self._slots.queued >= self.max_pending
                and not self._slots.can_start_now(parent.slot if parent else None)
            ):
                raise CapacityError(
                    f"{self._slots.queued} tasks are already waiting (max_pending="
                    f"{self.max_pending}); wait for some to finish or raise max_pending"
                )
            task_id = task_id or uuid.uuid4().hex
            label = f"task {task_id} ({subagent_name})"
            meters, own = self._metering.meters_for(budgets, label, draw_on, parent, model_name)
            run_context = (context if context is not None else contextvars.Context()).copy()
            run_context.run(current_scope.set, TaskScope(task_id, self))
            entry = self._tasks.register(
                SubagentResult(
                    task_id=task_id,
                    subagent_name=subagent_name,
                    task=task,
                    trace_id=trace_id or (above.trace_id if above else uuid.uuid4().hex),
                    parent_id=parent_id,
                    depth=depth,
                    lock=self._lock,
                    on_event=self._on_holder_event,
                    owner=owner if owner is not None else (above.owner if above else None),
                    thread_id=thread_id or (above.thread_id if above else None),
                    background=background,
                    resumed_from=resumed_from,
                ),
                parent,
                run=run,
                payload=payload,
                timeout_seconds=timeout_seconds,
                context=run_context,
                settings=self._task_settings,
            )
            self._metering.attach(entry, parent, meters, own)
            holder = entry.holder
            created = {"task": task, "depth": depth, "thread_id": holder.thread_id}
            self._publish_locked("created", holder, {**created, "background": background})
            if parent is not None and (
                parent.holder.is_terminal or parent.holder.cancel_event.is_set()
            ):
                # Checked and written under the same lock as the parent's stop:
                # a child spawned while its ancestor is being stopped never runs.
                holder._latch_stop(
                    SubagentStatus.CANCELLED,
                    f"parent {parent_id} ({parent.subagent_name}) was already stopped"
                    # Its own reason names the ancestor whose stop reached it.
                    + (f" ({parent.holder.cancel_reason})" if parent.holder.cancel_reason else ""),
                )
                return holder
            if remote is not None and remote.stopped is not None:
                holder._latch_stop(SubagentStatus.CANCELLED, f"was cancelled: {remote.stopped}")
                return holder
            self._start_locked(self._slots.enqueue(entry.slot, parent.slot if parent else None))
            logger.debug("%s submitted %s (depth %d)", holder.log_prefix, subagent_name, depth)
            return holder

    def _start_locked(self, granted: list[Any]) -> None:
        for state in granted:
            self._backend.start(state.task)

    def _release_locked(self, entry: RegisteredTask) -> None:
        """A run is over: give its slot back and start what can start."""
        self._start_locked(self._slots.release(entry.slot))

    # -- events and retention --------------------------------------------------------------

    def _on_holder_event(self, kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        # Runs under the lock, inside the holder's transition.
        if kind == "started" or kind in TERMINAL_EVENT_KINDS:
            self._tasks.status_changed(holder.task_id)  # before anything reads a view
        if kind == "cancel_requested":
            entry = self._tasks.get(holder.task_id)
            if entry is not None:
                self._slots.withdraw(entry.slot)  # if it was waiting, it never starts
        self._publish_locked(kind, holder, data)
        if kind in TERMINAL_EVENT_KINDS:
            if kind in ("completed", "failed") and holder.children:
                # Stop means the whole tree: what it left running is stopped
                # too (before retention may forget this task and its links).
                entry = self._tasks.get(holder.task_id)
                if entry is not None:
                    what = f"{kind} without waiting for it"
                    self._orphans += self._tasks.stop_descendants(entry, what)
            self._metering.detach(self._tasks.get(holder.task_id))  # draws on nothing now
            self._tasks.finished(holder.task_id)
            if self._closed and self._tasks.unfinished == 0 and self._backend_to_close:
                # shutdown(wait=False) without cancel: the last task has ended.
                self._backend_to_close = False
                self._backend.shutdown(wait=False, deadline=None)

    def _publish_locked(self, kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        event = self._events.publish(kind, holder, data)
        holder._record_event(event)
        self._persist.record(event, holder)  # never blocks on disk (docs/store.md)

    # -- shutting down ---------------------------------------------------------------------

    def shutdown(
        self, cancel: bool = True, wait: bool = True, timeout: float | None = None
    ) -> bool:
        """Refuse new tasks, then bring every registered task to its end.

        ``cancel=True``: every unfinished task is stopped (queued ones at once,
        running ones once they have unwound). ``cancel=False``: running and
        queued tasks go on to their own end; queued ones still start, in order,
        as slots free up. With ``wait``, return once every task is terminal and
        the backend's workers have finished (thread backend: every worker
        thread has exited); False if ``timeout`` ran out first, in which case
        runs still unwinding were abandoned (``CleanupTimeout``). Without
        ``wait``, return at once; the backend is shut down as soon as the last
        task has ended.
        """
        if timeout is not None:
            check_number("shutdown", "timeout", timeout, positive=False, finite=True)
        with self._lock:
            self._closed = True
            unfinished = [e.holder for e in self._tasks.views.unfinished()]
            # Without cancel and wait, queued tasks still need the backend:
            # the last terminal transition shuts it down (_on_holder_event).
            defer_backend = not cancel and not wait and self._tasks.unfinished > 0
            self._backend_to_close = defer_backend
        if cancel:
            for holder in unfinished:
                self.request_cancel(holder.task_id, "runtime shut down")
        if not wait:
            if not defer_backend:
                self._backend.shutdown(wait=False, deadline=None)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = all(holder.wait(remaining(deadline)) for holder in unfinished)
        # At the deadline, runs still unwinding are abandoned by the backend
        # (their statuses are written): ``timeout`` bounds the whole shutdown.
        self._metering.close()  # no budget deadline fires any more
        backend_done = self._backend.shutdown(wait=True, deadline=deadline)
        # Every terminal event is written before the store is let go of.
        left = 10.0 if deadline is None else max(1.0, remaining(deadline) or 0.0)
        self._persist.close(left)
        self._resumer.checkpoints.close(left)
        if self._cluster is not None:
            self._cluster.close()
        if not backend_done or not ended:
            return False
        self._events.close(remaining(deadline))
        return True

    def __enter__(self) -> SubagentRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(cancel=True, wait=True)

