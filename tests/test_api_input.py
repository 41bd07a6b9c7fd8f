"""Bad input through the Python API: a clear TypeError / ValueError naming the
argument, at once, and nothing running is affected (issue 10, defect 9, and
the hypothesis fuzzing of every public function's arguments)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import subagent_exec
from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentResult,
    SubagentRuntime,
    SubagentStatus,
    make_task_tool,
)

from .helpers import Probe, executor, reply_graph, slow_graph

#: Values of every kind: what a confused caller (or a fuzzer) passes.
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
    st.just(math.inf),
)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SubagentRuntime, SubagentResult, Probe]]:
    """One runtime for the whole module, with a bystander task that must keep
    running through every bad call and complete at the end."""
    runtime = SubagentRuntime(max_workers=4, name="input-fuzz", cleanup_timeout_seconds=2.0)
    probe = Probe()
    bystander = executor(runtime, slow_graph(probe, seconds=600.0), name="bystander").start("keep")
    assert probe.started.wait(10)
    yield runtime, bystander, probe
    assert bystander.status is SubagentStatus.RUNNING and not bystander.cancel_event.is_set()
    runtime.shutdown(cancel=True, wait=True, timeout=30)


def refused(call: Callable[[], Any], argument: str) -> None:
    """``call`` raises TypeError or ValueError, and the message names ``argument``."""
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert argument in str(info.value), f"{info.value!r} does not name {argument!r}"


# -- the cases found by the adversarial run --------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument", "error"),
    [
        (lambda rt: rt.request_cancel([]), "task_id", TypeError),
        (lambda rt: rt.request_cancel("x", reason=3), "reason", TypeError),
        (lambda rt: rt.get({}), "task_id", TypeError),
        (lambda rt: rt.cleanup(7), "task_id", TypeError),
        (lambda rt: rt.list_tasks(status=5), "status", TypeError),
        (lambda rt: rt.list_tasks(status=[5]), "status", TypeError),
        (lambda rt: rt.list_tasks(status="finished"), "status", ValueError),
        (lambda rt: rt.list_tasks(parent_id=[]), "parent_id", TypeError),
        (lambda rt: rt.subscribe(None), "callback", TypeError),
        (lambda rt: rt.subscribe(42), "callback", TypeError),
        (lambda rt: rt.wait_terminal_blocking(3.5), "task", TypeError),
        (lambda rt: rt.wait_terminal_blocking("x", timeout=-1), "timeout", ValueError),
        (lambda rt: executor(rt, reply_graph()).start("x", parent_id=[]), "parent_id", TypeError),
        (lambda rt: executor(rt, reply_graph()).start("x", owner=7), "owner", TypeError),
        (lambda rt: executor(rt, reply_graph()).start("x", task_id=""), "task_id", ValueError),
        (
            lambda rt: executor(rt, reply_graph()).execute("x", timeout=math.inf),
            "timeout",
            ValueError,
        ),
        (
            lambda rt: SubagentRuntime(cancel_grace_seconds=math.inf),
            "cancel_grace_seconds",
            ValueError,
        ),
        (
            lambda rt: SubagentRuntime(cleanup_timeout_seconds=math.inf),
            "cleanup_timeout_seconds",
            ValueError,
        ),
        (
            lambda rt: SubagentConfig(name="w", model="x:y", timeout_seconds=math.inf),
            "timeout_seconds",
            ValueError,
        ),
        (lambda rt: SubagentRuntime(name=""), "name", ValueError),
        (lambda rt: subagent_exec.request_cancel_background_task([]), "task_id", TypeError),
        (lambda rt: subagent_exec.get_background_task_result({}), "task_id", TypeError),
        (lambda rt: subagent_exec.list_background_tasks(status=5), "status", TypeError),
        (lambda rt: subagent_exec.subscribe(None), "callback", TypeError),
    ],
)
def test_bad_input_fails_at_once_naming_the_argument(
    shared: tuple[SubagentRuntime, SubagentResult, Probe],
    call: Callable[[SubagentRuntime], Any],
    argument: str,
    error: type[Exception],
) -> None:
    runtime, bystander, _ = shared
    with pytest.raises(error) as info:
        call(runtime)
    assert argument in str(info.value)
    assert bystander.status is SubagentStatus.RUNNING


def test_nothing_bad_is_registered_or_started(
    shared: tuple[SubagentRuntime, SubagentResult, Probe],
) -> None:
    runtime, _, _ = shared
    before = runtime.stats()["submitted_total"]
    for bad in ({"owner": 7}, {"parent_id": []}, {"task_id": 3}):
        with pytest.raises(TypeError):
            executor(runtime, reply_graph()).start("x", **bad)
    assert runtime.stats()["submitted_total"] == before


# -- fuzzing every public function --------------------------------------------------------

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(task_id=ANYTHING, reason=ANYTHING)
def test_fuzz_request_cancel(
    shared: tuple[SubagentRuntime, SubagentResult, Probe], task_id: Any, reason: Any
) -> None:
    runtime, bystander, _ = shared
    if task_id == bystander.task_id:
        return
    try:
        assert runtime.request_cancel(task_id, reason) is False  # never a real task
    except TypeError as exc:
        assert "task_id" in str(exc) or "reason" in str(exc)


@FUZZ
@given(task_id=ANYTHING)
def test_fuzz_lookups(shared: tuple[SubagentRuntime, SubagentResult, Probe], task_id: Any) -> None:
    runtime, _, _ = shared
    for lookup, empty in ((runtime.get, None), (runtime.cleanup, False)):
        try:
            assert lookup(task_id) == empty
        except TypeError as exc:
            assert "task_id" in str(exc)


@FUZZ
@given(parent_id=ANYTHING, status=ANYTHING)
def test_fuzz_list_tasks(
    shared: tuple[SubagentRuntime, SubagentResult, Probe], parent_id: Any, status: Any
) -> None:
    runtime, _, _ = shared
    try:
        assert isinstance(runtime.list_tasks(parent_id=parent_id, status=status), list)
    except (TypeError, ValueError) as exc:
        assert "parent_id" in str(exc) or "status" in str(exc)


@FUZZ
@given(
    task=ANYTHING,
    task_id=ANYTHING,
    parent_id=ANYTHING,
    owner=ANYTHING,
)
def test_fuzz_start(
    shared: tuple[SubagentRuntime, SubagentResult, Probe],
    task: Any,
    task_id: Any,
    parent_id: Any,
    owner: Any,
) -> None:
    runtime, bystander, _ = shared
    if parent_id == bystander.task_id or task_id == bystander.task_id:
        return
    ex = executor(runtime, reply_graph("fuzzed"), name="fuzzed")
    try:
        holder = ex.start(task, task_id=task_id, parent_id=parent_id, owner=owner)
    except (TypeError, ValueError) as exc:
        assert any(name in str(exc) for name in ("task", "task_id", "parent_id", "owner"))
        return
    assert holder.wait(10) and holder.status is SubagentStatus.COMPLETED
    runtime.cleanup(holder.task_id)


@FUZZ
@given(options=st.dictionaries(
    st.sampled_from(
        [
            "max_workers",
            "max_pending",
            "max_depth",
            "retain_max",
            "retain_ttl_seconds",
            "cancel_grace_seconds",
            "cleanup_timeout_seconds",
            "name",
        ]
    ),
    ANYTHING,
    max_size=3,
))
def test_fuzz_runtime_options(options: dict[str, Any]) -> None:
    try:
        runtime = SubagentRuntime(**options)
    except (TypeError, ValueError) as exc:
        assert any(name in str(exc) for name in options), exc
        return
    runtime.shutdown(wait=True, timeout=10)


@FUZZ
@given(fields=st.dictionaries(
    st.sampled_from(["name", "description", "model", "tools", "max_turns", "timeout_seconds"]),
    ANYTHING,
    max_size=3,
))
def test_fuzz_config_fields(fields: dict[str, Any]) -> None:
    options = {"name": "w", "model": "x:y", **fields}
    try:
        SubagentConfig(**options)
    except (TypeError, ValueError) as exc:
        assert any(name in str(exc) for name in fields), exc


@FUZZ
@given(subagents=ANYTHING, name=ANYTHING, on_event=ANYTHING)
def test_fuzz_make_task_tool(subagents: Any, name: Any, on_event: Any) -> None:
    try:
        make_task_tool(subagents, name=name, on_event=on_event)
    except (TypeError, ValueError) as exc:
        assert any(arg in str(exc) for arg in ("subagents", "name", "on_event")), exc


@FUZZ
@given(trace_id=ANYTHING, timeout=ANYTHING)
def test_fuzz_executor(
    shared: tuple[SubagentRuntime, SubagentResult, Probe], trace_id: Any, timeout: Any
) -> None:
    runtime, _, _ = shared
    config = SubagentConfig(name="fuzzed", graph_factory=reply_graph("ok"))
    try:
        ex = SubagentExecutor(config, trace_id=trace_id, runtime=runtime)
        holder = ex.execute("go", timeout=timeout)
    except (TypeError, ValueError) as exc:
        assert "trace_id" in str(exc) or "timeout" in str(exc), exc
        return
    assert holder.is_terminal
    runtime.cleanup(holder.task_id)
