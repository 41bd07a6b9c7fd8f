"""Baselines measured in the same run as the executor.

:class:`CooperativeFlagExecutor` is a small, faithful re-implementation of the
stop mechanism of a well-known executor: each task runs ``graph.astream`` on
its own loop in its own thread, and a stop request only sets a flag that is
checked *between* stream chunks. A chunk arrives when a graph step ends, so a
stop requested during a long model or tool call waits for the rest of that
step. Nothing else differs from a fair executor: same graph, same thread and
loop per task, the status is recorded the moment the flag is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable


@dataclass
class FlagTask:
    """One task of the baseline executor."""

    task: str
    stop_flag: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "running"
    finished_at: float | None = None  # perf_counter when the status was written

    def request_stop(self) -> None:
        self.stop_flag.set()


class CooperativeFlagExecutor:
    """Runs each task in a thread with its own loop; stops only between chunks."""

    def __init__(self, graph_factory: Callable[[], Runnable[Any, Any]]) -> None:
        self._graph_factory = graph_factory
        self._threads: list[threading.Thread] = []

    def submit(self, task: str) -> FlagTask:
        flag_task = FlagTask(task=task)
        thread = threading.Thread(
            target=asyncio.run, args=(self._drive(flag_task),), name="baseline-flag", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return flag_task

    async def _drive(self, flag_task: FlagTask) -> None:
        graph = self._graph_factory()
        status = "completed"
        try:
            stream = graph.astream(
                {"messages": [HumanMessage(content=flag_task.task)]}, stream_mode="values"
            )
            async with contextlib.aclosing(stream):
                async for _chunk in stream:
                    if flag_task.stop_flag.is_set():
                        status = "cancelled"
                        break
        except Exception:
            status = "failed"
        flag_task.status = status
        flag_task.finished_at = time.perf_counter()
        flag_task.done.set()

    def join(self, timeout: float = 30.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
