"""What happens to tasks on the driver loop: placing each on a ready actor
(or keeping it PENDING until one is, bounded by the pool's placement
timeout), submitting its run, consuming the run's stream, sending stops,
placing again a run whose actor was lost before it started, and writing
the ending. Everything here runs on the backend's one driver loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from ..._contract import RunEnding, TaskTicket
from ..._errors import describe
from ..._status import SubagentStatus
from .delegation import CALL, CALL_CANCELLED, serve_call
from .nodes import RayPlacementError
from .payload import PreparedRun
from .pool import PoolActor, RayWorkerPool
from .runs import (
    MAX_RESENDS,
    RemoteTask,
    WaitingTasks,
    actor_lost_ending,
    first_line,
    task_error_ending,
)
from .worker import AI_MESSAGE, END, STARTED

logger = logging.getLogger("subagent_exec")

#: After our own stop, how long before ``ray.cancel`` is sent as a second line.
SECOND_LINE_SECONDS = 1.0


class Dispatcher:
    """The driver loop's side of one :class:`RayBackend` (see the module docstring).

    Invariant: every method runs on ``loop`` (the backend posts to it).
    """

    def __init__(self, pool: RayWorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._tasks: dict[str, RemoteTask] = {}
        self._waiting = WaitingTasks(
            lambda: loop, lambda: pool.placement_timeout_seconds, self._placement_timed_out
        )
        #: Stops waiting to be sent, per actor (flushed once per loop iteration).
        self._stop_batches: dict[int, tuple[Any, list[tuple[str, str, float]]]] = {}
        self.submitted_total = 0
        self.abandoned_total = 0
        self.resent_total = 0
        self.placement_failures_total = 0

    @property
    def waiting(self) -> int:
        """Tasks waiting for a ready actor."""
        return len(self._waiting)

    # -- on the driver loop: placing ------------------------------------------------------

    def launch(self, ticket: TaskTicket) -> None:
        """A slot was granted: place the task (never before ``begin()``)."""
        if ticket.cancel_event.is_set():
            ticket.release()  # stopped while queued (then already CANCELLED): never submitted
            return
        task = self._tasks[ticket.task_id] = RemoteTask(ticket)
        self._place(task)

    def _place(self, task: RemoteTask, *, first: bool = False) -> None:
        """Send ``task`` to a ready actor, or keep it waiting for one."""
        try:
            member = self._pool.acquire()
        except Exception as exc:  # e.g. Ray went away, or the pool was killed
            self._end(task, RunEnding(SubagentStatus.FAILED, error=describe(exc)))
            return
        if member is None:
            self._waiting.add(task, first=first)
        else:
            self._send(task, member)

    def place_waiting(self) -> None:
        """An actor became ready (or the pool can no longer serve): place the
        waiting tasks, oldest first, while actors are ready."""
        while (task := self._waiting.oldest()) is not None:
            try:
                member = self._pool.acquire()
            except Exception as exc:
                for waiting in self._waiting.take_all():
                    self._end(waiting, RunEnding(SubagentStatus.FAILED, error=describe(exc)))
                return
            if member is None:
                return
            self._waiting.remove(task)
            self._send(task, member)

    def _placement_timed_out(self, task: RemoteTask) -> None:
        self.placement_failures_total += 1
        ticket = task.ticket
        waited = self._pool.placement_timeout_seconds
        error = describe(
            RayPlacementError(
                f"the task waited placement_timeout_seconds={waited:g} for a Ray actor: "
                f"{self._pool.placement_problem()}"
            )
        )
        if task.lost_error is not None:
            error += (
                f" (it had been sent to an actor lost before the run started: "
                f"{task.lost_error})"
            )
        logger.warning("%s %s", ticket.log_prefix, error)
        self._end(task, RunEnding(SubagentStatus.FAILED, error=error))

    def _send(self, task: RemoteTask, member: PoolActor) -> None:
        ticket = task.ticket
        task.member = member
        if not task.begun:
            if not ticket.begin():  # a stop won the race: the run never starts
                self._end(task, RunEnding(SubagentStatus.CANCELLED))
                return
            task.begun = True
            task.deadline = self._loop.call_later(
                ticket.timeout_seconds, self._on_deadline, task
            )
        holder = ticket.holder
        meta = {
            "subagent_name": holder.subagent_name,
            "task": holder.task,
            "trace_id": holder.trace_id,
            "parent_id": holder.parent_id,
            "depth": holder.depth,
            "owner": holder.owner,
        }
        prepared: PreparedRun = ticket.payload
        try:
            gen = member.actor.run.options(num_returns="streaming").remote(
                ticket.task_id, meta, prepared.payload
            )
        except Exception as exc:  # Ray refused the submission: the task must still end
            self._end(task, RunEnding(SubagentStatus.FAILED, error=f"Ray error: {describe(exc)}"))
            return
        self.submitted_total += 1
        task.gen, task.started = gen, False
        task.consumer = self._loop.create_task(self._consume(task, gen, member))
        if ticket.cancel_event.is_set():
            self.stop(ticket)  # latched between begin() and here

    # -- on the driver loop: running -------------------------------------------------------

    async def _consume(self, task: RemoteTask, gen: Any, member: PoolActor) -> None:
        ticket = task.ticket
        ending: RunEnding | None = None
        placed_again = False
        try:
            async for ref in gen:
                kind, value, extra = await ref
                if kind == STARTED:
                    task.started = True
                elif kind == AI_MESSAGE:
                    ticket.record_ai_message(value, extra)
                elif kind == CALL:
                    self._serve(task, value, extra)
                elif kind == CALL_CANCELLED:
                    call = task.calls.get(value)
                    if call is not None:
                        call.cancel()
                elif kind == END:
                    ending = value
            if ending is None:
                ending = RunEnding(
                    SubagentStatus.FAILED,
                    error="RuntimeError: the Ray worker's stream ended without an outcome",
                )
        except asyncio.CancelledError:
            # Only the cleanup timeout (or closing the backend) cancels us: the
            # run is abandoned and the status is written by whoever cancelled.
            ending = RunEnding.cleanup_timeout()
        except (TaskCancelledError, RayTaskError) as exc:
            ending = task_error_ending(exc, ticket)
        except RayActorError as exc:
            self._pool.lost(member, exc)
            placed_again = self._place_again(task, member, exc)
            if not placed_again:
                ending = actor_lost_ending(exc)
        except Exception as exc:  # ObjectLostError, WorkerCrashedError, ...
            ending = RunEnding(SubagentStatus.FAILED, error=f"Ray error: {describe(exc)}")
        finally:
            if not placed_again:
                self._end(task, ending or RunEnding.cleanup_timeout())

    def _place_again(self, task: RemoteTask, member: PoolActor, exc: RayActorError) -> bool:
        """The actor was lost. A run whose STARTED item never arrived did not
        start there (none of its code ran): place it again, unless it was
        stopped meanwhile. Returns whether it was."""
        ticket = task.ticket
        if task.ended or task.started or ticket.cancel_event.is_set():
            return False
        if task.resends >= MAX_RESENDS:
            return False
        task.resends += 1
        self.resent_total += 1
        task.lost_error = first_line(exc)
        logger.info(
            "%s its Ray actor was lost before the run started; placing it again (%s)",
            ticket.log_prefix,
            task.lost_error,
        )
        self._pool.release(member)
        task.member, task.gen, task.consumer = None, None, None
        for call in list(task.calls.values()):
            call.cancel()
        self._place(task, first=True)
        return True

    def _end(self, task: RemoteTask, ending: RunEnding) -> None:
        if task.ended:
            return
        task.ended = True
        ticket = task.ticket
        self._waiting.remove(task)
        if task.deadline is not None:
            task.deadline.cancel()
        for timer in task.timers:
            timer.cancel()
        for call in list(task.calls.values()):
            call.cancel()  # the caller is gone: stop its children (bounded wait)
        ticket.finish(ending)  # a no-op for a task already CANCELLED while PENDING
        if self._tasks.get(ticket.task_id) is task:
            del self._tasks[ticket.task_id]
        if task.member is not None:
            self._pool.release(task.member)
            task.member = None
        ticket.release()

    def _serve(self, task: RemoteTask, request_id: str, request: dict[str, Any]) -> None:
        """Serve a worker's call of a driver-side tool, here, as if the call came
        from inside the calling sub-agent (its scope is the ticket's context)."""
        ticket = task.ticket
        prepared: PreparedRun = ticket.payload
        tool = prepared.driver_tools.get(request["tool_name"])
        task.calls[request_id] = self._loop.create_task(
            self._answer(task, request_id, serve_call(tool, request)),
            context=ticket.context.copy(),
        )

    async def _answer(self, task: RemoteTask, request_id: str, serving: Any) -> None:
        try:
            reply = await serving
        except asyncio.CancelledError:
            return  # the worker's call was cancelled (or the caller ended): nobody waits
        finally:
            task.calls.pop(request_id, None)
        member = task.member
        try:
            if member is not None:
                member.actor.deliver.remote(task.ticket.task_id, request_id, reply)
        except Exception:  # the actor is gone: its stream will say so
            logger.debug("%s could not deliver a tool result", task.ticket.log_prefix)

    def _on_deadline(self, task: RemoteTask) -> None:
        if not task.ended:
            task.ticket.time_out()

    # -- on the driver loop: stopping ------------------------------------------------------

    def stop(self, ticket: TaskTicket) -> None:
        """A stop was latched: end a waiting task, or send the stop to its actor."""
        task = self._tasks.get(ticket.task_id)
        if task is None or task.ended:
            return  # not launched yet (it checks cancel_event), or over
        if task.member is None:
            # Waiting for an actor: nothing runs anywhere. A PENDING task is
            # CANCELLED already; a run waiting to be placed again takes the
            # latched stop's status.
            self._end(task, RunEnding(SubagentStatus.CANCELLED))
            return
        if task.stop_sent:
            return  # already stopping
        task.stop_sent = True
        grace = ticket.cancel_grace_seconds
        actor = task.member.actor
        item = (ticket.task_id, ticket.cancel_reason or "stopped", grace)
        batch = self._stop_batches.get(id(actor))
        if batch is None:
            self._stop_batches[id(actor)] = (actor, [item])
            # After the interrupts already queued on this loop (a whole tree's).
            self._loop.call_soon(self._flush_stops)
        else:
            batch[1].append(item)
        task.timers.append(
            self._loop.call_later(grace + SECOND_LINE_SECONDS, self._second_line, task)
        )
        task.timers.append(
            self._loop.call_later(grace + ticket.cleanup_timeout_seconds, self._abandon, task)
        )

    def send_notes(self, tickets: list[TaskTicket]) -> None:
        """Send the budget notes waiting in these tasks' inboxes to their runs."""
        for ticket in tickets:
            task = self._tasks.get(ticket.task_id)
            notes = ticket.take_notes()
            if task is None or task.ended or task.member is None or not notes:
                continue
            try:
                task.member.actor.note.remote(ticket.task_id, notes)
            except Exception:  # the actor is gone: its stream will say so
                logger.debug("%s could not send a budget note", ticket.log_prefix)

    def _flush_stops(self) -> None:
        batches, self._stop_batches = self._stop_batches, {}
        for actor, stops in batches.values():
            try:
                actor.stop.remote(stops)
            except Exception:  # the actor is gone: the runs' streams will say so
                logger.debug("stop of %d run(s) could not reach their Ray actor", len(stops))

    def _second_line(self, task: RemoteTask) -> None:
        if task.ended or task.gen is None:
            return
        ticket = task.ticket
        logger.info("%s still running on Ray after the stop; ray.cancel", ticket.log_prefix)
        try:
            ray.cancel(task.gen, recursive=True)
        except Exception:
            logger.debug("%s ray.cancel failed", ticket.log_prefix, exc_info=True)

    def _abandon(self, task: RemoteTask) -> None:
        if task.ended:
            return
        ticket = task.ticket
        logger.warning(
            "%s did not unwind on Ray within %.1fs of the stop; abandoning it",
            ticket.log_prefix,
            ticket.cleanup_timeout_seconds,
        )
        self.abandoned_total += 1
        consumer = task.consumer
        self._end(task, RunEnding.cleanup_timeout())
        if consumer is not None:
            consumer.cancel()

    async def close(self, settle: float) -> None:
        """Let the runs still unwinding finish (bounded)."""
        for task in self._waiting.take_all():  # normally none: every task was stopped
            self._end(task, RunEnding(
                SubagentStatus.FAILED,
                error="RuntimeError: the runtime shut down before a Ray actor was ready",
            ))
        consumers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if consumers:
            await asyncio.wait(consumers, timeout=settle)
        for consumer in consumers:
            consumer.cancel()
