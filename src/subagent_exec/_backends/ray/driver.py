""":class:`RayBackend`, the driver side: submits runs to the actors, consumes
their streams, holds the deadline timers and sends the stops.

All of it runs on one asyncio loop on one daemon thread per backend (no
thread per task). ``start`` and ``interrupt`` only post to that loop, so a
stop can never overtake the submission of the run it stops; the per-run state
(``_runs``) is touched on that loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from ..._checks import check_int
from ..._contract import (
    BackendSettings,
    RunEnding,
    RunFunction,
    TaskTicket,
    remaining,
)
from ..._errors import describe
from ..._status import SubagentStatus
from .delegation import CALL, CALL_CANCELLED, serve_call
from .payload import PreparedRun, prepare_run
from .pool import PoolActor, RayPlacementError, RayWorkerPool
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


class RayBackend:
    """Runs each sub-agent on a Ray actor; statuses and stops as with threads.

    How Ray is reached is the user's choice:

    * Ray already initialised in this process (``ray.init(...)`` called by
      you): used as is, whatever the arguments below.
    * ``address="auto"``, ``"ray://host:10001"`` or ``"host:6379"``: connect to
      that cluster with ``ray.init(address=..., **init_kwargs)``.
    * ``start_local=True``: start a local Ray with ``num_cpus`` and no
      dashboard (``ray.init(num_cpus=..., include_dashboard=False, **init_kwargs)``).

    Otherwise binding the backend to a runtime fails with a ``RuntimeError``
    saying how to choose. The backend never calls ``ray.shutdown()``: other
    code in the process may use Ray.

    ``pool``: a shared :class:`RayWorkerPool` (not killed when the runtime
    shuts down); by default the backend makes its own with ``actors`` actors
    (default: ``min(max_workers, 4)``) and kills it at shutdown.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        init_kwargs: Mapping[str, Any] | None = None,
        start_local: bool = False,
        num_cpus: int | None = None,
        pool: RayWorkerPool | None = None,
        actors: int | None = None,
    ) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(
                f"RayBackend.address must be 'auto', 'ray://host:port' or 'host:port', "
                f"got {address!r}"
            )
        if address is not None and start_local:
            raise ValueError("RayBackend: give either address=... or start_local=True, not both")
        if num_cpus is not None and not start_local:
            raise ValueError("RayBackend.num_cpus is only used with start_local=True")
        if num_cpus is not None:
            check_int("RayBackend", "num_cpus", num_cpus, minimum=1)
        if pool is not None and actors is not None:
            raise ValueError("RayBackend: give either pool=... or actors=..., not both")
        if pool is not None and not isinstance(pool, RayWorkerPool):
            raise TypeError(f"RayBackend.pool must be a RayWorkerPool, got {pool!r}")
        if actors is not None:
            check_int("RayBackend", "actors", actors, minimum=1)
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.start_local = start_local
        self.num_cpus = num_cpus
        self._pool = pool
        self._owns_pool = pool is None
        self._actors = actors
        self._settings: BackendSettings | None = None
        # Created in bind(): a backend that never gets bound leaves no loop behind.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Invariant: the fields below are used on the driver loop only.
        self._tasks: dict[str, RemoteTask] = {}
        self._waiting = WaitingTasks(
            lambda: self.loop, lambda: self.pool.placement_timeout_seconds,
            self._placement_timed_out,
        )
        self._abandoned_total = 0
        self._submitted_total = 0
        self._resent_total = 0
        self._placement_failures_total = 0
        #: Stops waiting to be sent, per actor (flushed once per loop iteration).
        self._stop_batches: dict[int, tuple[Any, list[tuple[str, str, float]]]] = {}

    @property
    def pool(self) -> RayWorkerPool:
        if self._pool is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime yet")
        return self._pool

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime yet")
        return self._loop

    # -- the Backend protocol ------------------------------------------------------------

    def bind(self, settings: BackendSettings) -> None:
        if self._settings is not None:
            raise ValueError("a RayBackend serves one SubagentRuntime; create a new one")
        self._connect()
        self._settings = settings
        if self._pool is None:
            size = self._actors if self._actors is not None else min(settings.max_workers, 4)
            self._pool = RayWorkerPool(actors=size)
        self._unsubscribe = self._pool.subscribe(self._on_pool_change)
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"{settings.runtime_name}-ray-driver",
            daemon=True,
        )
        self._thread.start()

    def prepare(self, run: RunFunction, *, subagent_name: str) -> PreparedRun:
        return prepare_run(run, subagent_name=subagent_name)

    def start(self, ticket: TaskTicket) -> None:
        self.loop.call_soon_threadsafe(self._launch, ticket)

    def interrupt(self, ticket: TaskTicket) -> None:
        try:
            self.loop.call_soon_threadsafe(self._stop, ticket)
        except RuntimeError:
            pass  # the driver loop is closed: every run is over

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool:
        if self._thread is None or self._settings is None:
            return True
        settle = (
            self._settings.cancel_grace_seconds + self._settings.cleanup_timeout_seconds + 1.0
        )
        try:
            done = asyncio.run_coroutine_threadsafe(self._close(settle), self.loop)
        except RuntimeError:
            return True  # already closed
        if not wait:
            return True
        try:
            done.result(remaining(deadline))
        except TimeoutError:
            return False
        self._thread.join(remaining(deadline))
        return not self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        pool_stats = self._pool.stats() if self._pool is not None else {}
        return {
            **pool_stats,
            "ray_submitted_total": self._submitted_total,
            "ray_abandoned_runs_total": self._abandoned_total,
            "ray_placement_waiting": len(self._waiting),
            "ray_resent_runs_total": self._resent_total,
            "ray_placement_failures_total": self._placement_failures_total,
        }

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- connecting --------------------------------------------------------------------------

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        if self.address is not None:
            ray.init(address=self.address, **self.init_kwargs)
        elif self.start_local:
            options: dict[str, Any] = {"include_dashboard": False, **self.init_kwargs}
            if self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
        else:
            raise RuntimeError(
                "Ray is not initialised. Call ray.init(...) before creating the runtime, or "
                "pass RayBackend(address='auto' or 'ray://host:10001') to connect to a cluster, "
                "or RayBackend(start_local=True, num_cpus=N) to start a local Ray"
            )

    # -- on the driver loop: placing ------------------------------------------------------

    def _launch(self, ticket: TaskTicket) -> None:
        if ticket.cancel_event.is_set():
            ticket.release()  # stopped while queued (then already CANCELLED): never submitted
            return
        task = self._tasks[ticket.task_id] = RemoteTask(ticket)
        self._place(task)

    def _place(self, task: RemoteTask, *, first: bool = False) -> None:
        """Send ``task`` to a ready actor, or keep it waiting for one."""
        try:
            member = self.pool.acquire()
        except Exception as exc:  # e.g. Ray went away, or the pool was killed
            self._end(task, RunEnding(SubagentStatus.FAILED, error=describe(exc)))
            return
        if member is None:
            self._waiting.add(task, first=first)
        else:
            self._send(task, member)

    def _place_waiting(self) -> None:
        """An actor became ready (or the pool can no longer serve): place the
        waiting tasks, oldest first, while actors are ready."""
        while (task := self._waiting.oldest()) is not None:
            try:
                member = self.pool.acquire()
            except Exception as exc:
                for waiting in self._waiting.take_all():
                    self._end(waiting, RunEnding(SubagentStatus.FAILED, error=describe(exc)))
                return
            if member is None:
                return
            self._waiting.remove(task)
            self._send(task, member)

    def _on_pool_change(self) -> None:
        # Called on the pool's thread.
        try:
            self.loop.call_soon_threadsafe(self._place_waiting)
        except RuntimeError:
            pass  # the driver loop is closed

    def _placement_timed_out(self, task: RemoteTask) -> None:
        self._placement_failures_total += 1
        ticket = task.ticket
        waited = self.pool.placement_timeout_seconds
        error = describe(
            RayPlacementError(
                f"the task waited placement_timeout_seconds={waited:g} for a Ray actor: "
                f"{self.pool.placement_problem()}"
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
            task.deadline = self.loop.call_later(
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
        self._submitted_total += 1
        task.gen, task.started = gen, False
        task.consumer = self.loop.create_task(self._consume(task, gen, member))
        if ticket.cancel_event.is_set():
            self._stop(ticket)  # latched between begin() and here

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
            self.pool.lost(member, exc)
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
        self._resent_total += 1
        task.lost_error = first_line(exc)
        logger.info(
            "%s its Ray actor was lost before the run started; placing it again (%s)",
            ticket.log_prefix,
            task.lost_error,
        )
        self.pool.release(member)
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
            self.pool.release(task.member)
            task.member = None
        ticket.release()

    def _serve(self, task: RemoteTask, request_id: str, request: dict[str, Any]) -> None:
        """Serve a worker's call of a driver-side tool, here, as if the call came
        from inside the calling sub-agent (its scope is the ticket's context)."""
        ticket = task.ticket
        prepared: PreparedRun = ticket.payload
        tool = prepared.driver_tools.get(request["tool_name"])
        task.calls[request_id] = self.loop.create_task(
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

    def _stop(self, ticket: TaskTicket) -> None:
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
            self.loop.call_soon(self._flush_stops)
        else:
            batch[1].append(item)
        task.timers.append(
            self.loop.call_later(grace + SECOND_LINE_SECONDS, self._second_line, task)
        )
        task.timers.append(
            self.loop.call_later(grace + ticket.cleanup_timeout_seconds, self._abandon, task)
        )

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
        self._abandoned_total += 1
        consumer = task.consumer
        self._end(task, RunEnding.cleanup_timeout())
        if consumer is not None:
            consumer.cancel()

    async def _close(self, settle: float) -> None:
        """Let the runs still unwinding finish (bounded), then let the workers go."""
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
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._owns_pool and self._pool is not None:
            self._pool.kill()
        self.loop.call_soon(self.loop.stop)
