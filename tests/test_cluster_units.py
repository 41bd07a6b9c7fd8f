"""The parts of a cluster (issue 18) that need no database: its options and
their checks, the strided event numbering, the relay that hands a remote
task's events to a waiter, and refreshing a detached result."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from subagent_exec import (
    ClusterOptions,
    SqliteStore,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
    TaskEvent,
)
from subagent_exec._cluster import STRIDE, cluster_options
from subagent_exec._cluster._feed import Relay
from subagent_exec._cluster._members import Numbering
from subagent_exec._events import EventHub
from subagent_exec._store import TaskRecord


def test_cluster_options_are_checked() -> None:
    assert cluster_options(False) is None and cluster_options(None) is None
    assert cluster_options(True) == ClusterOptions()
    assert ClusterOptions().heartbeat_seconds == 5.0
    assert ClusterOptions().dead_after_seconds == 15.0
    with pytest.raises(TypeError, match=r"SubagentRuntime\.cluster must be a bool or a Cluster"):
        cluster_options("yes")
    with pytest.raises(TypeError, match=r"ClusterOptions\.heartbeat_seconds"):
        ClusterOptions(heartbeat_seconds="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ClusterOptions\.poll_seconds"):
        ClusterOptions(poll_seconds=0)
    with pytest.raises(ValueError, match="dead_after_seconds must be greater than heartbeat"):
        ClusterOptions(heartbeat_seconds=5, dead_after_seconds=5)


def test_a_cluster_needs_a_postgres_store_and_lets_go_of_the_one_it_opened(
    tmp_path: Path,
) -> None:
    with pytest.raises(TypeError, match=r"SubagentRuntime\.cluster"):
        SubagentRuntime(cluster="on")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cluster needs a PostgresStore"):
        SubagentRuntime(store=str(tmp_path / "x.db"), cluster=True)
    # The file the runtime opened was closed: another store opens it at once.
    store = SqliteStore(tmp_path / "x.db")
    assert store.last_seq() == 0
    store.close()


class _Holder:
    def __init__(self, task_id: str) -> None:
        self.task_id, self.parent_id, self.trace_id = task_id, None, "t"
        self.subagent_name, self.status, self.owner = "x", SubagentStatus.RUNNING, None


def test_a_strided_hub_numbers_in_its_slot_and_moves_past_others() -> None:
    numbering = Numbering(slot=3, first_seq=3 + 2 * STRIDE)
    hub = EventHub(first_seq=numbering.first_seq, step=STRIDE)
    first = hub.publish("created", _Holder("a"), {})
    second = hub.publish("started", _Holder("a"), {})
    assert (first.seq, second.seq) == (3 + 2 * STRIDE, 3 + 3 * STRIDE)
    assert numbering.is_mine(first.seq) and not numbering.is_mine(first.seq + 1)
    assert not numbering.is_mine(3 + STRIDE)  # a former holder of the slot, before us
    # Another process's event far ahead: delivered to subscribers and watchers,
    # and this hub's next seq follows it, in its own slot.
    got: list[TaskEvent] = []
    arrived = threading.Event()
    hub.subscribe(lambda e: (got.append(e), arrived.set()))
    watched: list[int] = []
    hub.watch("b", lambda e: watched.append(e.seq))
    foreign = TaskEvent(seq=10 * STRIDE + 7, kind="created", task_id="b", parent_id=None,
                        trace_id="t", subagent_name="x", status="pending", timestamp=0.0)
    hub.deliver(foreign)
    assert arrived.wait(5) and got == [foreign] and watched == [foreign.seq]
    third = hub.publish("ai_message", _Holder("a"), {})
    assert third.seq == 11 * STRIDE + 3 and numbering.is_mine(third.seq)
    taken = hub.take_seq(above=20 * STRIDE + 500)
    assert taken == 21 * STRIDE + 3
    hub.close(5)


def _event(seq: int, kind: str) -> TaskEvent:
    return TaskEvent(seq=seq, kind=kind, task_id="r", parent_id=None, trace_id="t",
                     subagent_name="x", status=kind if kind != "started" else "running",
                     timestamp=0.0)


def test_the_relay_holds_events_until_the_history_and_hands_each_once() -> None:
    handed: list[int] = []
    refreshed: list[Any] = []
    relay = Relay(lambda e: handed.append(e.seq), refreshed.append)
    relay(_event(2, "started"))  # the feed, while the history is being read
    relay(_event(3, "ai_message"))
    holder = SubagentResult(task_id="r", subagent_name="x", task="t", trace_id="t")
    relay.start(holder, [_event(1, "created"), _event(2, "started")])
    assert handed == [3]  # 2 was in the history
    relay(_event(3, "ai_message"))  # twice from the feed: once to the waiter
    relay(_event(4, "cancelled"))
    assert handed == [3, 4] and refreshed == [holder]  # refreshed before the end


def test_a_detached_result_takes_a_newer_record_of_its_own_task_only() -> None:
    record = {"task_id": "r", "status": "running", "created_at": 1.0, "last_seq": 2,
              "created_seq": 1, "subagent_name": "x", "trace_id": "t"}
    holder = SubagentResult.from_record(TaskRecord.from_record(record))
    assert holder.status is SubagentStatus.RUNNING and not holder.is_terminal
    holder.refresh_from_record(TaskRecord.from_record(
        {**record, "status": "cancelled", "cancel_reason": "stop", "completed_at": 2.0}))
    assert holder.status is SubagentStatus.CANCELLED and holder.wait(0)
    assert holder.cancel_reason == "stop" and holder.stored
    with pytest.raises(ValueError, match="record must be of task 'r'"):
        holder.refresh_from_record(TaskRecord.from_record({**record, "task_id": "other"}))
