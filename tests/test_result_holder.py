"""The result holder on its own: first-write-wins transitions under one lock.

These drive the library-internal transition methods directly (``_start``,
``_latch_stop``, ``_finish``), which is what the runtime, the deadline and the
run itself call from their different threads.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from subagent_exec import SubagentResult, SubagentStatus

T = SubagentStatus


def make_holder(**kwargs: Any) -> SubagentResult:
    events: list[tuple[str, str]] = kwargs.pop("events", [])

    def on_event(kind: str, holder: SubagentResult, data: dict[str, Any]) -> None:
        events.append((kind, holder.status.value))

    return SubagentResult(
        task_id="t1", subagent_name="worker", task="do it", trace_id="trace", on_event=on_event
    )


def test_new_holder_is_pending_with_public_fields() -> None:
    holder = make_holder()
    assert holder.status is T.PENDING
    assert holder.task_id == "t1"
    assert holder.trace_id == "trace"
    assert holder.parent_id is None
    assert holder.subagent_name == "worker"
    assert holder.result is None and holder.error is None
    assert holder.started_at is None and holder.completed_at is None
    assert holder.ai_messages == []
    assert isinstance(holder.cancel_event, threading.Event)
    assert not holder.cancel_event.is_set()
    assert holder.cancel_reason is None
    assert holder.wait(0.01) is False


def test_happy_path_sets_timestamps_with_the_status() -> None:
    holder = make_holder()
    with freeze_time("2030-01-01 12:00:00"):
        assert holder._start()
        assert holder.status is T.RUNNING
        assert holder.started_at == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        assert holder.completed_at is None
    with freeze_time("2030-01-01 12:00:07"):
        assert holder._finish(T.COMPLETED, result="answer")
        assert holder.completed_at == datetime(2030, 1, 1, 12, 0, 7, tzinfo=UTC)
    assert holder.status is T.COMPLETED
    assert holder.result == "answer"
    assert holder.duration_seconds == 7.0
    assert holder.wait(0) is True


def test_failed_keeps_the_error_text() -> None:
    holder = make_holder()
    holder._start()
    holder._finish(T.FAILED, error="ValueError: bad input")
    assert holder.status is T.FAILED
    assert holder.error == "ValueError: bad input"


@pytest.mark.parametrize("first", [T.COMPLETED, T.FAILED])
@pytest.mark.parametrize("second", [T.COMPLETED, T.FAILED, T.CANCELLED, T.TIMED_OUT])
def test_first_terminal_write_wins(first: SubagentStatus, second: SubagentStatus) -> None:
    holder = make_holder()
    holder._start()
    assert holder._finish(first, result="r", error="E: e")
    stamp = holder.completed_at
    if second in (T.CANCELLED, T.TIMED_OUT):
        assert holder._latch_stop(second, "late stop") is False
        assert holder.cancel_reason is None
        assert not holder.cancel_event.is_set()
    else:
        assert holder._finish(second, result="other", error="X: other") is False
    assert holder.status is first
    assert holder.completed_at == stamp


@pytest.mark.parametrize("stop", [T.CANCELLED, T.TIMED_OUT])
@pytest.mark.parametrize("late", [T.COMPLETED, T.FAILED, T.CANCELLED, T.TIMED_OUT])
def test_latched_stop_wins_over_a_later_outcome(stop: SubagentStatus, late: SubagentStatus) -> None:
    holder = make_holder()
    holder._start()
    assert holder._latch_stop(stop, "first stop")
    # Latched but not written: the run is still unwinding.
    assert holder.status is T.RUNNING
    assert holder.stopping
    assert holder.cancel_event.is_set()
    assert holder.completed_at is None
    if late in (T.CANCELLED, T.TIMED_OUT):
        assert holder._latch_stop(late, "second stop") is False
    # The run ends with whatever outcome; the latched stop decides the status.
    assert holder._finish(late, result="late answer", error="Late: error")
    assert holder.status is stop
    assert holder.cancel_reason == "first stop"
    assert holder.completed_at is not None
    if stop is T.TIMED_OUT:
        assert holder.error is not None and holder.error.startswith("TimeoutError")


def test_pending_stop_is_terminal_at_once_and_never_starts() -> None:
    events: list[tuple[str, str]] = []
    holder = make_holder(events=events)
    assert holder._latch_stop(T.CANCELLED, "not needed")
    assert holder.status is T.CANCELLED
    assert holder.completed_at is not None
    assert holder.wait(0)
    assert holder._start() is False
    assert holder.status is T.CANCELLED
    assert holder.started_at is None
    assert [kind for kind, _ in events] == ["cancel_requested", "cancelled"]


def test_start_is_refused_once_a_stop_is_latched_even_if_not_terminal() -> None:
    holder = make_holder()
    holder._start()
    holder._latch_stop(T.CANCELLED, "stop")
    assert holder._start() is False
    assert holder.status is T.RUNNING  # still unwinding, never re-started


def test_bad_transitions_are_refused() -> None:
    holder = make_holder()
    with pytest.raises(ValueError):
        holder._latch_stop(T.COMPLETED, "not a stop")
    with pytest.raises(ValueError):
        holder._finish(T.RUNNING)


def test_ai_messages_are_deduplicated_and_closed_after_the_end() -> None:
    holder = make_holder()
    holder._start()
    assert holder._add_ai_message({"id": "m1", "text": "a"}, "m1")
    assert not holder._add_ai_message({"id": "m1", "text": "a"}, "m1")
    assert holder._add_ai_message({"id": "m2", "text": "b"}, "m2")
    holder._finish(T.COMPLETED, result="b")
    assert not holder._add_ai_message({"id": "m3", "text": "c"}, "m3")
    assert [m["id"] for m in holder.ai_messages] == ["m1", "m2"]


def test_wait_is_woken_by_the_terminal_write_not_by_polling() -> None:
    holder = make_holder()
    holder._start()
    woke = threading.Event()

    def waiter() -> None:
        if holder.wait(10):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not woke.wait(0.1)
    holder._finish(T.COMPLETED, result="x")
    assert woke.wait(2)
    thread.join(2)


def test_exactly_one_terminal_event_under_a_thread_race() -> None:
    """Many threads race complete/fail/cancel/timeout on one holder at once."""
    for _ in range(50):
        events: list[tuple[str, str]] = []
        holder = make_holder(events=events)
        holder._start()
        barrier = threading.Barrier(4)

        def complete(h: SubagentResult = holder, b: threading.Barrier = barrier) -> None:
            b.wait()
            h._finish(T.COMPLETED, result="done")

        def fail(h: SubagentResult = holder, b: threading.Barrier = barrier) -> None:
            b.wait()
            h._finish(T.FAILED, error="E: x")

        def cancel(h: SubagentResult = holder, b: threading.Barrier = barrier) -> None:
            b.wait()
            if h._latch_stop(T.CANCELLED, "cancel"):
                h._finish(T.CANCELLED)

        def timeout(h: SubagentResult = holder, b: threading.Barrier = barrier) -> None:
            b.wait()
            if h._latch_stop(T.TIMED_OUT, "deadline"):
                h._finish(T.TIMED_OUT)

        threads = [threading.Thread(target=f) for f in (complete, fail, cancel, timeout)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        terminal = [kind for kind, _ in events if kind in {s.value for s in T if s.is_terminal}]
        assert terminal == [holder.status.value]
        stops = [kind for kind, _ in events if kind == "cancel_requested"]
        assert len(stops) <= 1
        if stops:
            assert holder.status in (T.CANCELLED, T.TIMED_OUT)


def test_to_dict_is_a_consistent_snapshot() -> None:
    holder = make_holder()
    with freeze_time("2030-01-01"):
        holder._start()
    with freeze_time(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=3)):
        holder._finish(T.COMPLETED, result="ok")
    snapshot = holder.to_dict()
    assert snapshot["status"] == "completed"
    assert snapshot["result"] == "ok"
    assert snapshot["duration_seconds"] == 3.0
    assert snapshot["completed_at"].startswith("2030-01-01T00:00:03")
