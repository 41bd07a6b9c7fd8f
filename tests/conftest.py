"""Shared fixtures for the engine tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from subagent_exec import Backend, SubagentRuntime


def _runtime_factory(*, clean: bool) -> Iterator[Callable[..., SubagentRuntime]]:
    """Build runtimes with any options; every one is shut down (wait=True)
    after the test, and with ``clean`` must have shut down cleanly."""
    made: list[SubagentRuntime] = []

    def make(**options: Any) -> SubagentRuntime:
        options.setdefault("cleanup_timeout_seconds", 2.0)
        runtime = SubagentRuntime(**options)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        done = runtime.shutdown(cancel=True, wait=True, timeout=30.0)
        assert done or not clean, f"runtime {runtime.name} did not shut down cleanly"


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., SubagentRuntime]]:
    """Build runtimes with any options; every one must shut down cleanly after the test."""
    yield from _runtime_factory(clean=True)


@pytest.fixture
def runtime(
    request: pytest.FixtureRequest, make_runtime: Callable[..., SubagentRuntime]
) -> SubagentRuntime:
    """A runtime with 4 workers, shut down with ``wait=True`` after the test.

    On the thread backend, unless the test is marked ``@both_backends``
    (tests/helpers.py): then once per backend.
    """
    backend = getattr(request, "param", "thread")
    if backend == "ray":
        from subagent_exec import RayBackend

        return make_runtime(
            max_workers=4, backend=RayBackend(pool=request.getfixturevalue("ray_pool"))
        )
    return make_runtime(max_workers=4)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event for blocking sync code; always released at teardown so no
    thread outlives the test by more than a moment."""
    event = threading.Event()
    yield event
    event.set()


# -- backends -----------------------------------------------------------------------------
# A local Ray is started once per test session, and only if a test asks for it
# (the ``ray_pool`` fixture): ~2-3 s and ~0.8 GiB. Its two actors import the
# engine once, so a Ray test pays no start-up of its own.


@pytest.fixture(scope="session")
def ray_pool() -> Iterator[Any]:
    """A shared, warmed-up RayWorkerPool on a local Ray (2 CPUs, no dashboard).

    Ray keeps its session files (sockets, logs) in a temp dir of its own,
    removed afterwards: by default it would leave ``/tmp/ray``, a directory
    that shadows the ``ray`` package (as a namespace package) for any script
    run from ``/tmp``. The path is short on purpose: Ray's unix socket paths
    must fit in 107 bytes.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # or Ray writes a token file
    import ray

    from subagent_exec import RayWorkerPool

    started = not ray.is_initialized()
    ray_dir = tempfile.mkdtemp(prefix="sx-ray-")
    if started:
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir
        )
    pool = RayWorkerPool(actors=2)
    pool.ready(timeout=120.0)
    yield pool
    pool.kill()
    if started:
        ray.shutdown()
    shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture(params=["thread", "ray"])
def backend(request: pytest.FixtureRequest) -> Callable[[], str | Backend]:
    """Parametrises a test over both backends. Returns a factory: every runtime
    needs its own backend object (the Ray ones share the session's actors)."""
    if request.param == "thread":
        return lambda: "thread"
    from subagent_exec import RayBackend

    pool = request.getfixturevalue("ray_pool")
    return lambda: RayBackend(pool=pool)


@pytest.fixture
def make_backend_runtime(
    make_runtime: Callable[..., SubagentRuntime], backend: Callable[[], str | Backend]
) -> Callable[..., SubagentRuntime]:
    """Like ``make_runtime``, on the backend the test is parametrised with."""
    return lambda **options: make_runtime(backend=backend(), **options)


# -- PostgreSQL ---------------------------------------------------------------------------
# Started once per session, and only if a test asks for it (tests/postgres_support.py).


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server of this test session, on 127.0.0.1 (installed if missing)."""
    from .postgres_support import start_postgres

    yield from start_postgres()


@pytest.fixture
def postgres_dsn(postgres_server: Any) -> Iterator[str]:
    """A DSN of a fresh, empty database on the session's server (dropped after)."""
    from .postgres_support import create_database, drop_database

    name = create_database(postgres_server)
    yield postgres_server.dsn(name)
    drop_database(postgres_server, name)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a durable store lives: a SQLite path or a PostgreSQL DSN (the
    session's server, tests/postgres_support.py)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    return str(tmp_path / "tasks.db")


@pytest.fixture
def runtimes() -> Iterator[Callable[..., SubagentRuntime]]:
    """Like ``make_runtime``, for tests that kill processes or break stores: a
    runtime that cannot shut down cleanly there does not fail the test."""
    yield from _runtime_factory(clean=False)
