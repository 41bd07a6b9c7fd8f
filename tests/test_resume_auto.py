"""SubagentConfig(max_resumes=...): a run that fails with a transient error
goes on from its last checkpoint, in the same task, a ``resumed`` event per
attempt; other errors, stops and exhausted attempts end it as before."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from langchain_core.tools import StructuredTool

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentStatus
from subagent_exec.testing import ScriptedChatModel, tool_call


class APIConnectionError(Exception):
    """Named like the provider clients' connection error (matched by name)."""


class Flaky:
    """Calls ``step`` twice, then answers; the answer's model call fails
    ``failures`` times first with ``error``."""

    def __init__(self, failures: int, error: type[Exception] = APIConnectionError) -> None:
        self.failures, self.error = failures, error
        self.calls: Counter[str] = Counter()
        self.model = ScriptedChatModel(
            script={"flaky job": [tool_call("step", {"n": 1}), tool_call("step", {"n": 2}),
                                  self._answer]}
        )

    def _answer(self, messages: list[Any]) -> str:
        self.calls["answer"] += 1
        if self.calls["answer"] <= self.failures:
            raise self.error("connection reset by peer")
        return "all steps done"

    def executor(self, runtime: Any, **options: Any) -> SubagentExecutor:
        async def step(n: int) -> str:
            """One step."""
            self.calls[f"step{n}"] += 1
            return f"step {n} done"

        tool = StructuredTool.from_function(coroutine=step, name="step")
        config = SubagentConfig(name="flaky", model=self.model, **options)
        return SubagentExecutor(config, tools=[tool], runtime=runtime)


def _events(runtime: Any, task_id: str) -> list[Any]:
    return runtime.store.read_events(task_id=task_id)


def test_transient_error_goes_on_from_the_last_checkpoint(make_runtime: Any) -> None:
    runtime = make_runtime()
    flaky = Flaky(failures=2)
    done = flaky.executor(runtime, max_resumes=3).execute("flaky job")
    assert done.status is SubagentStatus.COMPLETED, done.error
    assert done.result == "all steps done"
    # The steps before the failure were not done again.
    assert flaky.calls == {"step1": 1, "step2": 1, "answer": 3}
    assert done.resumes == 2
    resumed = [e for e in _events(runtime, done.task_id) if e.kind == "resumed"]
    assert [e.data["attempt"] for e in resumed] == [1, 2]
    assert "APIConnectionError" in resumed[0].data["error"]


def test_without_max_resumes_or_when_exhausted_it_fails(make_runtime: Any) -> None:
    runtime = make_runtime()
    flaky = Flaky(failures=1)
    failed = flaky.executor(runtime).execute("flaky job")
    assert failed.status is SubagentStatus.FAILED and "APIConnectionError" in (failed.error or "")
    assert not [e for e in _events(runtime, failed.task_id) if e.kind == "resumed"]

    worse = Flaky(failures=5)
    exhausted = worse.executor(runtime, max_resumes=2).execute("flaky job")
    assert exhausted.status is SubagentStatus.FAILED
    assert worse.calls["answer"] == 3 and exhausted.resumes == 2


def test_only_transient_errors_are_retried(make_runtime: Any) -> None:
    runtime = make_runtime()
    flaky = Flaky(failures=1, error=ValueError)
    failed = flaky.executor(runtime, max_resumes=3).execute("flaky job")
    assert failed.status is SubagentStatus.FAILED and flaky.calls["answer"] == 1
    chosen = Flaky(failures=1, error=ValueError)
    done = chosen.executor(runtime, max_resumes=3, resume_on=(ValueError,)).execute("flaky job")
    assert done.status is SubagentStatus.COMPLETED and done.resumes == 1
    assert chosen.calls == {"step1": 1, "step2": 1, "answer": 2}


def test_no_checkpoints_no_automatic_resume(make_runtime: Any) -> None:
    runtime = make_runtime(checkpointer=False)
    flaky = Flaky(failures=1)
    failed = flaky.executor(runtime, max_resumes=3).execute("flaky job")
    assert failed.status is SubagentStatus.FAILED and failed.resumes == 0


def test_max_resumes_and_resume_on_are_checked() -> None:
    with pytest.raises(ValueError, match=r"SubagentConfig\.max_resumes"):
        SubagentConfig(name="x", model="inherit", max_resumes=-1)
    with pytest.raises(TypeError, match=r"SubagentConfig\.max_resumes"):
        SubagentConfig(name="x", model="inherit", max_resumes=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"SubagentConfig\.resume_on"):
        SubagentConfig(name="x", model="inherit", resume_on=(42,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"SubagentConfig\.resume_on"):
        SubagentConfig(name="x", model="inherit", resume_on=())
