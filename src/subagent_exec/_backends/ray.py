"""The Ray backend: each sub-agent as an async actor method on a Ray cluster.

Imported only when used (``SubagentRuntime(backend="ray")`` or
``RayBackend(...)``); the core never imports ``ray``. Install the extra:
``pip install 'subagent-exec[ray]'``. Guide: docs/ray.md.

What stays on the driver (the process that owns the ``SubagentRuntime``):
the registry, the parent -> children tree, slots, statuses, events,
retention, deadlines and every stop decision. What runs on Ray: the run
coroutine itself (``run_subagent`` for an executor's task), on the event loop
of one of the pool's async actors, reporting into a *worker-side* holder.

Design decisions:

* **Workers.** A :class:`RayWorkerPool` of N async actors (``max_concurrency``
  runs each, ``num_cpus=0`` and the SPREAD strategy by default, since
  sub-agents mostly wait on model calls). A task goes to the actor with the
  fewest runs in flight. One pool can serve several runtimes; an actor pays
  for importing langchain/langgraph once, when it is created, not per run.
* **The driver side** is one asyncio loop on one daemon thread per backend:
  it submits runs, consumes their streams and holds the deadline timers (no
  thread per task). ``start`` and ``interrupt`` only post to that loop, so a
  stop can never overtake the submission of the run it stops.
* **Streaming.** The actor method is a streaming generator
  (``num_returns="streaming"``): every AI message the run records is sent
  back at once and recorded on the driver's holder (so ``ai_message`` events,
  ``ai_messages`` and the task tool's ``task_running`` events work as with
  threads); the last item is the run's :class:`~.base.Ending`.
* **Stopping.** Our own stop first: the actor's ``stop`` method latches the
  stop on the worker-side holder (its ``cancel_event`` is what the run's
  cooperative checks read) and cancels the run's asyncio task on the actor's
  loop after ``cancel_grace_seconds``. ``ray.cancel(ref, recursive=True)`` is
  the second line, one second later if the run has not ended. After
  ``cleanup_timeout_seconds`` the status is written anyway (CANCELLED /
  TIMED_OUT with a ``CleanupTimeout`` error), the slot is given back and the
  run is counted in ``ray_abandoned_runs_total``.
* **Outcomes.** Our cancel -> CANCELLED, our deadline -> TIMED_OUT, an error in
  the run -> FAILED ``"OriginalType: message"`` (mapped on the worker, from the
  original exception, never from Ray's wrapper), a dead actor or worker ->
  FAILED ``"RayActorError: ..."`` unless we had asked for the stop, in which
  case the latched stop status stands. A dead actor is replaced.
* **A PENDING task cancelled never starts**: ``holder._start()`` runs on the
  driver before anything is submitted to Ray.
* **Serialisation.** The run (for an executor: its config, model or model
  factory, graph factory and tools) is pickled with cloudpickle at
  submission; what cannot be pickled is named in a ``TypeError`` and nothing
  is registered. Functions of modules the workers can import travel by
  reference (the worker imports that module); everything else by value.
* **Callbacks do not cross processes.** Tracing handlers given to the
  executor or inherited from the lead agent's run stay on the driver and are
  *not* called for a run on Ray; the worker run gets only its stop
  checkpoint. A tracer configured in the worker's environment (e.g. LangSmith
  environment variables) sees the run as its own root run, tagged with
  ``subagent_task_id`` / ``subagent_trace_id`` metadata.
* **Nested delegation.** The tree stays on the driver. A sub-agent on Ray
  that has the ``task`` tool gets a :class:`RemoteTaskTool` in its place
  (the real tool holds the runtime and cannot travel). Its call goes to the
  driver through the run's stream; the driver runs the real tool there, as
  if called from inside the calling sub-agent: the child is registered under
  the caller (so a stop of any ancestor cascades to it), the caller's slot is
  lent to it while it waits, and the ToolMessage goes back to the worker
  through the actor's ``deliver`` method. The ``task_*`` progress events of
  such calls reach ``make_task_tool(on_event=...)`` on the driver; they are
  not written into the worker-side sub-agent's own stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel
from ray import cloudpickle
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from .._context import current_runtime, current_task_id
from .._result import SubagentResult
from .._status import SubagentStatus
from .._task_tool import TaskInput, TaskTool
from .base import Ending, describe, ending_of, finish, log_extra, remaining

if TYPE_CHECKING:
    from .._runtime import RunFunction, SubagentRuntime, _Task

logger = logging.getLogger("subagent_exec")

#: After our own stop, how long before ``ray.cancel`` is sent as a second line.
SECOND_LINE_SECONDS = 1.0
#: How long an actor keeps a stop whose run it has not seen (see SubagentWorker).
EARLY_STOP_TTL_SECONDS = 300.0


# -- the worker side (runs inside a Ray actor process) ---------------------------------


class _Channel:
    """A run's way to ask the driver for something and await the answer.

    Requests go out as items of the run's stream; answers come back through
    the actor's ``deliver`` method. Used by :class:`RemoteTaskTool`.
    """

    def __init__(self, queue: asyncio.Queue[tuple[str, Any, Any] | None]) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def delegate(self, request: dict[str, Any]) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        reply: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.replies[request_id] = reply
        self.queue.put_nowait(("task", request_id, request))
        try:
            return await reply
        except asyncio.CancelledError:
            # Our caller was cancelled: the driver stops the child (and waits,
            # bounded, for it). A stop of this whole run reaches the child
            # through the driver's cascade anyway.
            self.queue.put_nowait(("task_cancel", request_id, None))
            raise
        finally:
            self.replies.pop(request_id, None)


#: The channel of the run whose code is executing (set per run, on the worker).
_channel: contextvars.ContextVar[_Channel | None] = contextvars.ContextVar(
    "subagent_exec_ray_channel", default=None
)


@dataclass
class _WorkerRun:
    holder: SubagentResult
    inner: asyncio.Task[Any]
    channel: _Channel


class SubagentWorker:
    """An async actor running many sub-agents at once on its own event loop."""

    def __init__(self) -> None:
        # Pay the import of the engine and of langchain's agent once per
        # actor, when it is created, instead of on the first run.
        from langchain.agents import create_agent  # noqa: F401

        from .. import _run  # noqa: F401

        self._runs: dict[str, _WorkerRun] = {}
        #: Stops that arrived before their run (Ray does not order the calls
        #: of an async actor); applied when the run arrives. A stop can also
        #: arrive just after its run ended: such entries are dropped after
        #: EARLY_STOP_TTL_SECONDS.
        self._early_stops: dict[str, tuple[str, bool, float, float]] = {}

    async def ready(self) -> bool:
        return True

    async def run(
        self, task_id: str, meta: Mapping[str, Any], payload: bytes
    ) -> AsyncIterator[tuple[str, Any, Any]]:
        """Run one sub-agent; yields ("ai", record, id) items, then ("end", Ending, None)."""
        queue: asyncio.Queue[tuple[str, Any, Any] | None] = asyncio.Queue()

        def on_event(kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
            if kind == "ai_message":
                message = data["message"]
                message_id = message.get("id") or f"worker-{len(holder.ai_messages) - 1}"
                queue.put_nowait(("ai", message, message_id))

        holder = SubagentResult(
            task_id=task_id,
            subagent_name=meta["subagent_name"],
            task=meta["task"],
            trace_id=meta["trace_id"],
            parent_id=meta["parent_id"],
            depth=meta["depth"],
            owner=meta["owner"],
            on_event=on_event,
        )
        holder._start()
        try:
            run_function = cloudpickle.loads(payload)
        except Exception as exc:
            error = f"cannot load the sub-agent on the Ray worker: {describe(exc)}"
            yield ("end", Ending(SubagentStatus.FAILED, error=error), None)
            return
        channel = _Channel(queue)
        context = contextvars.Context()
        context.run(current_task_id.set, task_id)
        context.run(_channel.set, channel)
        inner = asyncio.get_running_loop().create_task(run_function(holder), context=context)
        inner.add_done_callback(lambda _task: queue.put_nowait(None))
        self._runs[task_id] = _WorkerRun(holder, inner, channel)
        early = self._early_stops.pop(task_id, None)
        if early is not None:
            self._stop_run(self._runs[task_id], *early[:3])
        try:
            while (item := await queue.get()) is not None:
                yield item
            yield ("end", ending_of(inner, holder), None)
        finally:
            # Reached early only when this generator itself is cancelled
            # (``ray.cancel``) or closed: take the run down with it.
            if not inner.done():
                holder._latch_stop(SubagentStatus.CANCELLED, "the Ray task was cancelled")
                inner.cancel()
            self._runs.pop(task_id, None)

    async def stop(self, stops: list[tuple[str, str, bool, float]]) -> None:
        """For each (task_id, reason, timed_out, grace): latch the stop on the
        run's holder and cancel its task (after ``grace``). Batched, so a tree
        stop costs one call per actor rather than one per sub-agent."""
        now = time.monotonic()
        for task_id, reason, timed_out, grace in stops:
            run = self._runs.get(task_id)
            if run is None:
                self._early_stops[task_id] = (reason, timed_out, grace, now)
            else:
                self._stop_run(run, reason, timed_out, grace)
        horizon = now - EARLY_STOP_TTL_SECONDS
        for task_id in [t for t, early in self._early_stops.items() if early[3] < horizon]:
            del self._early_stops[task_id]

    async def deliver(self, task_id: str, request_id: str, reply: dict[str, Any]) -> None:
        """The driver's answer to a run's request (e.g. a delegated task's result)."""
        run = self._runs.get(task_id)
        waiting = run.channel.replies.get(request_id) if run is not None else None
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    def _stop_run(self, run: _WorkerRun, reason: str, timed_out: bool, grace: float) -> None:
        status = SubagentStatus.TIMED_OUT if timed_out else SubagentStatus.CANCELLED
        run.holder._latch_stop(status, reason)  # sets the cancel_event the run checks
        message = f"subagent stop: {reason}"
        if grace > 0:
            asyncio.get_running_loop().call_later(grace, run.inner.cancel, message)
        else:
            run.inner.cancel(message)


class RemoteTaskTool(BaseTool):
    """Stands in for a ``task`` tool inside a Ray worker.

    The driver's :class:`~subagent_exec.TaskTool` cannot travel (it holds the
    runtime). This one has the same name, description and arguments; a call
    asks the driver, through the run's stream, to run the real tool there:
    the child is created and registered by the driver's runtime under the
    calling task (so cascades reach it), the caller's slot is lent to it
    while it waits, and the ToolMessage comes back to the worker.
    """

    name: str = "task"
    description: str = ""
    args_schema: type[BaseModel] = TaskInput

    async def _arun(
        self,
        description: str,
        prompt: str,
        subagent_type: str,
        tool_call_id: str,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> ToolMessage:
        channel = _channel.get()
        if channel is None:
            return self._error(tool_call_id, "the task tool works only inside a sub-agent run")
        request = {
            "tool_name": self.name,
            "description": description,
            "prompt": prompt,
            "subagent_type": subagent_type,
            "tool_call_id": tool_call_id,
        }
        reply = await channel.delegate(request)
        return ToolMessage(
            content=reply["content"],
            tool_call_id=tool_call_id,
            name=self.name,
            status=reply["status"],
            artifact=reply["artifact"],
        )

    def _run(
        self,
        description: str,
        prompt: str,
        subagent_type: str,
        tool_call_id: str,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> ToolMessage:
        # A sync graph calls tools in an executor thread: hand the call to the
        # run's loop (the actor's) and block this thread only.
        channel = _channel.get()
        if channel is None:
            return self._error(tool_call_id, "the task tool works only inside a sub-agent run")
        call = self._arun(description, prompt, subagent_type, tool_call_id)
        return asyncio.run_coroutine_threadsafe(call, channel.loop).result()

    def _error(self, tool_call_id: str, problem: str) -> ToolMessage:
        return ToolMessage(
            content=f"Error: {problem}", tool_call_id=tool_call_id, name=self.name, status="error"
        )


# -- the pool of actors (driver side) ----------------------------------------------------


class RayWorkerPool:
    """N async Ray actors that run sub-agents; shareable by several runtimes.

    ``actors``: how many actor processes. ``max_concurrency``: calls at once
    per actor. Our slots are the real limit of runs; this one is large on
    purpose, because the control calls (``stop``, ``deliver``) share it: an
    actor at its limit would queue a stop behind the runs it should stop
    (runs abandoned after a cleanup timeout still count until they end).
    ``actor_options``: passed to ``.options()`` of each actor (default
    ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``; e.g. add
    ``runtime_env`` for a cluster whose nodes lack your code).
    Actors are created on first use (Ray must be initialised by then).
    """

    def __init__(
        self,
        actors: int = 2,
        *,
        max_concurrency: int = 10_000,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("actors", actors), ("max_concurrency", max_concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RayWorkerPool.{name} must be an int >= 1, got {value!r}")
        self.size = actors
        self.max_concurrency = max_concurrency
        self.actor_options: dict[str, Any] = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}
        self.actor_options.update(actor_options or {})
        self._lock = threading.Lock()
        self._actors: list[Any] = []
        self._in_flight: list[int] = []
        self._replaced_total = 0
        self._killed = False

    def _new_actor(self) -> Any:
        actor_class = ray.remote(SubagentWorker)
        return actor_class.options(
            max_concurrency=self.max_concurrency, **self.actor_options
        ).remote()

    def _ensure_locked(self) -> None:
        if self._killed:
            raise RuntimeError("this RayWorkerPool was shut down; create a new one")
        if not self._actors:
            self._actors = [self._new_actor() for _ in range(self.size)]
            self._in_flight = [0] * self.size

    def ready(self, timeout: float | None = 60.0) -> None:
        """Create the actors if needed and block until each has loaded the engine."""
        with self._lock:
            self._ensure_locked()
            actors = list(self._actors)
        ray.get([a.ready.remote() for a in actors], timeout=timeout)

    def acquire(self) -> tuple[int, Any]:
        """The actor with the fewest runs in flight (its index and handle)."""
        with self._lock:
            self._ensure_locked()
            index = min(range(len(self._actors)), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
            return index, self._actors[index]

    def release(self, index: int) -> None:
        with self._lock:
            if index < len(self._in_flight):
                self._in_flight[index] -= 1

    def replace(self, index: int, dead: Any) -> None:
        """Replace a dead actor (once, however many runs saw it die)."""
        with self._lock:
            if not self._killed and index < len(self._actors) and self._actors[index] is dead:
                self._actors[index] = self._new_actor()
                self._replaced_total += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "ray_actors": len(self._actors),
                "ray_runs_in_flight": sum(self._in_flight),
                "ray_actors_replaced_total": self._replaced_total,
            }

    def kill(self) -> None:
        """Kill every actor (runs still on them die with them)."""
        with self._lock:
            self._killed = True
            actors, self._actors = self._actors, []
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # already dead, or Ray is gone
                pass


# -- the backend (driver side) ----------------------------------------------------------------


@dataclass
class _RemoteRun:
    """One run submitted to Ray, seen from the driver loop."""

    actor_index: int
    actor: Any
    gen: Any  # ray.ObjectRefGenerator
    consumer: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    stop_sent: bool = False
    ended: bool = False
    #: The worker's task-tool calls being served on the driver, by request id.
    delegations: dict[str, asyncio.Task[None]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    """What ``prepare`` keeps on a task: the pickled run, and the real task
    tools its remote stand-ins call back into (by tool name)."""

    payload: bytes
    task_tools: dict[str, TaskTool]


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
        if num_cpus is not None and (
            isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1
        ):
            raise ValueError(f"RayBackend.num_cpus must be an int >= 1, got {num_cpus!r}")
        if pool is not None and actors is not None:
            raise ValueError("RayBackend: give either pool=... or actors=..., not both")
        if pool is not None and not isinstance(pool, RayWorkerPool):
            raise ValueError(f"RayBackend.pool must be a RayWorkerPool, got {pool!r}")
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.start_local = start_local
        self.num_cpus = num_cpus
        self._pool = pool
        self._owns_pool = pool is None
        self._actors = actors
        self._runtime: SubagentRuntime | None = None
        # Created in bind(): a backend that never gets bound leaves no loop behind.
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._thread: threading.Thread | None = None
        self._abandoned_total = 0
        self._submitted_total = 0
        #: Stops waiting to be sent, per actor (flushed once per loop iteration).
        self._stop_batches: dict[int, tuple[Any, list[tuple[str, str, bool, float]]]] = {}

    @property
    def runtime(self) -> SubagentRuntime:
        if self._runtime is None:
            raise RuntimeError("RayBackend is not bound to a SubagentRuntime")
        return self._runtime

    @property
    def pool(self) -> RayWorkerPool:
        assert self._pool is not None
        return self._pool

    # -- the Backend protocol ----------------------------------------------------------

    def bind(self, runtime: SubagentRuntime) -> None:
        if self._runtime is not None:
            raise ValueError("a RayBackend serves one SubagentRuntime; create a new one")
        self._connect()
        self._runtime = runtime
        if self._pool is None:
            size = self._actors if self._actors is not None else min(runtime.max_workers, 4)
            self._pool = RayWorkerPool(actors=size)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"{runtime.name}-ray-driver", daemon=True
        )
        self._thread.start()

    def prepare(self, run: RunFunction, *, subagent_name: str) -> _Prepared:
        run, task_tools = _for_workers(run)
        try:
            return _Prepared(bytes(cloudpickle.dumps(run)), task_tools)  # type: ignore[no-untyped-call]
        except Exception as exc:
            culprit = _unpicklable_part(run)  # the run as sent, task tools replaced
            raise TypeError(
                f"sub-agent {subagent_name!r} cannot be sent to Ray workers: {culprit} could not "
                f"be serialised ({describe(exc)}). Everything a sub-agent uses travels by "
                "cloudpickle: create locks, sockets and clients inside a factory or inside the "
                "tool call, not in the object given to the config"
            ) from exc

    def start(self, entry: _Task) -> None:
        self._loop.call_soon_threadsafe(self._launch, entry)

    def interrupt(self, entry: _Task) -> None:
        try:
            self._loop.call_soon_threadsafe(self._stop, entry)
        except RuntimeError:
            pass  # the driver loop is closed: every run is over

    def shutdown(self, *, wait: bool, deadline: float | None) -> bool:
        if self._thread is None:
            return True
        runtime = self.runtime
        settle = runtime.cancel_grace_seconds + runtime.cleanup_timeout_seconds + 1.0
        try:
            done = asyncio.run_coroutine_threadsafe(self._close(settle), self._loop)
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
        }

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    # -- connecting ------------------------------------------------------------------------

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

    # -- on the driver loop ------------------------------------------------------------

    def _launch(self, entry: _Task) -> None:
        holder = entry.holder
        if not holder._start():
            self.runtime._release_slot(entry)  # stopped while queued: never submitted
            return
        try:
            index, actor = self.pool.acquire()
        except Exception as exc:  # e.g. Ray went away
            finish(holder, Ending(SubagentStatus.FAILED, error=describe(exc)))
            self.runtime._release_slot(entry)
            return
        meta = {
            "subagent_name": holder.subagent_name,
            "task": holder.task,
            "trace_id": holder.trace_id,
            "parent_id": holder.parent_id,
            "depth": holder.depth,
            "owner": holder.owner,
        }
        payload = entry.payload.payload
        try:
            gen = actor.run.options(num_returns="streaming").remote(holder.task_id, meta, payload)
        except Exception as exc:  # Ray refused the submission: the task must still end
            finish(holder, Ending(SubagentStatus.FAILED, error=f"Ray error: {describe(exc)}"))
            self.pool.release(index)
            self.runtime._release_slot(entry)
            return
        self._submitted_total += 1
        run = _RemoteRun(actor_index=index, actor=actor, gen=gen)
        entry.worker = run
        run.deadline = self._loop.call_later(entry.timeout_seconds, self._on_deadline, entry, run)
        run.consumer = self._loop.create_task(self._consume(entry, run))
        if holder.cancel_event.is_set():
            self._stop(entry)  # latched between _start() and here

    async def _consume(self, entry: _Task, run: _RemoteRun) -> None:
        holder = entry.holder
        ending: Ending | None = None
        try:
            async for ref in run.gen:
                kind, value, extra = await ref
                if kind == "ai":
                    holder._add_ai_message(value, extra)
                elif kind == "task":
                    self._delegate(entry, run, value, extra)
                elif kind == "task_cancel":
                    delegation = run.delegations.get(value)
                    if delegation is not None:
                        delegation.cancel()
                elif kind == "end":
                    ending = value
            if ending is None:
                ending = Ending(
                    SubagentStatus.FAILED,
                    error="RuntimeError: the Ray worker's stream ended without an outcome",
                )
        except asyncio.CancelledError:
            # Only the cleanup timeout (or closing the backend) cancels us: the
            # run is abandoned and the status is written by whoever cancelled.
            ending = _cleanup_timeout()
        except (TaskCancelledError, RayTaskError) as exc:
            ending = _task_error_ending(exc, holder)
        except RayActorError as exc:
            self.pool.replace(run.actor_index, run.actor)
            ending = Ending(
                SubagentStatus.FAILED,
                error=(
                    "RayActorError: the Ray worker running this sub-agent died before it "
                    f"finished ({_first_line(exc)})"
                ),
            )
        except Exception as exc:  # ObjectLostError, WorkerCrashedError, ...
            ending = Ending(SubagentStatus.FAILED, error=f"Ray error: {describe(exc)}")
        finally:
            self._end(entry, run, ending or _cleanup_timeout())

    def _end(self, entry: _Task, run: _RemoteRun, ending: Ending) -> None:
        if run.ended:
            return
        run.ended = True
        if run.deadline is not None:
            run.deadline.cancel()
        for timer in run.timers:
            timer.cancel()
        for delegation in list(run.delegations.values()):
            delegation.cancel()  # the caller is gone: stop its children (bounded wait)
        finish(entry.holder, ending)
        with self.runtime._lock:
            if entry.worker is run:
                entry.worker = None
        self.pool.release(run.actor_index)
        self.runtime._release_slot(entry)

    def _delegate(
        self, entry: _Task, run: _RemoteRun, request_id: str, request: dict[str, Any]
    ) -> None:
        """Serve a worker's ``task`` call with the real tool, here on the driver,
        as if the call came from inside the calling sub-agent."""
        tool = entry.payload.task_tools.get(request["tool_name"])
        context = contextvars.Context()
        # The child's parent is the calling task, and the caller's slot is
        # lent to its children while it waits (TaskTool reads these).
        context.run(current_task_id.set, entry.holder.task_id)
        context.run(current_runtime.set, self.runtime)
        run.delegations[request_id] = self._loop.create_task(
            self._answer(entry, run, request_id, tool, request), context=context
        )

    async def _answer(
        self,
        entry: _Task,
        run: _RemoteRun,
        request_id: str,
        tool: TaskTool | None,
        request: dict[str, Any],
    ) -> None:
        try:
            if tool is None:
                raise LookupError(f"no task tool named {request['tool_name']!r} on the driver")
            message = await tool._arun(
                request["description"],
                request["prompt"],
                request["subagent_type"],
                request["tool_call_id"],
            )
            reply = {
                "content": message.content,
                "status": message.status,
                "artifact": message.artifact,
            }
        except asyncio.CancelledError:
            return  # the worker's call was cancelled (or the caller ended): nobody waits
        except Exception as exc:
            reply = {"content": f"Error: {describe(exc)}", "status": "error", "artifact": None}
        finally:
            run.delegations.pop(request_id, None)
        try:
            run.actor.deliver.remote(entry.holder.task_id, request_id, reply)
        except Exception:  # the actor is gone: its stream will say so
            logger.debug("%s could not deliver a task result", log_extra(entry.holder))

    def _on_deadline(self, entry: _Task, run: _RemoteRun) -> None:
        if not run.ended:
            self.runtime._time_out(entry)

    def _stop(self, entry: _Task) -> None:
        run = entry.worker
        if not isinstance(run, _RemoteRun) or run.ended or run.stop_sent:
            return  # not launched yet (it checks cancel_event), over, or already stopping
        run.stop_sent = True
        holder = entry.holder
        runtime = self.runtime
        grace = runtime.cancel_grace_seconds
        timed_out = holder._stop_status is SubagentStatus.TIMED_OUT
        item = (holder.task_id, holder.cancel_reason or "stopped", timed_out, grace)
        batch = self._stop_batches.get(id(run.actor))
        if batch is None:
            self._stop_batches[id(run.actor)] = (run.actor, [item])
            # After the interrupts already queued on this loop (a whole tree's).
            self._loop.call_soon(self._flush_stops)
        else:
            batch[1].append(item)
        run.timers.append(
            self._loop.call_later(grace + SECOND_LINE_SECONDS, self._second_line, entry, run)
        )
        run.timers.append(
            self._loop.call_later(
                grace + runtime.cleanup_timeout_seconds, self._abandon, entry, run
            )
        )

    def _flush_stops(self) -> None:
        batches, self._stop_batches = self._stop_batches, {}
        for actor, stops in batches.values():
            try:
                actor.stop.remote(stops)
            except Exception:  # the actor is gone: the runs' streams will say so
                logger.debug("stop of %d run(s) could not reach their Ray actor", len(stops))

    def _second_line(self, entry: _Task, run: _RemoteRun) -> None:
        if run.ended:
            return
        logger.info("%s still running on Ray after the stop; ray.cancel", log_extra(entry.holder))
        try:
            ray.cancel(run.gen, recursive=True)
        except Exception:
            logger.debug("%s ray.cancel failed", log_extra(entry.holder), exc_info=True)

    def _abandon(self, entry: _Task, run: _RemoteRun) -> None:
        if run.ended:
            return
        logger.warning(
            "%s did not unwind on Ray within %.1fs of the stop; abandoning it",
            log_extra(entry.holder),
            self.runtime.cleanup_timeout_seconds,
        )
        self._abandoned_total += 1
        self._end(entry, run, _cleanup_timeout())
        if run.consumer is not None:
            run.consumer.cancel()

    async def _close(self, settle: float) -> None:
        """Let the runs still unwinding finish (bounded), then let the workers go."""
        consumers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if consumers:
            await asyncio.wait(consumers, timeout=settle)
        for task in consumers:
            task.cancel()
        if self._owns_pool and self._pool is not None:
            self._pool.kill()
        self._loop.call_soon(self._loop.stop)


def _cleanup_timeout() -> Ending:
    return Ending(
        SubagentStatus.CANCELLED,
        error="CleanupTimeout: the sub-agent did not unwind in time",
        stop_reason="cleanup_timeout",
    )


def _task_error_ending(exc: Exception, holder: SubagentResult) -> Ending:
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(exc, TaskCancelledError) or isinstance(cause, TaskCancelledError):
        if holder.cancel_event.is_set():
            return Ending(SubagentStatus.CANCELLED)
        return Ending(
            SubagentStatus.FAILED,
            error="TaskCancelledError: the Ray task was cancelled outside subagent-exec",
        )
    if isinstance(cause, BaseException) and cause is not exc:
        return Ending(SubagentStatus.FAILED, error=describe(cause))
    return Ending(SubagentStatus.FAILED, error=f"Ray error: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- what travels to the workers -------------------------------------------------------------


def _run_parts(run: RunFunction) -> list[tuple[str, Any]]:
    """The named parts of an executor's run, for error messages."""
    from .._config import _tool_name
    from .._run import run_subagent

    if not (isinstance(run, functools.partial) and run.func is run_subagent):
        return [("the run function", run)]
    config = run.keywords["config"]
    parts: list[tuple[str, Any]] = [
        ("the config's model", config.model),
        ("the config's graph_factory", config.graph_factory),
        ("parent_model", run.keywords.get("parent_model")),
    ]
    for tool in run.keywords.get("tools", ()):
        parts.append((f"tool {_tool_name(tool)!r}", tool))
    return parts


def _for_workers(run: RunFunction) -> tuple[RunFunction, dict[str, TaskTool]]:
    """The run as it travels: without callbacks (they stay on the driver), and
    with each ``task`` tool replaced by a :class:`RemoteTaskTool` that calls
    back into the real one, kept here by name."""
    from .._run import run_subagent

    if not (isinstance(run, functools.partial) and run.func is run_subagent):
        return run, {}
    task_tools: dict[str, TaskTool] = {}
    tools = []
    for tool in run.keywords.get("tools", ()):
        if isinstance(tool, TaskTool):
            task_tools[tool.name] = tool
            tool = RemoteTaskTool(name=tool.name, description=tool.description)
        tools.append(tool)
    keywords = {**run.keywords, "callbacks": (), "tools": tools}
    return functools.partial(run.func, *run.args, **keywords), task_tools


def _unpicklable_part(run: RunFunction) -> str:
    for label, part in _run_parts(run):
        try:
            cloudpickle.dumps(part)  # type: ignore[no-untyped-call]
        except Exception:
            return label
    return "the sub-agent's run"
