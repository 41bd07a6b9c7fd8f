"""The worker side: :class:`SubagentWorker`, an async Ray actor that runs many
sub-agents at once on its own event loop."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray import cloudpickle

from ..._context import TaskScope, current_scope
from ..._contract import RunEnding, RunHandle, RunOutcome
from ..._errors import describe
from ..._status import SubagentStatus
from .delegation import Channel, current_channel

#: How long an actor keeps a stop whose run it has not seen (see SubagentWorker).
EARLY_STOP_TTL_SECONDS = 300.0

#: Stream items: ("started", None, None) first, then ("ai", record, message_id),
#: ("call", ...), and last ("end", RunEnding, None).
STARTED = "started"
AI_MESSAGE = "ai"
END = "end"

StreamItem = tuple[str, Any, Any]


class WorkerRunHandle(RunHandle):
    """What a run on a worker reports into: its AI messages go to the run's
    stream (and on to the driver's holder); the driver's stops set its event."""

    def __init__(
        self, task_id: str, meta: Mapping[str, Any], outbox: asyncio.Queue[StreamItem | None]
    ) -> None:
        self._task_id = task_id
        self._meta = dict(meta)
        self._outbox = outbox
        self._cancel_event = threading.Event()
        self._cancel_reason: str | None = None
        self._seen: set[str] = set()
        self._last_text: str | None = None
        #: Budget notes the driver sent, read before the next model call.
        self._notes: list[str] = []

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def trace_id(self) -> str:
        return str(self._meta["trace_id"])

    @property
    def subagent_name(self) -> str:
        return str(self._meta["subagent_name"])

    @property
    def prompt(self) -> str:
        return str(self._meta["task"])

    @property
    def cancel_event(self) -> threading.Event:
        return self._cancel_event

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel_reason

    def record_ai_message(self, record: dict[str, Any], message_id: str) -> bool:
        # Called on the actor's loop (the run's own thread).
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        if record.get("text"):
            self._last_text = str(record["text"])
        self._outbox.put_nowait((AI_MESSAGE, record, message_id))
        return True

    def last_ai_text(self) -> str | None:
        return self._last_text

    def take_notes(self) -> list[str]:
        # On the actor's loop, like note(): no lock needed.
        notes, self._notes = self._notes, []
        return notes

    def add_notes(self, notes: list[str]) -> None:
        self._notes += notes

    def stop(self, reason: str) -> bool:
        """Latch the driver's stop (the first one wins); sets the event the
        run's cooperative checks read."""
        if self._cancel_event.is_set():
            return False
        self._cancel_reason = reason
        self._cancel_event.set()
        return True


@dataclass
class _WorkerRun:
    handle: WorkerRunHandle
    inner: asyncio.Task[RunOutcome]
    channel: Channel


class SubagentWorker:
    """An async actor running many sub-agents at once on its own event loop."""

    def __init__(self) -> None:
        # Pay the import of the engine and of langchain's agent once per
        # actor, when it is created, instead of on the first run.
        from langchain.agents import create_agent  # noqa: F401

        from ... import _run  # noqa: F401

        self._runs: dict[str, _WorkerRun] = {}
        #: Stops that arrived before their run (Ray does not order the calls
        #: of an async actor); applied when the run arrives. A stop can also
        #: arrive just after its run ended: such entries are dropped after
        #: EARLY_STOP_TTL_SECONDS.
        self._early_stops: dict[str, tuple[str, float, float]] = {}

    async def ready(self) -> dict[str, Any]:
        """Returns once the engine is imported: where this actor lives."""
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "pid": os.getpid()}

    async def lifeline(self) -> None:
        """Never returns. The pool keeps one call of it pending per actor, so
        the actor's loss (its process, its node, or the way to it) is known at
        once, whether or not the actor has runs."""
        await asyncio.Event().wait()

    async def run(
        self, task_id: str, meta: Mapping[str, Any], payload: bytes
    ) -> AsyncIterator[StreamItem]:
        """Run one sub-agent; yields its AI messages and calls, then its ending.

        The first item, STARTED, leaves before the run is even unpickled: a
        driver that lost this actor without having received it knows that the
        run did not start here, and sends it elsewhere (the one gap, an item
        lost in flight as the node dies, is in docs/ray.md, "Losing a node").
        """
        yield (STARTED, None, None)
        outbox: asyncio.Queue[StreamItem | None] = asyncio.Queue()
        handle = WorkerRunHandle(task_id, meta, outbox)
        try:
            run_function = cloudpickle.loads(payload)
        except Exception as exc:
            error = f"cannot load the sub-agent on the Ray worker: {describe(exc)}"
            yield (END, RunEnding(SubagentStatus.FAILED, error=error), None)
            return
        channel = Channel(outbox)
        context = contextvars.Context()
        context.run(current_scope.set, TaskScope(task_id, None))
        context.run(current_channel.set, channel)
        inner = asyncio.get_running_loop().create_task(run_function(handle), context=context)
        inner.add_done_callback(lambda _task: outbox.put_nowait(None))
        run = self._runs[task_id] = _WorkerRun(handle, inner, channel)
        early = self._early_stops.pop(task_id, None)
        if early is not None:
            self._stop_run(run, early[0], early[1])
        try:
            while (item := await outbox.get()) is not None:
                yield item
            yield (END, RunEnding.of_task(inner, handle), None)
        finally:
            # Reached early only when this generator itself is cancelled
            # (``ray.cancel``) or closed: take the run down with it.
            if not inner.done():
                handle.stop("the Ray task was cancelled")
                inner.cancel()
            self._runs.pop(task_id, None)

    async def stop(self, stops: list[tuple[str, str, float]]) -> None:
        """For each (task_id, reason, grace): latch the stop on the run's handle
        and cancel its task (after ``grace``). Batched, so a tree stop costs
        one call per actor rather than one per sub-agent."""
        now = time.monotonic()
        for task_id, reason, grace in stops:
            run = self._runs.get(task_id)
            if run is None:
                self._early_stops[task_id] = (reason, grace, now)
            else:
                self._stop_run(run, reason, grace)
        horizon = now - EARLY_STOP_TTL_SECONDS
        for task_id in [t for t, early in self._early_stops.items() if early[2] < horizon]:
            del self._early_stops[task_id]

    async def note(self, task_id: str, notes: list[str]) -> None:
        """Budget notes for a run, read before its next model call."""
        run = self._runs.get(task_id)
        if run is not None:
            run.handle.add_notes(notes)

    async def deliver(self, task_id: str, request_id: str, reply: dict[str, Any]) -> None:
        """The driver's answer to a run's call (e.g. a delegated task's result)."""
        run = self._runs.get(task_id)
        if run is not None:
            run.channel.answer(request_id, reply)

    def _stop_run(self, run: _WorkerRun, reason: str, grace: float) -> None:
        run.handle.stop(reason)  # sets the cancel_event the run checks
        message = f"subagent stop: {reason}"
        if grace > 0:
            asyncio.get_running_loop().call_later(grace, run.inner.cancel, message)
        else:
            run.inner.cancel(message)
