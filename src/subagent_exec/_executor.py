"""``SubagentExecutor``: run one kind of sub-agent, from sync or async code."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager

from ._checks import check_number, check_optional_text
from ._config import INHERIT, SubagentConfig, model_to_build
from ._context import task_in_scope
from ._default import get_default_runtime
from ._models import ModelSpec, check_shareable
from ._result import SubagentResult
from ._run import SubagentRun, merge_callbacks
from ._runtime import SubagentRuntime


class SubagentExecutor:
    """Runs tasks with one :class:`SubagentConfig` on a :class:`SubagentRuntime`.

    ``tools`` are the tools the sub-agent may be given (filtered by the
    config's allow-list and ``disallowed_tools``); ``parent_model`` is used by
    ``model="inherit"``; ``runtime`` defaults to the process-wide runtime
    (looked up at call time, so ``configure()`` takes effect); ``callbacks``
    are tracing handlers for every run (they come before a call's own).
    """

    def __init__(
        self,
        config: SubagentConfig,
        tools: Sequence[Any] = (),
        parent_model: ModelSpec | None = None,
        trace_id: str | None = None,
        runtime: SubagentRuntime | None = None,
        *,
        callbacks: Sequence[Any] = (),
    ) -> None:
        if not isinstance(config, SubagentConfig):
            raise TypeError(f"config must be a SubagentConfig, got {type(config).__name__}")
        if runtime is not None and not isinstance(runtime, SubagentRuntime):
            raise TypeError(f"runtime must be a SubagentRuntime, got {type(runtime).__name__}")
        self.config = config
        self.tools = config.select_tools(list(tools))  # ValueError names unknown tools
        if config.graph_factory is None or config.graph_factory_takes_model:
            model_to_build(config.name, config.model, parent_model)  # ValueError: what to set
        check_shareable(config.model, subagent=config.name)
        if config.model == INHERIT:
            check_shareable(parent_model, subagent=config.name)
        self.parent_model = parent_model
        self.trace_id = check_optional_text("SubagentExecutor", "trace_id", trace_id)
        self._runtime = runtime
        self._callbacks = tuple(callbacks)

    @property
    def runtime(self) -> SubagentRuntime:
        return self._runtime if self._runtime is not None else get_default_runtime()

    def start(
        self,
        task: str,
        *,
        task_id: str | None = None,
        parent_id: str | None = None,
        owner: str | None = None,
        callbacks: Sequence[Any] | BaseCallbackManager = (),
    ) -> SubagentResult:
        """Start the sub-agent in the background and return its result holder.

        The holder itself, not just its id: with a small ``retain_max`` a task
        that ends at once may be evicted before a lookup by id could find it.
        ``parent_id`` defaults to the sub-agent this is called from (if any, on
        the same runtime), so nested calls build the tree by themselves.
        ``callbacks``: tracing handlers for this run (a callback manager keeps
        its tracing parent).
        """
        if not isinstance(task, str):
            raise TypeError(f"task must be a string describing the work, got {task!r}")
        if not task.strip():
            raise ValueError("task must be a non-empty string describing the work")
        runtime = self.runtime
        if parent_id is None:
            parent_id = task_in_scope(runtime)
        run = SubagentRun(
            config=self.config,
            tools=tuple(self.tools),
            parent_model=self.parent_model,
            callbacks=merge_callbacks(self._callbacks, callbacks),
        )
        return runtime.submit(
            subagent_name=self.config.name,
            task=task,
            run=run,
            timeout_seconds=self.config.timeout_seconds,
            task_id=task_id,
            parent_id=parent_id,
            trace_id=self.trace_id,
            owner=owner,
            # Nothing of the caller's context crosses (see _context.py).
            context=contextvars.Context(),
        )

    def execute_async(
        self,
        task: str,
        task_id: str | None = None,
        parent_id: str | None = None,
        *,
        owner: str | None = None,
        callbacks: Sequence[Any] | BaseCallbackManager = (),
    ) -> str:
        """Start the sub-agent in the background and return its task id at once."""
        return self.start(
            task, task_id=task_id, parent_id=parent_id, owner=owner, callbacks=callbacks
        ).task_id

    def execute(self, task: str, timeout: float | None = None) -> SubagentResult:
        """Run the sub-agent and block until it is terminal.

        If the wait is interrupted (KeyboardInterrupt) or ``timeout`` runs out,
        the sub-agent is cancelled, and we wait (bounded) for it to unwind.
        """
        if timeout is not None:
            check_number("execute", "timeout", timeout, positive=True, finite=True)
        holder = self.start(task)
        runtime = self.runtime
        runtime.wait_terminal_blocking(
            holder, timeout=timeout, cancel_reason="the caller was interrupted"
        )
        if not holder.is_terminal:
            runtime.request_cancel(holder.task_id, f"execute() timeout of {timeout}s ran out")
            holder.wait(runtime.cleanup_timeout_seconds + 1.0)
        return holder

    async def aexecute(self, task: str) -> SubagentResult:
        """Run the sub-agent without blocking this loop; await its terminal status.

        A ``CancelledError`` here cancels the sub-agent and propagates once the
        sub-agent has stopped (bounded by the runtime's cleanup timeout).
        """
        return await self.runtime.wait_terminal(self.start(task))
