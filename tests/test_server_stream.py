"""The event buffer and the SSE response, below HTTP: ring overflow, the end
of a per-task stream, and leaving at once when the client goes away."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.responses import StreamingResponse

from subagent_exec import MemoryStore, TaskEvent
from subagent_exec.server._stream import (
    BufferedEvent,
    EventBuffer,
    EventStreamResponse,
    event_frames,
)


class FakeRuntime:
    """Just what EventBuffer uses: subscribe(), last_event_seq and the store
    (a MemoryStore every published event is recorded in, as a runtime does)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[TaskEvent], None]] = []
        self.last_event_seq = 0
        self.store = MemoryStore()

    def get(self, task_id: str) -> None:
        return None  # no holders: terminal events go out without an outcome

    def subscribe(self, callback: Callable[[TaskEvent], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def publish(self, seq: int, kind: str = "started", task_id: str = "t1") -> None:
        self.last_event_seq = max(self.last_event_seq, seq)
        event = TaskEvent(
            seq=seq, kind=kind, task_id=task_id, parent_id=None, trace_id="tr",
            subagent_name="a", status="running", timestamp=time.time(), owner=None,
        )
        self.store.record(event, {})
        for callback in list(self.callbacks):
            callback(event)


def buffer_of(capacity: int) -> tuple[FakeRuntime, EventBuffer]:
    runtime = FakeRuntime()
    buffer = EventBuffer(runtime, capacity=capacity)  # type: ignore[arg-type]
    buffer.start()
    return runtime, buffer


def test_ring_keeps_the_newest_events_and_the_store_the_older_ones() -> None:
    runtime, buffer = buffer_of(capacity=10)
    for seq in range(1, 16):
        runtime.publish(seq, task_id=f"t{seq}")
    items, gap = buffer.read_after(0)
    # 1-5 left the ring: they come from the store, in order, with no gap.
    assert [i.seq for i in items] == list(range(1, 16)) and not gap
    items, gap = buffer.read_after(5)  # had 5; 6.. are all in the ring
    assert [i.seq for i in items] == list(range(6, 16)) and not gap
    assert buffer.read_after(15) == ([], False)
    # Only what the store's retention removed is lost: then a gap.
    for seq in range(1, 4):
        runtime.store.record(
            TaskEvent(seq=100 + seq, kind="completed", task_id=f"t{seq}", parent_id=None,
                      trace_id="tr", subagent_name="a", status="completed",
                      timestamp=time.time()), {},
        )
    runtime.store.set_retention(max_tasks=0, max_age_days=None)
    runtime.store.apply_retention()
    items, gap = buffer.read_after(0)
    assert gap and [i.seq for i in items][:2] == [4, 5]
    assert not buffer.read_after(103)[1]  # had every removed one: nothing lost
    items, _ = buffer.read_after(5)
    frame = items[-1].frame.decode()
    assert frame.startswith("id: 15\nevent: task\ndata: {") and frame.endswith("\n\n")
    assert json.loads(frame.split("data: ", 1)[1])["seq"] == 15


def test_bad_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        EventBuffer(FakeRuntime(), capacity=0)  # type: ignore[arg-type]


def test_stop_unsubscribes_and_ends_open_streams() -> None:
    runtime, buffer = buffer_of(capacity=10)

    async def scenario() -> list[bytes]:
        frames = event_frames(buffer, after=None, select=lambda i: True, keepalive_seconds=30)
        out = [await anext(frames)]  # registered
        waiting = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0.05)
        buffer.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)
        return out

    asyncio.run(scenario())
    assert runtime.callbacks == [] and buffer.client_count == 0


def test_task_stream_waits_for_events_still_on_their_way_before_it_ends() -> None:
    # The runtime says the tree has ended (seq 3 was published), but the
    # dispatcher has not delivered seq 3 (the terminal event) yet: the stream
    # must not end without it.
    runtime, buffer = buffer_of(capacity=10)
    runtime.publish(1, "created")
    runtime.publish(2, "started")
    runtime.last_event_seq = 3  # published, not yet delivered

    async def scenario() -> list[str]:
        frames = event_frames(
            buffer, after=0, select=lambda i: True, keepalive_seconds=30, finished=lambda: True
        )
        text: list[str] = []
        async for chunk in frames:
            text.append(chunk.decode())
            if len(text) == 2:  # preamble, then seq 1-2: now the late event arrives
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, runtime.publish, 3, "completed")
        return text

    text = "".join(asyncio.run(asyncio.wait_for(scenario(), 5)))
    assert text.index("id: 3\n") < text.index("event: end")


# -- the response ---------------------------------------------------------------------


class FakeClient:
    """An ASGI receive/send pair: the client leaves when told to."""

    def __init__(self, *, block_sends_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()
        self._requested = False
        self._block_after = block_sends_after

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        bodies = sum(1 for m in self.sent if m["type"] == "http.response.body")
        if self._block_after is not None and bodies > self._block_after:
            await asyncio.Event().wait()  # a client that stopped reading


def scope(spec_version: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}


class Body:
    """A stream body that yields once, then waits for events that never come."""

    def __init__(self) -> None:
        self.cleaned_up = threading.Event()

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            yield b": second\n\n"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            self.cleaned_up.set()


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_response_ends_when_the_client_leaves_an_idle_stream(spec_version: str) -> None:
    body = Body()
    frames = body.frames()  # kept referenced: cleanup must not wait for GC

    async def scenario() -> None:
        client = FakeClient()
        serving = asyncio.ensure_future(
            EventStreamResponse(frames)(scope(spec_version), client.receive, client.send)
        )
        while len(client.sent) < 3:
            await asyncio.sleep(0.01)
        client.leave.set()
        await asyncio.wait_for(serving, 5)
        # Checked on the loop: asyncio.run() closes leftover generators at exit.
        assert body.cleaned_up.is_set()

    asyncio.run(scenario())


def test_plain_streaming_response_would_not_notice_on_spec_2_4() -> None:
    # Why EventStreamResponse exists: Starlette's own response stops listening
    # for the disconnect on ASGI spec >= 2.4 and an idle stream lives on.
    body = Body()
    frames = body.frames()

    async def scenario() -> bool:
        client = FakeClient()
        serving = asyncio.ensure_future(
            StreamingResponse(frames)(scope("2.4"), client.receive, client.send)
        )
        while len(client.sent) < 3:
            await asyncio.sleep(0.01)
        client.leave.set()
        done, _ = await asyncio.wait([serving], timeout=0.5)
        serving.cancel()
        return bool(done)

    assert asyncio.run(scenario()) is False


def test_generator_parked_at_a_yield_is_closed_when_the_client_leaves() -> None:
    # The client stops reading: send() blocks with the body generator parked
    # at a yield. On disconnect, its finally must run now, not at GC time.
    body = Body()
    frames = body.frames()

    async def scenario() -> None:
        client = FakeClient(block_sends_after=1)
        serving = asyncio.ensure_future(
            EventStreamResponse(frames)(scope("2.3"), client.receive, client.send)
        )
        while len(client.sent) < 3:
            await asyncio.sleep(0.01)
        client.leave.set()
        await asyncio.wait_for(serving, 5)
        # Checked on the loop: asyncio.run() closes leftover generators at exit.
        assert body.cleaned_up.is_set()

    asyncio.run(scenario())


def test_buffered_event_is_what_filters_need() -> None:
    runtime, buffer = buffer_of(capacity=3)
    runtime.publish(1, "cancelled", task_id="x")
    (item,), _ = buffer.read_after(0)
    assert isinstance(item, BufferedEvent)
    assert (item.task_id, item.is_terminal, item.owner) == ("x", True, None)


def test_a_stream_that_starts_after_stop_ends_at_once() -> None:
    # Shutdown may begin between a stream's request and its first step.
    _, buffer = buffer_of(capacity=10)
    buffer.stop()

    async def scenario() -> list[bytes]:
        frames = event_frames(buffer, after=None, select=lambda i: True, keepalive_seconds=30)
        return [chunk async for chunk in frames]

    (opening,) = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert opening.startswith(b"retry: 2000\n\nevent: hello\n")
    assert buffer.client_count == 0
