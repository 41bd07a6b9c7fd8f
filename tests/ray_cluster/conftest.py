"""The multi-node Ray suite's fixtures: a real two-node Ray cluster on 127.0.0.1.

Why these tests run last, in this same process: a driver process can be
connected to one Ray cluster at a time, and the rest of the suite uses an
in-process local Ray (``ray_pool`` in tests/conftest.py). The collection hook
below moves every test of this directory after all the others; the cluster
fixture then shuts that local Ray down (its pool's actors die with it; the
pool sees Ray go and refuses work instead of starting actors through the new
connection) and connects this process to the cluster as its driver. A
subprocess driver would keep both, but each test would then look at its
tasks (holders, events, waiting) across a process boundary and pay its own
interpreter, import and Ray start-up; the point of these tests is the
driver's view of tasks while nodes come and go.

The cluster is started only when a test of this directory runs: a head node
and one worker node, one CPU each, no dashboard, ``RAY_AUTH_MODE=disabled``,
free ports, Ray's session files in a temp dir of pytest's (or a short one of
its own, removed afterwards: Ray's unix socket paths must stay under 107
bytes). Nodes are stopped, or killed, by process id (never ``ray stop``); a
watchdog process stops them if this process dies first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run the multi-node tests after every other test (see the module docstring)."""
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if mine:
        others = [item for item in items if item not in mine]
        items[:] = others + mine


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running two-node cluster, this process connected to it as the driver."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from subagent_exec._backends.ray.local_cluster import LocalRayCluster

    if ray.is_initialized():
        ray.shutdown()  # the session's local Ray: one cluster per driver process
    cluster = LocalRayCluster(workers=1, temp_dir=tmp_path_factory.mktemp("rc"))
    try:
        cluster.start()
        cluster.connect()
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


@pytest.fixture
def worker_node(ray_cluster: Any) -> Any:
    """A live worker node (a new one if an earlier test lost the last)."""
    alive = [node for node in ray_cluster.workers if node.running]
    return alive[0] if alive else ray_cluster.add_worker()
