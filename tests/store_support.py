"""Helpers for the store tests: events as the runtime would emit them, and
stores of each kind opened on one location (so a test can reopen it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subagent_exec import MemoryStore, SqliteStore, TaskEvent, TaskStore

KINDS = ["memory", "sqlite", "postgres"]
DURABLE = ["sqlite", "postgres"]


@dataclass
class Feed:
    """Numbers events like a runtime: one seq counter for every task."""

    seq: int = 0
    owners: dict[str, str | None] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)

    def event(self, kind: str, task_id: str, status: str, **data: Any) -> TaskEvent:
        self.seq += 1
        return TaskEvent(
            seq=self.seq,
            kind=kind,
            task_id=task_id,
            parent_id=self.parents.get(task_id),
            trace_id=f"trace-{task_id}",
            subagent_name="researcher",
            status=status,
            timestamp=time.time(),
            data=data,
            owner=self.owners.get(task_id),
        )

    def create(
        self, store: TaskStore, task_id: str, *, parent: str | None = None,
        owner: str | None = None, prompt: str = "look it up", **changes: Any,
    ) -> None:
        self.parents[task_id], self.owners[task_id] = parent, owner
        event = self.event("created", task_id, "pending", task=prompt)
        store.record(event, {"task": prompt, "depth": 1 if parent is None else 2, **changes})

    def start(self, store: TaskStore, task_id: str) -> None:
        store.record(self.event("started", task_id, "running"), {})

    def message(self, store: TaskStore, task_id: str, text: str) -> None:
        message = {"text": text, "id": f"m{self.seq + 1}"}
        store.record(self.event("ai_message", task_id, "running", message=message), {})

    def finish(
        self, store: TaskStore, task_id: str, status: str = "completed", **changes: Any
    ) -> None:
        changes.setdefault("result", f"answer of {task_id}" if status == "completed" else None)
        store.record(self.event(status, task_id, status), changes)

    def run(self, store: TaskStore, task_id: str, **create: Any) -> None:
        self.create(store, task_id, **create)
        self.start(store, task_id)
        self.message(store, task_id, f"thinking about {task_id}")
        self.finish(store, task_id)


@dataclass
class StoreMaker:
    """Opens stores of one kind on one location; closes them all at the end."""

    kind: str
    tmp_path: Path
    dsn: str | None = None
    made: list[TaskStore] = field(default_factory=list)
    _memory: MemoryStore | None = None

    def open(self, **options: Any) -> TaskStore:
        store: TaskStore
        if self.kind == "memory":
            store = MemoryStore()
        elif self.kind == "sqlite":
            store = SqliteStore(self.tmp_path / "tasks.db", **options)
        else:
            from subagent_exec import PostgresStore

            assert self.dsn is not None
            store = PostgresStore(self.dsn, **options)
        self.made.append(store)
        return store

    def close_all(self) -> None:
        for store in self.made:
            store.close(timeout=10.0)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)
