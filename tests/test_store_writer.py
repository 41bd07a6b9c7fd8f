"""The write buffer behind the durable stores: one batch per burst, written
within the flush interval, failures retried with what arrived meanwhile, and
the oldest events given up on (counted) only past ``max_queued``."""

from __future__ import annotations

import threading
import time

from subagent_exec._store._writer import Batch, WriteBuffer

from .store_support import Feed, wait_until


class Sink:
    """A ``write`` that records batches, and fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.times: list[float] = []
        self.failing = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        if self.failing.is_set():
            raise OSError("disk full")
        with self.lock:
            self.batches.append(batch)
            self.times.append(time.monotonic())

    def seqs(self) -> list[int]:
        with self.lock:
            return [e.seq for b in self.batches for e in b.events]


def test_a_burst_is_one_batch_written_within_the_flush_interval() -> None:
    sink = Sink()
    buffer = WriteBuffer(name="t", location="test", write=sink, flush_interval=0.2)
    feed = Feed()
    started = time.monotonic()
    for i in range(300):
        feed.run(buffer, f"t{i}")  # type: ignore[arg-type]
    wait_until(lambda: len(sink.seqs()) == 1200, 10.0, "every event written")
    assert sink.seqs() == list(range(1, 1201))
    assert len(sink.batches) <= 3, "a burst is written in a batch or few, not per event"
    assert sink.times[0] - started < 0.2 + 0.15  # half the interval, plus a loaded machine
    # The last record of each task is what the batch carried.
    last = sink.batches[-1].records["t299"].record
    assert last["status"] == "completed" and last["last_seq"] == 1200
    assert buffer.close(5.0)


def test_failures_are_retried_merged_and_past_max_queued_dropped_and_counted() -> None:
    sink = Sink()
    sink.failing.set()
    buffer = WriteBuffer(
        name="t", location="test", write=sink, flush_interval=0.02, max_queued=10
    )
    feed = Feed()
    feed.create(buffer, "kept")  # type: ignore[arg-type]
    wait_until(lambda: buffer.stats()["store_errors"] >= 1, 10.0, "a failed write")
    for i in range(12):
        feed.message(buffer, "kept", f"m{i}")  # type: ignore[arg-type]
    feed.finish(buffer, "kept")  # type: ignore[arg-type]
    # Past max_queued, counting the failed batch being retried: 14 waited for 10 places.
    wait_until(lambda: buffer.stats()["store_dropped"] == 4, 10.0, "the oldest given up on")
    assert buffer.stats()["store_pending"] == 10
    assert not buffer.flush(0.1)
    sink.failing.clear()
    assert buffer.flush(10.0)
    assert buffer.stats()["store_pending"] == 0
    written = sink.seqs()
    # The newest 10 events; the record still arrives in its latest state.
    assert written == list(range(5, feed.seq + 1))
    final = sink.batches[-1].records["kept"].record
    assert final["status"] == "completed" and final["ai_message_count"] == 12
    assert buffer.close(5.0)
