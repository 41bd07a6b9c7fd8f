"""The limits ``subagent-exec serve`` puts on connections, and the uvicorn
configuration that carries them.

uvicorn (0.54 read for this) has a concurrency limit, a keep-alive timeout and
a cap on the size of a request head, but nothing that bounds how long a client
may take to *send* a request head: a connection that sends half a request line
and then nothing holds a file descriptor for as long as it stays open. The
protocol class below adds that bound to uvicorn's h11 protocol; the time a
request *body* may take is bounded by the router (``body_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

# uvicorn and h11 are imported when a server is configured, not with this
# module: the `subagent-exec` command reads the defaults below at start-up.

#: Connections (open sockets, idle ones and event streams included) and
#: requests in progress, each at most; past it uvicorn answers 503.
LIMIT_CONCURRENCY = 100
#: A new connection, or a kept-alive one that has started its next request,
#: must deliver the whole request head within this many seconds.
HEADER_TIMEOUT_SECONDS = 10.0
#: An idle kept-alive connection is closed after this many seconds.
KEEP_ALIVE_SECONDS = 5
#: Largest request head (request line and headers); a bigger one gets 400.
MAX_HEAD_BYTES = 16 * 1024
#: Connections the kernel queues before the server accepts them.
BACKLOG = 128


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head has not
    fully arrived ``seconds`` after the connection opened (or after the
    previous response, on a kept-alive connection)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _waiting_for_head(self) -> bool:
            # h11 leaves IDLE for the client once a whole request head is parsed.
            return bool(self.conn.their_state is h11.IDLE)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._waiting_for_head():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._waiting_for_head():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutH11Protocol


def serve_config(
    app: Any,
    *,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of ``serve``: its limits, plus ``options``
    (log level, graceful shutdown, ...). Always the h11 protocol, so the
    limits are the same whether or not httptools is installed."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=header_timeout_protocol(header_timeout_seconds),
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=BACKLOG,
        **options,
    )
