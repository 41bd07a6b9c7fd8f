"""The TaskStore suite: every store (memory, SQLite, a real PostgreSQL) keeps
records and events the same way, pages them newest first, marks unfinished
tasks interrupted, and applies retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from subagent_exec import SubagentStatus, TaskStore
from subagent_exec._store import INTERRUPTED_ERROR, INTERRUPTED_STOP_REASON

from .store_support import KINDS, Feed, StoreMaker


@pytest.fixture(params=KINDS)
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    made = StoreMaker(request.param, tmp_path, dsn)
    yield made
    made.close_all()


@pytest.fixture
def store(maker: StoreMaker) -> TaskStore:
    return maker.open()


def test_is_a_task_store(store: TaskStore) -> None:
    assert isinstance(store, TaskStore)
    assert store.durable is (store.location != "memory")


def test_a_record_follows_its_events_and_reads_its_own_writes(store: TaskStore) -> None:
    feed = Feed()
    feed.create(store, "root", owner="ann", prompt="compare batteries", thread_id="th-1")
    feed.create(store, "kid", parent="root", owner="ann")
    feed.start(store, "root")
    feed.message(store, "root", "first")
    feed.message(store, "root", "second")
    # Read at once, before any flush: the store reads its own writes.
    record = store.get_task("root")
    assert record is not None
    assert record.status is SubagentStatus.RUNNING
    assert record.task == "compare batteries" and record.owner == "ann"
    assert record.thread_id == "th-1" and record.children == ["kid"]
    assert [m["text"] for m in (record.ai_messages or [])] == ["first", "second"]
    assert record.ai_message_count == 2 and record.started_at is not None
    assert record.created_seq == 1 and record.last_seq == feed.seq

    # The status is always the event's, whatever the changes say.
    store.record(feed.event("completed", "root", "completed"), {"status": "failed",
                                                                 "result": "42"})
    assert store.flush(10.0)
    record = store.get_task("root")
    assert record is not None
    assert record.status is SubagentStatus.COMPLETED and record.result == "42"
    assert record.completed_at is not None and record.last_seq == feed.seq
    assert record.to_dict()["status"] == "completed"
    assert store.get_task("nobody") is None


def test_events_read_back_in_seq_order(store: TaskStore) -> None:
    feed = Feed()
    for name in ("a", "b", "c"):
        feed.run(store, name)
    everything = store.read_events()
    assert [e.seq for e in everything] == list(range(1, feed.seq + 1))
    assert store.flush(10.0)
    assert [e.seq for e in store.read_events(after=5)] == list(range(6, feed.seq + 1))
    assert [e.seq for e in store.read_events(after=2, limit=3)] == [3, 4, 5]
    of_b = store.read_events(task_id="b")
    assert {e.task_id for e in of_b} == {"b"}
    assert [e.kind for e in of_b] == ["created", "started", "ai_message", "completed"]
    assert of_b[2].data["message"]["text"] == "thinking about b"
    assert store.last_seq() == feed.seq


def test_pages_newest_first_with_a_cursor(store: TaskStore) -> None:
    feed = Feed()
    for i in range(25):
        feed.run(store, f"t{i:02d}")
    if store.durable:
        store.flush(10.0)
    feed.create(store, "unflushed")  # in the write buffer only
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_tasks(limit=10, cursor=cursor)
        seen += [r.task_id for r in page.tasks]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["unflushed", *[f"t{i:02d}" for i in reversed(range(25))]]
    assert pages == 3
    assert store.list_tasks(limit=26).next_cursor is None
    page = store.list_tasks(limit=1)
    assert page.tasks[0].ai_messages is None  # listings leave messages out


def test_listing_filters(store: TaskStore) -> None:
    feed = Feed()
    feed.run(store, "r1", owner="ann", thread_id="th")
    feed.create(store, "k1", parent="r1", owner="ann")
    feed.create(store, "r2", owner=None)
    feed.start(store, "r2")
    feed.create(store, "r3", owner="bob")
    feed.finish(store, "r3", "cancelled", cancel_reason="stop")

    def ids(**filters: object) -> list[str]:
        return [r.task_id for r in store.list_tasks(**filters).tasks]  # type: ignore[arg-type]

    assert ids(parent_id="r1") == ["k1"]
    assert ids(statuses=["running", "cancelled"]) == ["r3", "r2"]
    assert ids(statuses="completed") == ["r1"]
    assert ids(owner=None) == ["r2"]
    assert ids(owner="ann") == ["k1", "r1"]
    assert ids(root=True) == ["r3", "r2", "r1"]
    assert ids(root=False) == ["k1"]
    assert ids(thread_id="th") == ["r1"]
    assert ids(owner="ann", root=True) == ["r1"]


def test_bad_arguments_name_what_is_allowed(store: TaskStore) -> None:
    with pytest.raises(ValueError, match=r"list_tasks.limit must be an int from 1"):
        store.list_tasks(limit=0)
    with pytest.raises(TypeError, match=r"list_tasks.limit"):
        store.list_tasks(limit="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"list_tasks.cursor must be the next_cursor"):
        store.list_tasks(cursor="42; drop table")
    with pytest.raises(TypeError, match=r"list_tasks.cursor"):
        store.list_tasks(cursor=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"status must be one of"):
        store.list_tasks(statuses=["done"])
    with pytest.raises(TypeError, match=r"list_tasks.owner"):
        store.list_tasks(owner=7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"set_retention.max_tasks must be an int >= 0"):
        store.set_retention(max_tasks=-1, max_age_days=None)
    with pytest.raises(ValueError, match=r"set_retention.max_age_days"):
        store.set_retention(max_tasks=None, max_age_days=0)
    with pytest.raises(ValueError, match=r"read_events.limit"):
        store.read_events(limit=0)


def test_strings_sql_text_cannot_hold_round_trip(store: TaskStore) -> None:
    feed = Feed()
    odd = "id\ud800\x00\x01é"
    feed.create(store, odd, owner="ow\ud800ner", prompt="nul \x00 and \udfff surrogate")
    feed.finish(store, odd, result="r\x00")
    assert store.flush(10.0)
    record = store.get_task(odd)
    assert record is not None
    assert record.task == "nul \x00 and \udfff surrogate" and record.result == "r\x00"
    assert [r.task_id for r in store.list_tasks(owner="ow\ud800ner").tasks] == [odd]
    assert [e.task_id for e in store.read_events(task_id=odd)] == [odd, odd]
    assert store.list_tasks(owner="ow").tasks == []


def test_mark_interrupted_fails_unfinished_tasks_with_a_terminal_event(
    store: TaskStore,
) -> None:
    feed = Feed()
    feed.run(store, "done")
    feed.create(store, "queued")
    feed.create(store, "busy")
    feed.start(store, "busy")
    before = store.last_seq()
    events = store.mark_interrupted()
    assert [(e.task_id, e.kind, e.seq) for e in events] == [
        ("queued", "failed", before + 1), ("busy", "failed", before + 2)
    ]
    assert all(e.is_terminal and e.data["interrupted"] for e in events)
    for task_id in ("queued", "busy"):
        record = store.get_task(task_id)
        assert record is not None
        assert record.status is SubagentStatus.FAILED
        assert record.error == INTERRUPTED_ERROR
        assert record.stop_reason == INTERRUPTED_STOP_REASON
        assert record.completed_at is not None and record.last_seq > before
    done = store.get_task("done")
    assert done is not None and done.status is SubagentStatus.COMPLETED
    assert store.last_seq() == before + 2
    assert store.read_events(after=before) == events
    assert store.mark_interrupted() == []


def test_retention_by_count_keeps_unfinished_tasks(store: TaskStore) -> None:
    feed = Feed()
    for i in range(6):
        feed.run(store, f"old{i}")
    feed.create(store, "running")
    feed.start(store, "running")
    highest_removed = max(e.seq for e in store.read_events() if e.task_id == "old2")
    store.set_retention(max_tasks=3, max_age_days=None)
    assert store.apply_retention() == 3
    left = [r.task_id for r in store.list_tasks().tasks]
    assert left == ["running", "old5", "old4", "old3"]
    assert store.get_task("old0") is None
    assert not [e for e in store.read_events() if e.task_id.startswith(("old0", "old1", "old2"))]
    assert store.removed_through() == highest_removed
    assert store.last_seq() == feed.seq  # seqs are never reused
    assert store.apply_retention() == 0


def test_retention_applies_as_tasks_finish(store: TaskStore) -> None:
    feed = Feed()
    store.set_retention(max_tasks=2, max_age_days=None)
    for i in range(5):
        feed.run(store, f"t{i}")
    store.flush(10.0)
    deadline = time.monotonic() + 10.0
    while len(store.list_tasks().tasks) > 2 and time.monotonic() < deadline:
        feed.run(store, f"more{time.monotonic_ns()}")  # durable stores: at most once a second
        store.flush(10.0)
        time.sleep(0.2)
    assert len(store.list_tasks().tasks) <= 3


def test_retention_by_age(store: TaskStore) -> None:
    feed = Feed()
    feed.create(store, "ancient")
    feed.finish(store, "ancient", completed_at=time.time() - 3 * 86400)
    feed.run(store, "fresh")
    store.set_retention(max_tasks=None, max_age_days=1)
    assert store.apply_retention() == 1
    assert [r.task_id for r in store.list_tasks().tasks] == ["fresh"]


def test_delete_task_forgets_finished_tasks_only(store: TaskStore) -> None:
    feed = Feed()
    feed.run(store, "done")
    feed.create(store, "busy")
    assert store.delete_task("busy") is False
    assert store.delete_task("nobody") is False
    assert store.delete_task("done") is True
    assert store.get_task("done") is None
    assert store.read_events(task_id="done") == []
    assert store.removed_through() == 4
    assert store.delete_task("done") is False


def test_concurrent_writers_and_readers_lose_nothing(store: TaskStore) -> None:
    feed = Feed()
    lock = threading.Lock()  # the runtime writes under its lock, in seq order
    errors: list[BaseException] = []

    def write(n: int) -> None:
        for i in range(40):
            with lock:
                feed.run(store, f"w{n}-{i}")

    def read() -> None:
        try:
            for _ in range(40):
                store.list_tasks(limit=20)
                store.read_events(after=max(0, store.last_seq() - 10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert store.flush(10.0)
    assert len(store.read_events(limit=100_000)) == feed.seq == 3 * 40 * 4
    assert len(store.list_tasks(limit=1000).tasks) == 120
    assert store.stats()["store_pending"] == 0
