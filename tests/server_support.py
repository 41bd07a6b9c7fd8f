"""A real uvicorn server on 127.0.0.1 (ephemeral port) for the server tests,
and a small Server-Sent Events reader over httpx."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request

from subagent_exec import SubagentRuntime
from subagent_exec.server import SubagentRouter, create_router, demo_run_starter

#: Generous: the machine has 2 shared cores; this bounds waits, it is no target.
SETTLE = 15.0


async def header_user(request: Request) -> str | None:
    """A host's owner dependency, as tests use it: the user is the X-User header.
    (``async``: FastAPI runs a sync dependency in a worker thread.)"""
    return request.headers.get("x-user")


class LiveServer:
    """uvicorn serving ``app`` in a background thread, on its own event loop."""

    def __init__(self, app: FastAPI, *, graceful_seconds: float = 2.0, port: int = 0) -> None:
        self.app = app
        self._sock = socket.create_server(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=graceful_seconds, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="test-uvicorn", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self._sock]))
        finally:
            self.loop.close()

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + SETTLE
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(SETTLE)
        self._sock.close()
        assert not self._thread.is_alive(), "uvicorn did not stop"

    def loop_task_count(self) -> int:
        """Asyncio tasks alive on the server's loop (not counting this probe)."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(SETTLE)

    def client(self, user: str | None = None, **options: Any) -> httpx.Client:
        headers = dict(options.pop("headers", {}))
        if user is not None:
            headers["x-user"] = user
        options.setdefault("timeout", httpx.Timeout(SETTLE))
        return httpx.Client(base_url=self.base_url, headers=headers, **options)


def make_app(runtime: SubagentRuntime, **router_options: Any) -> tuple[FastAPI, SubagentRouter]:
    """A host app mounting the router at the root, users from the X-User header."""
    router_options.setdefault("owner_dependency", header_user)
    # The bundled demo at double pace: sub-agents still take about a second.
    router_options.setdefault("start_run", demo_run_starter(0.5))
    router = create_router(runtime, **router_options)
    app = FastAPI()
    app.include_router(router)
    return app, router


@dataclass
class SSE:
    event: str | None
    id: int | None
    data: Any

    @property
    def kind(self) -> str | None:
        return self.data.get("kind") if isinstance(self.data, dict) else None


def sse_events(
    response: httpx.Response, *, keepalives: bool = False, hello: bool = False
) -> Iterator[SSE]:
    """Parse a text/event-stream response into events. The opening ``hello``
    and comments (keep-alives) are skipped unless asked for; a keep-alive is
    yielded as ``SSE("keep-alive", None, None)``."""
    event: str | None = None
    event_id: int | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data and (hello or event != "hello"):
                yield SSE(event, event_id, json.loads("\n".join(data)))
            event, event_id, data = None, None, []
        elif line.startswith(":"):
            if keepalives:
                yield SSE("keep-alive", None, None)
        elif line.startswith("retry:"):
            continue
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def read_until(
    events: Iterator[SSE], done: Callable[[SSE], bool], limit: int = 10_000
) -> list[SSE]:
    """Events up to and including the first one for which ``done`` is true."""
    seen = []
    for event in events:
        seen.append(event)
        if done(event) or len(seen) >= limit:
            return seen
    raise AssertionError(f"stream ended before the expected event; got {len(seen)} events")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = SETTLE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def non_pool_threads(runtime_names: tuple[str, ...]) -> list[str]:
    """Names of live threads, leaving out the runtimes' worker pools (they are
    created on demand up to a fixed cap and then reused, by design)."""
    prefixes = tuple(f"{name}-worker" for name in runtime_names)
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith(prefixes))


def raw_http(port: int, request: bytes, timeout: float = SETTLE) -> tuple[int, bytes]:
    """Send ``request`` as it is (any Host, any header bytes) on a fresh
    connection to 127.0.0.1 and read the answer until the server closes it:
    its status code and body. The request should say ``Connection: close``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def http_request(
    method: str, path: str, host: bytes, headers: dict[bytes, bytes] | None = None,
    body: bytes = b"",
) -> bytes:
    """The bytes of one HTTP/1.1 request with ``Connection: close``."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host, b"Connection: close"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
