"""``RegisteredTask``: one task of the runtime's registry, and the ticket its
backend runs it with (the only way a backend acts on a task)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import Context
from dataclasses import dataclass
from typing import Any

from ._checks import check_callable, check_number, check_optional_text, check_text
from ._contract import RunEnding, RunFunction, RunOutcome, TaskTicket
from ._meter import BudgetMeter
from ._notes import Inbox
from ._result import SubagentResult
from ._slots import SlotState
from ._status import SubagentStatus
from ._usage import PriceTable, Usage

logger = logging.getLogger("subagent_exec")


@dataclass(frozen=True)
class TaskSettings:
    """What every task of one runtime shares: its lock, stop limits, and the
    runtime operations a ticket triggers."""

    lock: threading.RLock
    cancel_grace_seconds: float
    cleanup_timeout_seconds: float
    #: Latch TIMED_OUT, cascade and interrupt (the runtime's deadline path).
    time_out: Callable[[RegisteredTask], None]
    #: Give the task's slot back and start what can start (under the lock).
    release: Callable[[RegisteredTask], None]
    #: The task has just become terminal (under the lock): what its end
    #: stopped, to interrupt once the lock is released.
    ended: Callable[[RegisteredTask], list[RegisteredTask]]
    #: Interrupt these runs (outside the lock).
    interrupt: Callable[[list[RegisteredTask]], None]
    #: Count a recorded AI message's usage above the task and enforce budgets
    #: (_metering.py; the default counts nothing more).
    charge: Callable[[RegisteredTask, dict[str, Any], Usage], None] = lambda *_: None
    #: At a model call's entry: raise BudgetExceeded if a budget forbids it.
    refuse: Callable[[RegisteredTask, str | None], None] = lambda *_: None


class RegisteredTask(TaskTicket):
    """A task in the registry: its holder, its run, and its slot bookkeeping."""

    def __init__(
        self,
        *,
        holder: SubagentResult,
        run: RunFunction,
        payload: Any,
        timeout_seconds: float,
        context: Context,
        settings: TaskSettings,
    ) -> None:
        self._holder = holder
        self._run: RunFunction = run
        self._payload = payload
        self._timeout_seconds = timeout_seconds
        self._context = context
        self._settings = settings
        # Invariant: used only under the runtime's lock (see _slots.py).
        self.slot: SlotState[RegisteredTask] = SlotState(self)
        #: The meters of every budget this task draws on (its own, its
        #: ancestors', its lead run's); set once, at registration (_metering.py).
        self.meters: tuple[BudgetMeter, ...] = ()
        #: The holders of its ancestors, whose ``tree_usage`` counts this
        #: task's calls (kept even once they are forgotten).
        self.ancestors: tuple[SubagentResult, ...] = ()
        #: The price table its own calls' cost is counted with.
        self.prices: PriceTable | None = None
        #: Notes for its model (a budget's warning), taken before its next model call.
        self.notes = Inbox()

    def __repr__(self) -> str:
        return f"<RegisteredTask {self._holder!r}>"

    # -- what a run sees -----------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self._holder.task_id

    @property
    def trace_id(self) -> str:
        return self._holder.trace_id

    @property
    def subagent_name(self) -> str:
        return self._holder.subagent_name

    @property
    def prompt(self) -> str:
        return self._holder.task

    @property
    def cancel_event(self) -> threading.Event:
        return self._holder.cancel_event

    @property
    def cancel_reason(self) -> str | None:
        return self._holder.cancel_reason

    @property
    def log_prefix(self) -> str:
        return self._holder.log_prefix

    def record_ai_message(self, record: dict[str, Any], message_id: str) -> bool:
        # After a stop, only a grace period lets the call in flight deliver.
        usage = Usage.of_record(record, self.prices)  # one model call
        if not self._holder._add_ai_message(
            record, message_id, after_stop=self._settings.cancel_grace_seconds > 0, usage=usage
        ):
            return False
        for ancestor in self.ancestors:
            ancestor._add_tree_usage(usage)
        self._settings.charge(self, record, usage)  # its budgets
        return True

    def check_budget(self, model_name: str | None) -> None:
        if self.meters:
            self._settings.refuse(self, model_name)

    def take_notes(self) -> list[str]:
        return self.notes.take()

    def last_ai_text(self) -> str | None:
        return self._holder.last_ai_text()

    def record_resume(self, attempt: int, error: str) -> None:
        self._holder._note_resume(attempt, error)

    # -- what a backend sees -------------------------------------------------------------

    @property
    def holder(self) -> SubagentResult:
        return self._holder

    @property
    def run(self) -> RunFunction:
        return self._run

    @property
    def payload(self) -> Any:
        return self._payload

    @property
    def timeout_seconds(self) -> float:
        return self._timeout_seconds

    @property
    def context(self) -> Context:
        return self._context

    @property
    def cancel_grace_seconds(self) -> float:
        return self._settings.cancel_grace_seconds

    @property
    def cleanup_timeout_seconds(self) -> float:
        return self._settings.cleanup_timeout_seconds

    @property
    def stop_status(self) -> SubagentStatus | None:
        return self._holder._stop_status

    def begin(self) -> bool:
        return self._holder._start()

    def time_out(self) -> None:
        self._settings.time_out(self)

    def finish(self, ending: RunEnding) -> bool:
        holder = self._holder
        if (
            ending.status is SubagentStatus.FAILED
            and ending.stop_reason is None
            and not holder.cancel_event.is_set()
        ):
            logger.info("%s failed: %s", holder.log_prefix, ending.error)
        settings = self._settings
        # One critical section: whoever is woken by the terminal status (and
        # then reads stats() or submits again) finds the slot already free.
        with settings.lock:
            if not holder._finish(
                ending.status,
                result=ending.result,
                error=ending.error,
                stop_reason=ending.stop_reason,
            ):
                return False
            settings.release(self)
            orphans = settings.ended(self)
        if orphans:
            settings.interrupt(orphans)
        return True

    def release(self) -> None:
        with self._settings.lock:
            self._settings.release(self)

    # -- the registry's own --------------------------------------------------------------

    def drop_references(self) -> None:
        """Forgotten by the registry: let go of the user's objects (stale
        references to this ticket may remain in queues until they are popped)."""
        self._run = _forgotten_run
        self._payload = None
        self._context = Context()


async def _forgotten_run(handle: Any) -> RunOutcome:  # pragma: no cover
    raise RuntimeError("this task was cleaned up")


def check_submission(
    *,
    subagent_name: object,
    task: object,
    run: object,
    timeout_seconds: object,
    ids: dict[str, object],
    context: object,
    thread_id: object = None,
    background: object = False,
) -> None:
    """The arguments of ``SubagentRuntime.submit``: TypeError / ValueError naming the bad one."""
    check_text("submit", "subagent_name", subagent_name)
    check_text("submit", "task", task)
    check_callable("submit", "run", run)
    check_number("submit", "timeout_seconds", timeout_seconds, positive=True, finite=True)
    for name, value in ids.items():  # task_id, parent_id, trace_id, owner
        check_optional_text("submit", name, value)
    if context is not None and not isinstance(context, Context):
        raise TypeError(f"submit.context must be a contextvars.Context, got {context!r}")
    check_optional_text("submit", "thread_id", thread_id)
    if not isinstance(background, bool):
        raise TypeError(f"submit.background must be a bool, got {background!r}")
    if background and ids.get("parent_id") is not None:
        raise ValueError(
            "submit.parent_id must be None for a background task: background tasks are "
            "roots, so no ancestor's end or stop reaches them"
        )
