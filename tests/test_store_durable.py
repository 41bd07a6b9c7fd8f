"""What only the durable stores (SQLite, PostgreSQL) promise: history that
outlives the store object and the process, a versioned schema, clear errors at
start, and write failures at run time that are retried, counted and logged
once, without losing what reads see."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from subagent_exec import SqliteStore, StoreError, StoreSchemaError, SubagentStatus
from subagent_exec._store._schema import MIGRATIONS, migrate

from .store_support import DURABLE, Feed, StoreMaker, wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=DURABLE)
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    made = StoreMaker(request.param, tmp_path, dsn)
    yield made
    made.close_all()


def _sql(maker: StoreMaker, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on the store's database, outside the store."""
    if maker.kind == "sqlite":
        with sqlite3.connect(maker.tmp_path / "tasks.db") as conn:
            return conn.execute(statement, params).fetchall()
    import psycopg

    assert maker.dsn is not None
    with psycopg.connect(maker.dsn, autocommit=True) as conn:
        cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def test_history_outlives_the_store_object(maker: StoreMaker) -> None:
    feed = Feed()
    first = maker.open()
    feed.run(first, "done", owner="ann")
    feed.create(first, "left-running")
    feed.start(first, "left-running")
    first.close()

    second = maker.open()
    assert second.last_seq() == feed.seq
    done = second.get_task("done")
    assert done is not None and done.status is SubagentStatus.COMPLETED
    assert done.result == "answer of done" and done.owner == "ann"
    assert [m["text"] for m in done.ai_messages or []] == ["thinking about done"]
    assert [e.seq for e in second.read_events()] == list(range(1, feed.seq + 1))
    # The restart: what was running when its process went away is interrupted.
    events = second.mark_interrupted()
    assert [(e.task_id, e.seq) for e in events] == [("left-running", feed.seq + 1)]
    second.close()

    third = maker.open()
    record = third.get_task("left-running")
    assert record is not None and record.stop_reason == "interrupted"
    assert third.last_seq() == feed.seq + 1
    assert third.mark_interrupted() == []


def test_seq_never_goes_back_after_retention_removed_the_newest(maker: StoreMaker) -> None:
    feed = Feed()
    store = maker.open()
    feed.run(store, "only")
    assert store.delete_task("only")
    store.close()
    assert maker.open().last_seq() == feed.seq


def test_schema_versions_are_recorded_and_a_newer_one_is_refused(maker: StoreMaker) -> None:
    maker.open().close()
    rows = _sql(maker, "SELECT version, name FROM subagent_schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    _sql(
        maker,
        "INSERT INTO subagent_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        (MIGRATIONS[-1].version + 1, "from the future", time.time()),
    )
    with pytest.raises(StoreSchemaError) as caught:
        maker.open()
    message = str(caught.value)
    assert f"schema version {MIGRATIONS[-1].version + 1}" in message
    assert "newer subagent-exec" in message
    assert maker.made[-1].location in message if maker.made else True
    location = str(maker.tmp_path / "tasks.db") if maker.kind == "sqlite" else "127.0.0.1"
    assert location in message


def test_a_store_of_the_first_schema_is_migrated_with_its_data(maker: StoreMaker) -> None:
    """A database written by the first schema (before processes were tracked)
    opens, is migrated, and its tasks and events read back."""
    first = MIGRATIONS[:1]
    record = (
        '{"task_id":"v1-task","trace_id":"tr","parent_id":null,"subagent_name":"old",'
        '"owner":null,"task":"from v1","depth":1,"status":"completed","result":"kept",'
        '"error":null,"stop_reason":null,"cancel_reason":null,"created_at":1.0,'
        '"started_at":2.0,"completed_at":3.0,"ai_message_count":0,"created_seq":1,'
        '"last_seq":2}'
    )
    event = (
        '{"seq":2,"kind":"completed","task_id":"v1-task","parent_id":null,"trace_id":"tr",'
        '"subagent_name":"old","status":"completed","timestamp":3.0,"data":{},"owner":null}'
    )
    statements = [
        "INSERT INTO subagent_tasks (task_id, created_seq, parent_id, owner, thread_id, "
        "status, completed_at, last_seq, record) VALUES ('v1-task', 1, NULL, NULL, NULL, "
        f"'completed', 3.0, 2, '{record}')",
        f"INSERT INTO subagent_events (seq, task_id, kind, event) VALUES "
        f"(2, 'v1-task', 'completed', '{event}')",
    ]
    if maker.kind == "sqlite":
        with sqlite3.connect(maker.tmp_path / "tasks.db") as conn:
            migrate(lambda s, p: conn.execute(s, p).fetchall(), "sqlite", "x", migrations=first)
            for statement in statements:
                conn.execute(statement)
    else:
        import psycopg

        assert maker.dsn is not None
        with psycopg.connect(maker.dsn, autocommit=True) as conn, conn.transaction():
            cur = conn.cursor()

            def run(s: str, p: Any) -> list[Any]:
                cur.execute(s.replace("?", "%s"), p)
                return cur.fetchall() if cur.description else []

            migrate(run, "postgres", "x", migrations=first)
            for statement in statements:
                cur.execute(statement)
    assert [r[0] for r in _sql(maker, "SELECT version FROM subagent_schema_migrations")] == [1]

    store = maker.open()
    versions = _sql(maker, "SELECT version FROM subagent_schema_migrations ORDER BY version")
    assert [r[0] for r in versions] == [m.version for m in MIGRATIONS]
    old = store.get_task("v1-task")
    assert old is not None and old.result == "kept" and old.process_id is None
    assert store.last_seq() == 2
    feed = Feed(seq=2)
    feed.run(store, "v2-task")
    assert store.flush(10.0)
    new = store.get_task("v2-task")
    assert new is not None and new.process_id is not None
    assert [r.task_id for r in store.list_tasks().tasks] == ["v2-task", "v1-task"]
    assert _sql(maker, "SELECT count(*) FROM subagent_processes")[0][0] == 1


def test_a_write_failure_is_retried_counted_and_logged_once(
    maker: StoreMaker, caplog: pytest.LogCaptureFixture
) -> None:
    store = maker.open(flush_interval_seconds=0.05)
    feed = Feed()
    feed.create(store, "before")
    assert store.flush(10.0)
    caplog.set_level(logging.WARNING, logger="subagent_exec.store")
    blocker = _block_writes(maker)
    try:
        feed.create(store, "during", prompt="written while the database refuses")
        feed.start(store, "during")
        wait_until(lambda: store.stats()["store_errors"] >= 2, 30.0, "two failed writes")
        assert not store.flush(0.2)
        # What reads see stays right while writes fail.
        during = store.get_task("during")
        assert during is not None and during.status is SubagentStatus.RUNNING
        assert during.task == "written while the database refuses"
        assert store.stats()["store_pending"] == 2
    finally:
        blocker()
    feed.finish(store, "during")
    assert store.flush(30.0)
    failing = [r for r in caplog.records if "retrying" in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(failing) == 1, [r.getMessage() for r in caplog.records]
    assert len(recovered) == 1
    assert store.location in failing[0].getMessage()
    assert store.stats()["store_pending"] == 0
    store.close()
    reopened = maker.open()
    during = reopened.get_task("during")
    assert during is not None and during.status is SubagentStatus.COMPLETED
    assert [e.kind for e in reopened.read_events(task_id="during")] == [
        "created", "started", "completed"
    ]


def _block_writes(maker: StoreMaker) -> Any:
    """Make the store's writes fail until the returned function is called."""
    if maker.kind == "sqlite":
        # Another process holding the file's write lock: "database is locked".
        conn = sqlite3.connect(maker.tmp_path / "tasks.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")

        def release_sqlite() -> None:
            conn.execute("ROLLBACK")
            conn.close()

        return release_sqlite
    # A constraint no event meets: every insert of the writer fails.
    _sql(maker, "ALTER TABLE subagent_events ADD CONSTRAINT refuse_all CHECK (seq < 0) NOT VALID")
    return lambda: _sql(maker, "ALTER TABLE subagent_events DROP CONSTRAINT refuse_all")


def test_postgres_connections_lost_at_run_time_are_replaced(postgres_dsn: str) -> None:
    from subagent_exec import PostgresStore

    store = PostgresStore(postgres_dsn, flush_interval_seconds=0.05)
    try:
        feed = Feed()
        feed.run(store, "first")
        assert store.flush(10.0)
        import psycopg

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert killed, "the store had connections to terminate"
        feed.run(store, "second")
        assert store.flush(30.0)
        record = store.get_task("second")
        assert record is not None and record.status is SubagentStatus.COMPLETED
    finally:
        store.close()


# -- bad conditions at start ---------------------------------------------------------------


def test_a_corrupt_sqlite_file_fails_at_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"garbage\.db.*file is not a database"):
        SqliteStore(path)


def test_an_unopenable_sqlite_path_fails_at_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no-such-dir/tasks\.db.*unable to open"):
        SqliteStore(tmp_path / "no-such-dir" / "tasks.db")
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(StoreError, match=r"a-directory"):
        SqliteStore(tmp_path / "a-directory")


def test_a_foreign_sqlite_database_with_our_table_names_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE subagent_tasks (something TEXT)")
    with pytest.raises(StoreError, match=r"other\.db.*subagent_tasks"):
        SqliteStore(path)


def test_an_unreachable_postgres_fails_at_start_naming_the_host() -> None:
    from subagent_exec import PostgresStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            PostgresStore(f"postgresql://someone:secret@127.0.0.1:{port}/tasks",
                          connect_timeout_seconds=2)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert f"127.0.0.1:{port}/tasks" in message and "cannot reach" in message
    assert "secret" not in message


def test_store_arguments_are_checked(tmp_path: Path) -> None:
    from subagent_exec import PostgresStore

    with pytest.raises(ValueError, match=r"SqliteStore.path.*MemoryStore"):
        SqliteStore(":memory:")
    with pytest.raises(TypeError, match=r"SqliteStore.path"):
        SqliteStore(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SqliteStore.flush_interval_seconds"):
        SqliteStore(tmp_path / "x.db", flush_interval_seconds=0)
    with pytest.raises(TypeError, match=r"PostgresStore.dsn"):
        PostgresStore(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PostgresStore.dsn"):
        PostgresStore("this is = not a dsn =")
    with pytest.raises(ValueError, match=r"PostgresStore.pool_size"):
        PostgresStore("postgresql://127.0.0.1:1/x", pool_size=1)


# -- kill -9 -------------------------------------------------------------------------------

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from subagent_exec import SqliteStore, TaskEvent
    kind, where = sys.argv[1], sys.argv[2]
    if kind == "sqlite":
        store = SqliteStore(where)
    else:
        from subagent_exec import PostgresStore
        store = PostgresStore(where)
    seq = 0
    def record(kind, task_id, status, **changes):
        global seq
        seq += 1
        event = TaskEvent(seq=seq, kind=kind, task_id=task_id, parent_id=None,
                          trace_id="t", subagent_name="s", status=status,
                          timestamp=time.time(), data={})
        store.record(event, changes)
        print(f"event {seq} {event.timestamp!r}", flush=True)  # emitted: tell the parent
    print("ready", flush=True)
    i = 0
    while True:  # a task every 2 ms, each with four events, until killed
        name = f"task{i}"
        record("created", name, "pending", task="x")
        record("started", name, "running")
        record("ai_message", name, "running")
        record("completed", name, "completed", result=f"r{i}")
        i += 1
        time.sleep(0.002)
    """
)


def test_kill_9_loses_nothing_older_than_the_flush_interval(maker: StoreMaker) -> None:
    where = str(maker.tmp_path / "tasks.db") if maker.kind == "sqlite" else maker.dsn
    assert where is not None
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, maker.kind, where],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    killed_at = time.time()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)

    store = maker.open()
    events = store.read_events(limit=100_000)
    assert len(events) > 200
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # a prefix: no holes
    # Everything emitted more than the flush interval (0.1 s) before the kill is there.
    page = store.list_tasks(limit=10_000)
    stored = {r.task_id: r for r in page.tasks}
    last = {e.task_id: e for e in events}
    # Everything emitted more than the flush interval (0.1 s) before the kill is there.
    emitted = [line.split() for line in child.stdout.read().splitlines()]
    emitted_at = {int(seq): float(at) for _, seq, at in emitted}
    old_enough = {seq for seq, at in emitted_at.items() if at < killed_at - 0.1}
    assert len(old_enough) > 200
    missing = sorted(old_enough - set(seqs))
    assert not missing, f"{len(missing)} events older than 0.1 s at the kill are not stored"
    # Every record agrees with its last stored event.
    assert set(stored) == set(last)
    for task_id, record in stored.items():
        assert record.last_seq == last[task_id].seq
        assert record.status.value == last[task_id].status
    store.close()
