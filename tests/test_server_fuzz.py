"""HTTP fuzzing from the OpenAPI schema (schemathesis) against a real uvicorn on
127.0.0.1: for every generated request, valid and invalid, no 5xx, and every
answer conforms to the schema (documented status, content type and body).

Bounded and reproducible: a fixed number of examples, derandomized (the same
requests on every run), no example database. What a schema cannot express
(surrogates, nesting depth, header values, cross-site requests, Host) is in
tests/test_server_hardening.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from subagent_exec import SubagentRuntime
from subagent_exec.server import create_app, demo_run_starter

from .server_support import LiveServer, wait_for

# schemathesis itself draws from `random` inside its strategies (its business).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

#: Examples per generation mode (~25 ms each on 2 busy cores).
EXAMPLES = 300
#: The whole fuzzing run must stay well under a minute.
TIME_BOUND_SECONDS = 60.0
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[LiveServer, SubagentRuntime]]:
    # The stock app as `serve` builds it (Host check included), with a fast
    # demo so the runs schemathesis starts end quickly and the runtime never
    # fills up (a full runtime's 503 is documented, but is a 5xx all the same).
    runtime = SubagentRuntime(
        max_workers=4, max_depth=3, retain_max=500, cleanup_timeout_seconds=2.0, name="fuzz"
    )
    app = create_app(
        runtime, start_run=demo_run_starter(0.05), allowed_hosts=["127.0.0.1", "localhost"]
    )
    server = LiveServer(app).start()
    yield server, runtime
    server.stop()
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def load_schema(server: LiveServer) -> Any:
    document = server.client().get("/openapi.json")
    assert document.status_code == 200, document.text
    schema = schemathesis.openapi.from_dict(document.json())
    # GET /events never ends by itself (it follows the server's events until
    # the client leaves): its answers are covered by the hand-written tests.
    return schema.exclude(path="/events")


def real_task_ids(server: LiveServer, count: int) -> list[str]:
    """Start a few runs, so path parameters can also name tasks that exist
    (some still running, some ended, some children)."""
    client = server.client()
    roots = [client.post("/runs").json()["task_id"] for _ in range(count)]
    client.post(f"/tasks/{roots[0]}/stop")
    wait_for(lambda: len(client.get("/tasks").json()["tasks"]) > count, "children appear")
    return [t["task_id"] for t in client.get("/tasks").json()["tasks"]]


@pytest.mark.timeout(TIME_BOUND_SECONDS + 60)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_from_the_openapi_schema_finds_no_5xx_and_no_answer_off_schema(
    fuzzed: tuple[LiveServer, SubagentRuntime], mode: GenerationMode
) -> None:
    server, runtime = fuzzed
    schema = load_schema(server)
    ids = real_task_ids(server, 3)
    checks = [*CONFORMANCE, negative_data_rejection] if mode is GenerationMode.NEGATIVE else (
        CONFORMANCE
    )
    operations: dict[str, int] = {}
    statuses: dict[int, int] = {}
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(mode), real_id=st.sampled_from([None, *ids]))
    def one_request(case: Any, real_id: str | None) -> None:
        if real_id is not None and mode is GenerationMode.POSITIVE and case.path_parameters:
            # A run's task id is also its thread's id (demo runs are their own thread).
            key = "thread_id" if "thread_id" in case.path_parameters else "task_id"
            case.path_parameters[key] = real_id
        label = f"{case.method} {case.path}"
        operations[label] = operations.get(label, 0) + 1
        response = case.call(base_url=server.base_url, timeout=15)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks)

    one_request()
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BOUND_SECONDS, f"fuzzing took {elapsed:.1f} s"
    # Every operation of the schema was exercised (GET / takes no input, so
    # has no invalid form), and requests were both accepted and refused.
    expected = {
        "GET /tasks", "GET /tasks/{task_id}", "POST /tasks/{task_id}/stop",
        "GET /tasks/{task_id}/events", "POST /runs", "POST /threads/{thread_id}/stop",
        "POST /tasks/{task_id}/resume",
    }
    if mode is GenerationMode.POSITIVE:
        expected.add("GET /")
        assert {200, 202, 404} <= set(statuses), statuses
    else:
        # Mostly refused; an "invalid" request may still be fine (schemathesis
        # may add an unknown query parameter, which is ignored).
        refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
        assert refused > 0.8 * sum(statuses.values()), statuses
    assert set(operations) == expected, operations
    print(f"{mode.value}: {sum(operations.values())} requests in {elapsed:.1f} s; "
          f"statuses {sorted(statuses.items())}")
    # The server is still whole: it lists, and its runtime still takes work.
    listing = server.client().get("/tasks")
    assert listing.status_code == 200
    assert runtime.stats()["pending"] >= 0
