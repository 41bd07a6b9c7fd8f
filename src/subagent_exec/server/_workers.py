"""``serve --workers N``: N server processes on one listening socket, each
with its own runtime in one cluster (a shared PostgreSQL store,
``cluster=True``: docs/deploy.md), under a parent that starts them, passes
Ctrl-C / SIGTERM on, and waits for them.

The parent binds the socket and hands it to each worker (``spawn``: a fresh
interpreter, no state forked from the parent); the kernel spreads
connections over the processes that accept on it. A worker that dies is
logged, not restarted: the others go on serving, and mark its unfinished
tasks interrupted once its heartbeat is old.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("subagent_exec.server")
#: How long the parent waits for a worker to stop after SIGTERM, then kills it.
WORKER_STOP_SECONDS = 20.0


#: Response header naming the worker that answered (0 .. N-1).
WORKER_HEADER = b"x-subagent-worker"


class WorkerHeader:
    """ASGI middleware: every HTTP response says which worker process made
    it (``x-subagent-worker``), for operators and for the tests. Pure ASGI,
    so event streams pass through untouched."""

    def __init__(self, app: Any, index: int) -> None:
        self.app = app
        self.value = str(index).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (WORKER_HEADER, self.value)]}
            await send(message)

        await self.app(scope, receive, named_send)


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """In a worker: stop gracefully (SIGTERM to itself) once the parent that
    started it is gone (killed without a chance to stop its workers), rather
    than serve on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="subagent-exec-parent-watch", daemon=True).start()


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def supervise(
    target: Callable[..., None], options: dict[str, Any], sock: socket.socket, workers: int
) -> int:
    """Run ``target(options, sock, index)`` in ``workers`` spawned processes
    until a signal asks to stop or every one has ended; 0 if all ended cleanly."""
    context = multiprocessing.get_context("spawn")
    options = {**options, "parent_pid": os.getpid()}
    processes = [
        context.Process(
            target=target, args=(options, sock, index), name=f"subagent-exec-worker-{index}"
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    reported: set[int] = set()
    try:
        while not stop.wait(0.5):
            alive = 0
            for index, process in enumerate(processes):
                if process.is_alive():
                    alive += 1
                elif index not in reported:
                    reported.add(index)
                    print(f"subagent-exec: worker {index} (pid {process.pid}) exited with "
                          f"status {process.exitcode}", flush=True)
            if not alive:
                break
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # uvicorn's graceful exit
        for process in processes:
            process.join(WORKER_STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join(5.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
