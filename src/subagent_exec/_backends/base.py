"""The backend contract, and how a finished run turns into a terminal status.

A backend is bound to one runtime (``bind``) and then only ever sees tasks the
runtime has already registered and granted a slot. Its duties:

* ``prepare(run, subagent_name)``: called by ``submit`` *before* anything is
  registered; may refuse the task by raising (e.g. a config that cannot be
  sent to a remote worker). Returns a payload kept on the task (or None).
* ``start(entry)``: called under the runtime's lock once a slot is granted.
  Must not block. Before the run starts it calls ``holder._start()``; False
  means a stop won the race and the run never starts.
* enforce the deadline itself from RUNNING (a timer, never a thread per task)
  by calling ``runtime._time_out(entry)``, which latches TIMED_OUT and
  cascades;
* ``interrupt(entry)``: called after a stop was latched, from any thread, any
  number of times; makes the run unwind (honouring ``cancel_grace_seconds``)
  and bounds its cleanup by ``cleanup_timeout_seconds``;
* write the terminal status through ``holder._finish`` only once the run has
  unwound (first write wins; a latched stop wins over COMPLETED/FAILED), and
  give the slot back with ``runtime._release_slot(entry)`` once its worker
  capacity is free again;
* ``shutdown(wait, deadline)`` after every task was asked to stop; returns
  False if its workers did not finish by ``deadline`` (a ``time.monotonic``
  value, or None for no limit);
* ``stats()``: extra integer counters merged into ``SubagentRuntime.stats()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import MaxTurnsExceeded
from .._result import SubagentResult
from .._status import SubagentStatus

if TYPE_CHECKING:
    from .._runtime import RunFunction, SubagentRuntime, _Task

logger = logging.getLogger("subagent_exec")


@runtime_checkable
class Backend(Protocol):
    """What ``SubagentRuntime(backend=...)`` accepts besides "thread" and "ray"."""

    #: A short name for logs and ``SubagentRuntime.backend_name``.
    name: str

    def bind(self, runtime: SubagentRuntime) -> None: ...

    def prepare(self, run: RunFunction, *, subagent_name: str) -> Any: ...

    def start(self, entry: _Task) -> None: ...

    def interrupt(self, entry: _Task) -> None: ...

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool: ...

    def stats(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Ending:
    """How one run ended, in a form that can cross a process boundary.

    ``status`` is what the run itself says; ``SubagentResult._finish`` turns
    it into the latched stop status when a stop was requested.
    """

    status: SubagentStatus
    result: str | None = None
    error: str | None = None
    stop_reason: str | None = None


def ending_of(inner: asyncio.Task[Any], holder: SubagentResult) -> Ending:
    """The ending of a finished run task (``inner.done()`` must be true).

    ``holder`` is the holder the run reported into; its ``cancel_event`` tells
    our own stop apart from a cancel that came from inside the run.
    """
    if inner.cancelled():
        if holder.cancel_event.is_set():
            return Ending(SubagentStatus.CANCELLED)
        return Ending(
            SubagentStatus.FAILED,
            error="CancelledError: the sub-agent's run was cancelled from inside it",
        )
    exc = inner.exception()
    if exc is None:
        outcome = inner.result()
        return Ending(
            SubagentStatus.COMPLETED, result=outcome.text, stop_reason=outcome.stop_reason
        )
    if isinstance(exc, MaxTurnsExceeded):
        return Ending(
            SubagentStatus.FAILED,
            result=last_ai_text(holder),
            error=describe(exc),
            stop_reason="max_turns",
        )
    return Ending(SubagentStatus.FAILED, error=describe(exc))


def finish(holder: SubagentResult, ending: Ending) -> bool:
    """Write ``ending`` as the terminal status (first write wins)."""
    if (
        ending.status is SubagentStatus.FAILED
        and ending.stop_reason is None
        and not holder.cancel_event.is_set()
    ):
        logger.info("%s failed: %s", log_extra(holder), ending.error)
    return holder._finish(
        ending.status, result=ending.result, error=ending.error, stop_reason=ending.stop_reason
    )


def describe(exc: BaseException) -> str:
    """``"OriginalType: message"``, the form of every ``error`` we write."""
    return f"{type(exc).__name__}: {exc}"


def last_ai_text(holder: SubagentResult) -> str | None:
    """The text of the last AI message recorded so far, if any has text."""
    for message in reversed(holder.ai_messages):
        text = message.get("text")
        if text:
            return str(text)
    return None


def log_extra(holder: SubagentResult) -> str:
    return f"[task={holder.task_id} trace={holder.trace_id}]"


def remaining(deadline: float | None) -> float | None:
    """Seconds left until a ``time.monotonic()`` deadline (None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
