"""``SubagentExecutor``: run one kind of sub-agent, from sync or async code."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager

from ._config import INHERIT, SubagentConfig
from ._context import current_runtime, current_task_id
from ._default import get_default_runtime
from ._models import ModelSpec, check_shareable
from ._result import SubagentResult
from ._run import run_subagent
from ._runtime import SubagentRuntime


class SubagentExecutor:
    """Runs tasks with one :class:`SubagentConfig` on a :class:`SubagentRuntime`.

    ``tools`` are the tools the sub-agent may be given (filtered by the
    config's allow-list and ``disallowed_tools``); ``parent_model`` is used by
    ``model="inherit"``; ``runtime`` defaults to the process-wide runtime
    (looked up at call time, so ``configure()`` takes effect).
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
        self.config = config
        self.tools = config.select_tools(list(tools))  # ValueError names unknown tools
        if config.graph_factory is None or config.graph_factory_takes_model:
            if config.model is None:
                raise ValueError(
                    f"SubagentConfig of {config.name!r} has neither model nor graph_factory; "
                    "set model=... (or 'inherit' with parent_model=...) or graph_factory=..."
                )
            if config.model == INHERIT and (parent_model is None or parent_model == INHERIT):
                raise ValueError(
                    f"SubagentConfig.model of {config.name!r} is 'inherit' but no parent_model "
                    "was given; pass parent_model=... to the executor"
                )
        check_shareable(config.model, subagent=config.name)
        if config.model == INHERIT:
            check_shareable(parent_model, subagent=config.name)
        self.parent_model = parent_model
        self.trace_id = trace_id
        self._runtime = runtime
        self._callbacks = tuple(callbacks)

    @property
    def runtime(self) -> SubagentRuntime:
        return self._runtime if self._runtime is not None else get_default_runtime()

    def execute_async(
        self,
        task: str,
        task_id: str | None = None,
        parent_id: str | None = None,
        *,
        owner: str | None = None,
        callbacks: Sequence[Any] | BaseCallbackManager = (),
    ) -> str:
        """Start the sub-agent in the background and return its task id at once.

        ``parent_id`` defaults to the sub-agent this is called from (if any, on
        the same runtime), so nested calls build the tree by themselves.
        """
        return self._start(
            self.runtime, task, task_id, parent_id, owner=owner, callbacks=callbacks
        ).task_id

    def _start(
        self,
        runtime: SubagentRuntime,
        task: str,
        task_id: str | None = None,
        parent_id: str | None = None,
        *,
        owner: str | None = None,
        callbacks: Sequence[Any] | BaseCallbackManager = (),
    ) -> SubagentResult:
        # Returns the holder itself: with a small retain_max a task that ends
        # at once may be evicted before a lookup by id could find it.
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty string describing the work")
        if parent_id is None and current_runtime.get() is runtime:
            parent_id = current_task_id.get()
        run = functools.partial(
            run_subagent,
            config=self.config,
            tools=self.tools,
            parent_model=self.parent_model,
            callbacks=_merge_callbacks(self._callbacks, callbacks),
        )
        holder = runtime.submit(
            subagent_name=self.config.name,
            task=task,
            run=run,
            timeout_seconds=self.config.timeout_seconds,
            task_id=task_id,
            parent_id=parent_id,
            trace_id=self.trace_id,
            owner=owner,
            context=_carried_context(),
        )
        return holder

    def execute(self, task: str, timeout: float | None = None) -> SubagentResult:
        """Run the sub-agent and block until it is terminal.

        If the wait is interrupted (KeyboardInterrupt) or ``timeout`` runs out,
        the sub-agent is cancelled, and we wait (bounded) for it to unwind.
        """
        runtime = self.runtime
        holder = self._start(runtime, task)
        task_id = holder.task_id
        try:
            finished = holder.wait(timeout)
        except BaseException:
            runtime.request_cancel(task_id, "the caller was interrupted")
            holder.wait(runtime.cleanup_timeout_seconds + 1.0)
            raise
        if not finished:
            runtime.request_cancel(task_id, f"execute() timeout of {timeout}s ran out")
            holder.wait(runtime.cleanup_timeout_seconds + 1.0)
        return holder

    async def aexecute(self, task: str) -> SubagentResult:
        """Run the sub-agent without blocking this loop; await its terminal status.

        A ``CancelledError`` here cancels the sub-agent and propagates once the
        sub-agent has stopped (bounded by the runtime's cleanup timeout).
        """
        runtime = self.runtime
        return await runtime.wait_terminal(self._start(runtime, task))


def _merge_callbacks(
    own: Sequence[Any], extra: Sequence[Any] | BaseCallbackManager
) -> Sequence[Any] | BaseCallbackManager:
    """The executor's handlers plus the call's; a manager stays a manager so the
    tracing parent it carries (``parent_run_id``) survives."""
    if isinstance(extra, BaseCallbackManager):
        manager = extra.copy()
        for handler in own:
            manager.add_handler(handler, inherit=True)
        return manager
    return (*own, *extra)


def _carried_context() -> contextvars.Context:
    """What crosses into the sub-agent's loop: an empty context. Tracing parents
    are passed explicitly as callbacks by the task tool (see _context.py)."""
    return contextvars.Context()

