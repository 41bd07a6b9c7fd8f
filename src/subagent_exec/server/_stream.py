"""The event buffer behind the Server-Sent Events endpoints.

One :class:`EventBuffer` per router subscribes to the runtime once and keeps
the latest events in a ring bounded by count (``capacity``) and by bytes
(``max_bytes``), each rendered to its SSE frame once. A frame carries no string
longer than ``EVENT_TEXT_CHARS`` (longer ones are cut, marked, and listed in
the event's ``truncated``; ``GET /tasks/{id}`` has the full values), so a task
with a 2 MB prompt costs the ring kilobytes, not megabytes.
Every connected stream is a :class:`StreamClient` that remembers only the seq
it has sent last and reads the ring from there, so:

* a slow client costs no memory beyond the ring (no per-client queues); if it
  falls further behind than the ring holds, it is told so with a ``reset``
  event and re-reads the task list;
* a client that reconnects with ``Last-Event-ID`` gets exactly the events it
  missed: from the ring, or, older than the ring, from the runtime's task
  store (``runtime.store``), which a durable store keeps across restarts of
  the server. Only events the store's retention removed end in a ``reset``.

Runtime subscribers are called on the runtime's dispatcher thread; the buffer
only appends under its own lock and *wakes* each client's event loop with
``call_soon_threadsafe`` (at most one pending wake per client, so a burst of
events costs one loop callback, not one per event).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .._checks import check_int
from .._events import TaskEvent
from .._runtime import SubagentRuntime
from ._json import dumps, truncate_strings

logger = logging.getLogger("subagent_exec.server")


@dataclass(frozen=True)
class BufferedEvent:
    """One task event as kept in the ring: what filtering needs, and its frame."""

    seq: int
    task_id: str
    parent_id: str | None
    owner: str | None
    is_terminal: bool
    frame: bytes


#: Longest string an event carries (prompt, result, message text, ...); a
#: longer one is cut and marked (GET /tasks/{id} has the full value).
EVENT_TEXT_CHARS = 2000
#: Largest frame of one event: one whose data is still bigger after cutting
#: its strings (thousands of message blocks, say) goes out without its data.
MAX_EVENT_FRAME_BYTES = 64 * 1024
#: Default bound of the ring in bytes (frames plus a fixed cost per event).
DEFAULT_EVENT_BUFFER_BYTES = 16 * 1024 * 1024
#: What one buffered event costs besides its frame (the object, its ids).
EVENT_OVERHEAD_BYTES = 256
#: Events read from the store at a time when a stream replays what the ring
#: no longer (or never) held.
STORE_READ_EVENTS = 500


def sse_frame(data: object, *, event: str | None = None, event_id: int | None = None) -> bytes:
    """One Server-Sent Events frame. JSON never contains a raw newline, so the
    data always fits on a single ``data:`` line; a lone surrogate in a string
    goes out as U+FFFD (see ``_json.py``)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + dumps(data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def task_event_frame(payload: dict[str, object], seq: int) -> bytes:
    """The frame of one task event, within :data:`EVENT_TEXT_CHARS` per string
    and :data:`MAX_EVENT_FRAME_BYTES` in all. What was cut is listed in
    ``truncated``: a path such as ``data.task`` or ``outcome.result`` mapped to
    the full length in characters (``data`` alone: the data was left out)."""
    truncated: dict[str, int] = {}
    bounded = {
        key: truncate_strings(value, EVENT_TEXT_CHARS, key, truncated)
        for key, value in payload.items()
    }
    if truncated:
        bounded["truncated"] = truncated
    frame = sse_frame(bounded, event="task", event_id=seq)
    if len(frame) > MAX_EVENT_FRAME_BYTES:
        truncated = {"data": len(dumps(payload.get("data")))}
        bounded["data"] = {}
        bounded["truncated"] = truncated
        frame = sse_frame(bounded, event="task", event_id=seq)
    return frame


class StreamClient:
    """One open event stream, living on the event loop of its HTTP request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._wake_scheduled = False
        self.closed = False

    def wake(self) -> None:
        """Called from any thread: new events (or a close) are waiting."""
        with self._lock:
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._set_ready)
        except RuntimeError:  # the server's loop is closed: nobody is reading
            pass

    def _set_ready(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        self._ready.set()

    def arm(self) -> None:
        """Call before reading the ring, so a wake that lands after the read
        is not lost (it sets the flag again and the next wait returns at once)."""
        self._ready.clear()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake; False when ``timeout`` ran out first."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True


class EventBuffer:
    """A bounded, seq-ordered ring of the runtime's task events, shared by all
    stream clients of one router: at most ``capacity`` events and ``max_bytes``
    bytes (frames plus ``EVENT_OVERHEAD_BYTES`` each; ``size_bytes`` says what
    it holds), the oldest dropped first."""

    def __init__(
        self,
        runtime: SubagentRuntime,
        capacity: int = 10_000,
        max_bytes: int = DEFAULT_EVENT_BUFFER_BYTES,
    ) -> None:
        check_int("EventBuffer", "capacity", capacity, minimum=1)
        check_int("EventBuffer", "max_bytes", max_bytes, minimum=1)
        self.runtime = runtime
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ring: deque[BufferedEvent] = deque()
        self._bytes = 0
        # Events up to here that the ring does not hold are read from the store.
        self._last_seq = runtime.last_event_seq
        self._clients: set[StreamClient] = set()
        self._unsubscribe: Callable[[], None] | None = None
        #: Names this buffer's numbering, which is its store's: the same after
        #: a restart on a durable store (seqs go on), new with a new memory
        #: store, so a client compares epochs to tell "resumed" from "talking
        #: to a different server".
        self.epoch = runtime.store.store_id

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the runtime (idempotent)."""
        with self._lock:
            if self._unsubscribe is not None:
                return
            self._unsubscribe = self.runtime.subscribe(self._on_event)

    def stop(self) -> None:
        """Unsubscribe and end every open stream (on app shutdown)."""
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            clients = list(self._clients)
        if unsubscribe is not None:
            unsubscribe()
        for client in clients:
            client.closed = True
            client.wake()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._unsubscribe is not None

    # -- the runtime side (dispatcher thread) --------------------------------------

    def _on_event(self, event: TaskEvent) -> None:
        item = self._buffered(event)
        with self._lock:
            if self._ring and item.seq < self._ring[-1].seq:
                # Another process's event (a cluster) numbered below ours: the ring stays
                # in seq order (a stream already past it misses it: docs/deploy.md).
                bisect.insort(self._ring, item, key=lambda queued: queued.seq)
            else:
                self._ring.append(item)
            self._bytes += _cost(item)
            self._last_seq = max(self._last_seq, item.seq)
            # Both bounds, oldest first (what leaves the ring is still in the
            # store; a lone event bigger than max_bytes is dropped too).
            while self._ring and (
                len(self._ring) > self.capacity or self._bytes > self.max_bytes
            ):
                dropped = self._ring.popleft()
                self._bytes -= _cost(dropped)
            clients = list(self._clients)
        for client in clients:
            client.wake()

    # -- the client side (server loop) ---------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the newest buffered event (0 before the first one)."""
        with self._lock:
            return self._last_seq

    @property
    def size_bytes(self) -> int:
        """What the buffered events cost now: their frames plus
        ``EVENT_OVERHEAD_BYTES`` each; never more than ``max_bytes``."""
        with self._lock:
            return self._bytes

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def connect(self) -> StreamClient:
        """Register a stream. After ``stop()`` it is born closed: a stream that
        starts while the server shuts down must not wait for events forever."""
        client = StreamClient(asyncio.get_running_loop())
        with self._lock:
            self._clients.add(client)
            client.closed = self._unsubscribe is None
        return client

    def disconnect(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def read_after(self, seq: int) -> tuple[list[BufferedEvent], bool]:
        """Events newer than ``seq``, oldest first, and whether events between
        ``seq`` and the first of them are lost (removed by store retention).
        Older than the ring: up to ``STORE_READ_EVENTS`` at a time from the
        store (call again while the last one returned is behind ``last_seq``)."""
        with self._lock:
            newer: list[BufferedEvent] = []
            # Clients are usually near the head: walk from the newest end.
            for item in reversed(self._ring):
                if item.seq <= seq:
                    break
                newer.append(item)
            covered_from = self._ring[0].seq if self._ring else self._last_seq + 1
        newer.reverse()
        if seq + 1 >= covered_from:
            return newer, False
        # The ring lacks (seq, covered_from): the store has them, unless its
        # retention removed some. Reads are short and bounded (a limit).
        store = self.runtime.store
        gap = seq < store.removed_through()
        stored = [
            self._buffered(event)
            for event in store.read_events(after=seq, limit=STORE_READ_EVENTS)
            if event.seq < covered_from
        ]
        if len(stored) == STORE_READ_EVENTS:
            return stored, gap  # the rest on the next call
        return stored + newer, gap

    def _buffered(self, event: TaskEvent) -> BufferedEvent:
        payload = event.to_dict()
        if event.is_terminal:
            # The terminal event itself says only the status; a page wants the
            # why at once, without one GET per ended task. A terminal task no
            # longer changes, so this read is consistent.
            holder: Any = self.runtime.get(event.task_id)
            if holder is not None:
                payload["outcome"] = {
                    "result": holder.result,
                    "error": holder.error,
                    "cancel_reason": holder.cancel_reason,
                    "stop_reason": holder.stop_reason,
                }
        return BufferedEvent(
            seq=event.seq,
            task_id=event.task_id,
            parent_id=event.parent_id,
            owner=event.owner,
            is_terminal=event.is_terminal,
            frame=task_event_frame(payload, event.seq),
        )


def _cost(item: BufferedEvent) -> int:
    return len(item.frame) + EVENT_OVERHEAD_BYTES


RESET_REASON_OVERFLOW = (
    "events were lost: the task store's retention removed events this stream had not sent"
)
RESET_REASON_STALE = "Last-Event-ID is not from this server's event stream"


async def event_frames(
    buffer: EventBuffer,
    *,
    after: int | None,
    select: Callable[[BufferedEvent], bool],
    keepalive_seconds: float,
    finished: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    """The body of one event stream: a ``hello`` (the buffer's epoch), then
    buffered events newer than ``after`` (``None`` = from now on) that
    ``select`` keeps, as SSE frames.

    With ``finished``, the stream ends once ``finished()`` is true and every
    event the runtime had published at that moment has been sent, so the
    terminal events are always in it. The stream registers with the buffer on
    its first step (a body that is never iterated leaves nothing behind) and
    leaves it when it ends for any reason, the client leaving included.
    """
    client = buffer.connect()
    try:
        hello = {"epoch": buffer.epoch, "last_seq": buffer.last_seq}
        yield b"retry: 2000\n\n" + sse_frame(hello, event="hello")
        last = buffer.last_seq if after is None else after
        if last > buffer.last_seq:
            yield sse_frame({"reason": RESET_REASON_STALE}, event="reset")
            last = 0 if finished is not None else buffer.last_seq
        check_end = finished is not None
        flush_to: int | None = None
        while not client.closed:
            client.arm()
            items, gap = buffer.read_after(last)
            if gap:
                yield sse_frame({"reason": RESET_REASON_OVERFLOW}, event="reset")
                check_end = finished is not None  # a lost event may have been terminal
            frames = []
            for item in items:
                if select(item):
                    frames.append(item.frame)
                    check_end = check_end or item.is_terminal
            if items:
                last = items[-1].seq
            if frames:
                yield b"".join(frames)
            if items and last < buffer.last_seq:
                continue  # replaying from the store: the next batch at once
            if finished is not None:
                if check_end and flush_to is None and finished():
                    flush_to = buffer.runtime.last_event_seq
                check_end = False
                if flush_to is not None and last >= flush_to:
                    yield sse_frame({"last_seq": last}, event="end")
                    return
            if not await client.wait(keepalive_seconds):
                yield b": keep-alive\n\n"
    finally:
        buffer.disconnect(client)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that stops streaming as soon as the
    client goes away, whatever ASGI spec version the server speaks (Starlette
    only listens for the disconnect below spec 2.4), so an idle stream's
    generator is cancelled at once rather than at its next write."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            media_type=self.media_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            # Run the generator's cleanup now (it may be parked at a yield when
            # the client left), not whenever it happens to be garbage-collected.
            with anyio.CancelScope(shield=True):
                await _aclose(self.body_iterator)


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
