"""``SubagentExecutor``: run one kind of sub-agent, from sync or async code."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager

from ._budget import Budget
from ._budget_notes import NOTES_MIDDLEWARE
from ._checks import check_number, check_optional_text
from ._config import INHERIT, SubagentConfig, model_name_of, model_to_build
from ._context import task_in_scope
from ._default import get_default_runtime
from ._meter import BudgetMeter
from ._metering import check_budget_arguments
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
    are tracing handlers for every run (they come before a call's own);
    ``middleware``: ``create_agent`` middleware added to a built-in
    sub-agent (one built from ``model``; ignored with ``graph_factory``).
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
        middleware: Sequence[Any] = (),
    ) -> None:
        if not isinstance(config, SubagentConfig):
            raise TypeError(f"config must be a SubagentConfig, got {type(config).__name__}")
        if runtime is not None and not isinstance(runtime, SubagentRuntime):
            raise TypeError(f"runtime must be a SubagentRuntime, got {type(runtime).__name__}")
        self.config = config
        self.tools = config.select_tools(list(tools))  # ValueError names unknown tools
        self._offered = tuple(tools)  # what resume selects from again (register_subagents)
        if config.graph_factory is None or config.graph_factory_takes_model:
            model_to_build(config.name, config.model, parent_model)  # ValueError: what to set
        check_shareable(config.model, subagent=config.name)
        if config.model == INHERIT:
            check_shareable(parent_model, subagent=config.name)
        self.parent_model = parent_model
        self.trace_id = check_optional_text("SubagentExecutor", "trace_id", trace_id)
        self._runtime = runtime
        self._callbacks = tuple(callbacks)
        self.middleware = tuple(middleware)
        #: The runtime this executor's config is registered with (for resume).
        self._registered_with: SubagentRuntime | None = None
        if runtime is not None:
            self._register(runtime)

    def _register(self, runtime: SubagentRuntime) -> None:
        """Let ``runtime`` resume this sub-agent's tasks by name (docs/resume.md)."""
        runtime.register_subagents(
            [self.config], tools=self._offered, parent_model=self.parent_model,
            middleware=self.middleware,
        )
        self._registered_with = runtime

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
        thread_id: str | None = None,
        background: bool = False,
        budget: Budget | None = None,
        draw_on: Sequence[BudgetMeter] = (),
    ) -> SubagentResult:
        """Start the sub-agent in the background and return its result holder.

        The holder itself, not just its id: with a small ``retain_max`` a task
        that ends at once may be evicted before a lookup by id could find it.
        ``parent_id`` defaults to the sub-agent this is called from (if any, on
        the same runtime), so nested calls build the tree by themselves.
        ``callbacks``: tracing handlers for this run (a callback manager keeps
        its tracing parent). ``thread_id``: the lead agent's thread the task
        belongs to (default: its parent's). ``background=True``: a root task
        (never a child of the caller) that outlives whoever started it.
        ``budget``: limits for this task and its subtree (besides the
        config's); ``draw_on``: shared meters it also draws on
        (``runtime.open_budget``). A task also draws on its ancestors' budgets.
        """
        if not isinstance(task, str):
            raise TypeError(f"task must be a string describing the work, got {task!r}")
        if not task.strip():
            raise ValueError("task must be a non-empty string describing the work")
        runtime = self.runtime
        if runtime is not self._registered_with:
            self._register(runtime)
        if parent_id is None and not background:
            parent_id = task_in_scope(runtime)
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(
                f"SubagentExecutor.start.budget must be a Budget or None, got {budget!r}"
            )
        budgets = tuple(b for b in (self.config.budget, budget) if b is not None)
        check_budget_arguments("SubagentExecutor.start", budgets, draw_on, None)
        run = SubagentRun(
            config=self.config,
            tools=tuple(self.tools),
            parent_model=self.parent_model,
            callbacks=merge_callbacks(self._callbacks, callbacks),
            middleware=self._middleware_for(runtime, budgets, draw_on, parent_id),
            checkpoints=runtime.checkpoints,
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
            thread_id=thread_id,
            background=background,
            budgets=budgets,
            draw_on=draw_on,
            model_name=model_name_of(self.config.model, self.parent_model),
        )

    def _middleware_for(
        self,
        runtime: SubagentRuntime,
        budgets: tuple[Budget, ...],
        draw_on: Sequence[BudgetMeter],
        parent_id: str | None,
    ) -> tuple[Any, ...]:
        """The run's middleware, with the hook that delivers budget warnings
        when a budget it draws on can warn (a hook costs a graph step per call)."""
        middleware = self.middleware
        if self.config.graph_factory is not None or any(
            getattr(m, "delivers_budget_notes", False) for m in middleware
        ):
            return middleware
        parent = runtime.get(parent_id) if parent_id is not None else None
        inherited = parent.budgets if parent is not None else ()
        warning = [*budgets, *(m.budget for m in (*draw_on, *inherited))]
        if any(b.warn_at is not None for b in warning):
            return (*middleware, NOTES_MIDDLEWARE)
        return middleware

    def execute_async(
        self,
        task: str,
        task_id: str | None = None,
        parent_id: str | None = None,
        *,
        owner: str | None = None,
        callbacks: Sequence[Any] | BaseCallbackManager = (),
        budget: Budget | None = None,
    ) -> str:
        """Start the sub-agent in the background and return its task id at once
        (``budget``: limits for this task and its subtree)."""
        return self.start(
            task,
            task_id=task_id,
            parent_id=parent_id,
            owner=owner,
            callbacks=callbacks,
            budget=budget,
        ).task_id

    def execute(
        self, task: str, timeout: float | None = None, *, budget: Budget | None = None
    ) -> SubagentResult:
        """Run the sub-agent and block until it is terminal (``budget``: limits
        for this task and its subtree).

        If the wait is interrupted (KeyboardInterrupt) or ``timeout`` runs out,
        the sub-agent is cancelled, and we wait (bounded) for it to unwind.
        """
        if timeout is not None:
            check_number("execute", "timeout", timeout, positive=True, finite=True)
        holder = self.start(task, budget=budget)
        runtime = self.runtime
        runtime.wait_terminal_blocking(
            holder, timeout=timeout, cancel_reason="the caller was interrupted"
        )
        if not holder.is_terminal:
            runtime.request_cancel(holder.task_id, f"execute() timeout of {timeout}s ran out")
            holder.wait(runtime.cleanup_timeout_seconds + 1.0)
        return holder

    async def aexecute(self, task: str, *, budget: Budget | None = None) -> SubagentResult:
        """Run the sub-agent without blocking this loop; await its terminal
        status (``budget``: limits for this task and its subtree).

        A ``CancelledError`` here cancels the sub-agent and propagates once the
        sub-agent has stopped (bounded by the runtime's cleanup timeout).
        """
        return await self.runtime.wait_terminal(self.start(task, budget=budget))
