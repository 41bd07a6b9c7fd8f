"""The contract between the runtime and what runs a task (a backend).

Everything a backend touches is typed here, with public types only, so a
backend can be written outside this package:

* :class:`BackendSettings`: what a backend learns about its runtime in ``bind``.
* :class:`TaskTicket`: one task the runtime has registered and granted a slot.
  It carries what the backend needs (the run, the prepared payload, the
  deadline, the context to run in, the stop limits) and the only operations a
  backend may perform on the task: ``begin``, ``record_ai_message``,
  ``time_out``, ``finish`` and ``release``.
* :class:`RunHandle`: what a run coroutine sees of its task (a ticket is one;
  a remote worker makes its own).
* :class:`RunOutcome` (what a run returns) and :class:`RunEnding` (how a run
  ended, in a form that crosses process boundaries).
* :class:`Backend`: the protocol ``SubagentRuntime(backend=...)`` accepts.

The duties of a backend:

* ``prepare(run, subagent_name)`` is called by ``submit`` *before* anything is
  registered; it may refuse the task by raising (e.g. a config that cannot be
  sent to a remote worker). What it returns is ``ticket.payload``.
* ``start(ticket)`` is called under the runtime's lock once a slot is granted;
  it must not block. Before the run starts, the backend calls
  ``ticket.begin()``; False means a stop won the race and the run never starts
  (then ``ticket.release()`` and nothing else).
* The backend enforces the deadline itself from RUNNING (a timer, never a
  thread per task) by calling ``ticket.time_out()``.
* ``interrupt(ticket)`` is called after a stop was latched, from any thread,
  any number of times; it makes the run unwind (after
  ``ticket.cancel_grace_seconds``) and bounds its cleanup by
  ``ticket.cleanup_timeout_seconds``.
* Once the run has unwound: ``ticket.finish(ending)`` (first write wins; a
  latched stop wins over COMPLETED/FAILED), then ``ticket.release()`` once the
  backend's capacity for the run is free again.
* ``shutdown(wait, deadline)`` comes after every task was asked to stop; it
  returns False if the workers did not finish by ``deadline`` (a
  ``time.monotonic()`` value, or None for no limit).
* ``stats()`` returns integer counters merged into ``SubagentRuntime.stats()``.

A backend keeps its own per-task state under its own lock; it never takes the
runtime's lock.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from contextvars import Context
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import BudgetExceeded, MaxTurnsExceeded, describe
from ._result import SubagentResult
from ._status import SubagentStatus


@dataclass(frozen=True)
class RunOutcome:
    """What a sub-agent run returns when it ends on its own."""

    text: str
    #: Why it ended early ("max_turns", ...), None for a normal end.
    stop_reason: str | None = None


class RunHandle(abc.ABC):
    """What a run coroutine sees of its task: who it is, the stop signal, and
    where its AI messages go. Thread-safe."""

    @property
    @abc.abstractmethod
    def task_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def trace_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def subagent_name(self) -> str: ...

    @property
    @abc.abstractmethod
    def prompt(self) -> str:
        """The task text the sub-agent was given."""

    @property
    @abc.abstractmethod
    def cancel_event(self) -> threading.Event:
        """Set as soon as a stop is requested (cancel, deadline)."""

    @property
    @abc.abstractmethod
    def cancel_reason(self) -> str | None: ...

    @abc.abstractmethod
    def record_ai_message(self, record: dict[str, Any], message_id: str) -> bool:
        """Record one AI message (once per ``message_id``); False if it was a
        duplicate or the task has already ended."""

    @abc.abstractmethod
    def last_ai_text(self) -> str | None:
        """The text of the last AI message recorded, if any has text."""

    def check_budget(self, model_name: str | None) -> None:
        """At a model call's entry: raise ``BudgetExceeded`` when a budget the
        task draws on forbids the call (``model_name``: the model about to be
        called, for ``max_cost``). This default allows every call: a handle
        that cannot see the task's budgets (a remote worker's) leaves them to
        the runtime, which charges each call when its AI message is recorded."""
        return None

    def take_notes(self) -> list[str]:
        """Notes for the sub-agent's model, delivered before its next model
        call (a budget's warning); each is returned once. Default: none."""
        return []

    def record_resume(self, attempt: int, error: str) -> None:
        """The run goes on from its last checkpoint after a transient ``error``
        (``SubagentConfig.max_resumes``); a ``resumed`` event says so. Handles
        that cannot report it (remote ones) ignore it."""
        return None

    @property
    def log_prefix(self) -> str:
        return f"[task={self.task_id} trace={self.trace_id}]"


#: The coroutine function of one run, given the handle it reports into.
RunFunction = Callable[[RunHandle], Coroutine[Any, Any, RunOutcome]]


@dataclass(frozen=True)
class RunEnding:
    """How one run ended, in a form that can cross a process boundary.

    ``status`` is what the run itself says; the ticket turns it into the
    latched stop status when a stop was requested first.
    """

    status: SubagentStatus
    result: str | None = None
    error: str | None = None
    stop_reason: str | None = None

    @classmethod
    def of_task(cls, task: asyncio.Task[RunOutcome], handle: RunHandle) -> RunEnding:
        """The ending of a finished run task (``task.done()`` must be true).

        ``handle.cancel_event`` tells our own stop apart from a cancel that
        came from inside the run.
        """
        if task.cancelled():
            if handle.cancel_event.is_set():
                return cls(SubagentStatus.CANCELLED)
            return cls(
                SubagentStatus.FAILED,
                error="CancelledError: the sub-agent's run was cancelled from inside it",
            )
        exc = task.exception()
        if exc is None:
            outcome = task.result()
            return cls(
                SubagentStatus.COMPLETED, result=outcome.text, stop_reason=outcome.stop_reason
            )
        if isinstance(exc, BudgetExceeded):
            return cls(
                SubagentStatus.FAILED,
                result=handle.last_ai_text(),
                error=describe(exc),
                stop_reason="budget",
            )
        if isinstance(exc, MaxTurnsExceeded):
            return cls(
                SubagentStatus.FAILED,
                result=handle.last_ai_text(),
                error=describe(exc),
                stop_reason="max_turns",
            )
        return cls(SubagentStatus.FAILED, error=describe(exc))

    @classmethod
    def cleanup_timeout(cls) -> RunEnding:
        """A stopped run that did not unwind within its cleanup limit."""
        return cls(
            SubagentStatus.CANCELLED,
            error="CleanupTimeout: the sub-agent did not unwind in time",
            stop_reason="cleanup_timeout",
        )


class TaskTicket(RunHandle):
    """One registered task, as a backend sees it. Made by the runtime only."""

    @property
    @abc.abstractmethod
    def holder(self) -> SubagentResult:
        """The task's public result holder (read it; never write it)."""

    @property
    @abc.abstractmethod
    def run(self) -> RunFunction: ...

    @property
    @abc.abstractmethod
    def payload(self) -> Any:
        """What the backend's ``prepare`` returned for this task."""

    @property
    @abc.abstractmethod
    def timeout_seconds(self) -> float:
        """The deadline, counted from RUNNING."""

    @property
    @abc.abstractmethod
    def context(self) -> Context:
        """The context to run in: empty but for the task's own scope. Copy it
        before running in it (a Context can be entered by one thread at a time)."""

    @property
    @abc.abstractmethod
    def cancel_grace_seconds(self) -> float: ...

    @property
    @abc.abstractmethod
    def cleanup_timeout_seconds(self) -> float: ...

    @property
    @abc.abstractmethod
    def stop_status(self) -> SubagentStatus | None:
        """CANCELLED or TIMED_OUT once a stop was latched, else None."""

    @abc.abstractmethod
    def begin(self) -> bool:
        """PENDING -> RUNNING; False (and the run must not start) if a stop won."""

    @abc.abstractmethod
    def time_out(self) -> None:
        """The deadline passed: latch TIMED_OUT (unless a stop came first),
        cascade to the subtree, and interrupt every run concerned."""

    @abc.abstractmethod
    def finish(self, ending: RunEnding) -> bool:
        """Write the terminal status (first write wins); False if already terminal."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the task's slot back (once the backend's capacity is free)."""


@dataclass(frozen=True)
class BackendSettings:
    """What a backend learns about the runtime it serves, in ``bind``."""

    #: The runtime's name (for thread names and logs).
    runtime_name: str
    #: The most runs that can hold a slot at once: ``max_workers`` slots, each
    #: possibly lent down a chain of at most ``max_depth`` waiting parents.
    max_concurrent_runs: int
    #: ``max_workers``: how many sub-agents do work at once.
    max_workers: int
    #: How long a stopped run may finish its current await before it is interrupted.
    cancel_grace_seconds: float
    #: How long an interrupted run may spend in its ``finally:`` blocks.
    cleanup_timeout_seconds: float


@runtime_checkable
class Backend(Protocol):
    """What ``SubagentRuntime(backend=...)`` accepts besides "thread" and "ray"."""

    #: A short name for logs.
    name: str

    def bind(self, settings: BackendSettings) -> None: ...

    def prepare(self, run: RunFunction, *, subagent_name: str) -> Any: ...

    def start(self, ticket: TaskTicket) -> None: ...

    def interrupt(self, ticket: TaskTicket) -> None: ...

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool: ...

    def stats(self) -> dict[str, int]: ...


def remaining(deadline: float | None) -> float | None:
    """Seconds left until a ``time.monotonic()`` deadline (None: no deadline),
    at most ``threading.TIMEOUT_MAX`` (a longer wait cannot be asked for)."""
    if deadline is None:
        return None
    return min(max(0.0, deadline - time.monotonic()), threading.TIMEOUT_MAX)
