"""Floors: what the machine and CPython need for the same shape of work with
no executor at all, measured in the same run as the executor.

* :class:`LoopThreads` is the *thread floor* of a stop: ``n`` threads, each
  running its own event loop with one task parked in a long await. A stop
  posts ``call_soon_threadsafe(task.cancel)`` to every loop, one after the
  other, and ends when the last task's done-callback has written its
  "status" (a counter under a ``threading.Lock``). A tree stop of ``n``
  sub-agents on ``n`` loops cannot be faster than this: the same wake-ups,
  the same GIL hand-offs, no registry, no LangGraph. With ``parked=`` a
  LangGraph graph parked inside its node (``graph_parked``) takes the bare
  task's place: what LangGraph's own unwind adds, still with no executor.
* :class:`LoopThread` is the *dispatch floor*: one persistent loop in one
  worker thread, given coroutines from another thread with
  ``run_coroutine_threadsafe`` (the cheapest way to run async work on a
  loop of its own and wait for it).
* :class:`BareStarts` is the *start floor*: ``n`` bare coroutines, each run
  with ``asyncio.run`` on a thread of a warm ``ThreadPoolExecutor`` (what a
  sub-agent start needs without any agent, registry or event), timed until
  every one has entered its await.

None of these is ever inside a measured interval of the executor's figures.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .core import wait_event

T = TypeVar("T")

PARK_SECONDS = 3600.0

#: Given the callback to call once parked, the coroutine to park on one loop.
Parker = Callable[[Callable[[], None]], Coroutine[Any, Any, Any]]


async def bare_parked(parked: Callable[[], None]) -> None:
    parked()
    await asyncio.sleep(PARK_SECONDS)


def graph_parked() -> Parker:
    """A one-node LangGraph graph streamed as the executor streams it
    (``stream_mode="values"``), its node parked in a long await."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    async def park(parked: Callable[[], None]) -> None:
        async def work(state: MessagesState) -> dict[str, Any]:
            parked()
            await asyncio.sleep(PARK_SECONDS)
            return {"messages": [AIMessage(content="done")]}

        builder = StateGraph(MessagesState)
        builder.add_node("work", work)
        builder.add_edge(START, "work")
        builder.add_edge("work", END)
        graph = builder.compile()
        stream = graph.astream({"messages": [HumanMessage(content="park")]}, stream_mode="values")
        async for _chunk in stream:
            pass

    return park


class LoopThread:
    """One event loop running forever in its own (daemon) thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on this loop and block until it returns."""
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)
        self.loop.close()


class LoopThreads:
    """The thread floor of a stop: ``n`` loops in ``n`` threads, one parked task each."""

    def __init__(self, n: int, name: str = "bench-floor", parked: Parker = bare_parked) -> None:
        self.threads = [LoopThread(f"{name}-{i}") for i in range(n)]
        self._parker = parked
        self._lock = threading.Lock()
        self._tasks: list[asyncio.Task[None] | None] = [None] * n
        self._parked = threading.Event()
        self._all_done = threading.Event()
        self._to_park = 0
        self._left = 0

    def park(self, timeout: float = 30.0) -> None:
        """Park one task in a long await on every loop (returns once all are parked)."""
        with self._lock:
            self._to_park = len(self.threads)
            self._left = len(self.threads)
            self._parked.clear()
            self._all_done.clear()
        for index, thread in enumerate(self.threads):
            thread.loop.call_soon_threadsafe(self._park_one, index, thread.loop)
        wait_event(self._parked, timeout, "the floor's tasks to park")

    def _park_one(self, index: int, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._parker(self._one_parked))
        task.add_done_callback(self._done)
        self._tasks[index] = task

    def _one_parked(self) -> None:
        with self._lock:
            self._to_park -= 1
            if self._to_park == 0:
                self._parked.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        # The floor's "status write": under one lock, like a terminal transition.
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._all_done.set()

    def stop(self, timeout: float = 30.0) -> float:
        """Cancel every parked task; seconds until the last one is done."""
        started = time.perf_counter()
        for thread, task in zip(self.threads, self._tasks, strict=True):
            assert task is not None
            thread.loop.call_soon_threadsafe(task.cancel)
        wait_event(self._all_done, timeout, "the floor's tasks to end")
        return time.perf_counter() - started

    def close(self) -> None:
        for thread in self.threads:
            thread.close()


class BareStarts:
    """The start floor: ``n`` bare coroutines on ``asyncio.run`` in warm pool threads."""

    def __init__(self, n: int, name: str = "bench-bare") -> None:
        self.n = n
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._entered = 0
        self._all_entered = threading.Event()
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def start(self, timeout: float = 60.0) -> float:
        """Start ``n`` bare coroutines; seconds until every one has entered its await.

        They are held there (so all ``n`` run at once, each on its own thread)
        until :meth:`release`.
        """
        with self._lock:
            self._entered = 0
            self._waiting.clear()
            self._all_entered.clear()
        started = time.perf_counter()
        futures = [self._pool.submit(asyncio.run, self._bare()) for _ in range(self.n)]
        wait_event(self._all_entered, timeout, "the bare coroutines to start")
        elapsed = time.perf_counter() - started
        self._release_all()
        for future in futures:
            future.result(timeout)
        return elapsed

    async def _bare(self) -> None:
        loop = asyncio.get_running_loop()
        held: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiting.append((loop, held))
            self._entered += 1
            if self._entered == self.n:
                self._all_entered.set()
        await held

    def _release_all(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for loop, held in waiting:
            loop.call_soon_threadsafe(_resolve, held)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
