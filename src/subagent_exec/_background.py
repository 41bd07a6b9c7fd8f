"""``make_background_tools``: the lead agent's background tools for a set of
sub-agents (``start_task``, ``check_tasks``, ``wait_tasks``, ``cancel_task``,
``message_task``; docs/background.md).

The tools hold the runtime, so each says ``runs_on_driver = True``: on the
Ray backend a sub-agent's call is served on the driver (docs/ray.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import ValidationError

from ._background_base import BackgroundTool, EventListener, ToolSet
from ._background_resume import ResumeTaskTool
from ._background_tools import (
    CancelTaskTool,
    CheckTasksTool,
    MessageTaskTool,
    StartTaskTool,
    WaitTasksTool,
)
from ._budget import Budget
from ._checks import check_callable, check_int
from ._config import INHERIT, SubagentConfig, check_configs, tool_name
from ._executor import SubagentExecutor
from ._inbox import InboxMiddleware
from ._lead_budgets import LeadBudgets
from ._models import ModelSpec
from ._runtime import SubagentRuntime

TOOL_NAMES = (
    "start_task", "check_tasks", "wait_tasks", "cancel_task", "message_task", "resume_task",
)


# -- building the set --------------------------------------------------------------------------


def _validation_message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()
        )
    else:
        problems = str(error)
    return f"Error: invalid arguments ({problems})"


_DESCRIPTIONS = {
    "start_task": "Start a sub-agent in the background and return at once with its task id; "
    "you keep working while it runs. Use it for long work you need not wait for now. "
    "Available sub-agents (`subagent_type`):\n{types}",
    "check_tasks": "Report on your background tasks: status, elapsed time, latest message "
    "while running, the final answer (or error / stop reason) once ended.",
    "wait_tasks": "Wait until any (or all) of your background tasks have ended, or the "
    "timeout passes, then report on them like check_tasks. The tasks are never stopped.",
    "cancel_task": "Stop a background task (and everything it started); returns its final "
    "status once it has stopped.",
    "message_task": "Send a follow-up message to a running background task: it reads it "
    "before its next model call. Use it to steer, correct or narrow its work.",
    "resume_task": "Resume a background task that was stopped (cancelled, timed out, failed) "
    "from its last completed step, without redoing earlier work; with a message, also follow "
    "up a completed one. It goes on as a new background task (a new id).",
}
_TOOL_CLASSES: dict[str, type[BackgroundTool]] = {
    "start_task": StartTaskTool, "check_tasks": CheckTasksTool, "wait_tasks": WaitTasksTool,
    "cancel_task": CancelTaskTool, "message_task": MessageTaskTool,
    "resume_task": ResumeTaskTool,
}


def make_background_tools(
    subagents: Sequence[SubagentConfig],
    tools: Sequence[Any] = (),
    parent_model: ModelSpec | None = None,
    runtime: SubagentRuntime | None = None,
    *,
    max_background_tasks: int = 8,
    on_event: EventListener | None = None,
    budget: Budget | None = None,
) -> list[BaseTool]:
    """Build ``start_task``, ``check_tasks``, ``wait_tasks``, ``cancel_task`` and
    ``message_task`` for the given sub-agents (docs/background.md).

    ``tools`` are the tools sub-agents may be given (each config's allow-list
    and ``disallowed_tools`` pick from them); ``parent_model`` serves
    ``model="inherit"``; ``runtime`` defaults to the process-wide runtime at
    call time. ``max_background_tasks``: unfinished background tasks one
    conversation may have at once. ``on_event`` receives every progress event
    of the background tasks (``task_started``, ``task_running``, one terminal
    ``task_*``, ``task_message_delivered``; each with ``background: True``) on
    the runtime's dispatcher thread or the sub-agent's, so it must be
    thread-safe. Outcomes are pushed into the lead's turns only under
    ``SubagentMiddleware(..., background=True)``; alone, the lead asks with
    ``check_tasks`` / ``wait_tasks``. ``budget``: limits shared by every
    background task of one conversation (thread) and their descendants
    (docs/budgets.md).
    """
    owner = "make_background_tools"
    configs = check_configs(owner, subagents)
    check_int(owner, "max_background_tasks", max_background_tasks, minimum=1)
    if on_event is not None:
        check_callable(owner, "on_event", on_event)
    if runtime is not None and not isinstance(runtime, SubagentRuntime):
        raise TypeError(f"{owner}.runtime must be a SubagentRuntime, got {runtime!r}")
    clashing = sorted({tool_name(t) for t in tools} & set(TOOL_NAMES))
    if clashing:
        raise ValueError(f"{owner}.tools already holds tools named {clashing}; the background "
                         f"tools are called {', '.join(TOOL_NAMES)}")
    inheriting = [c.name for c in configs if c.model == INHERIT and c.graph_factory is None]
    if inheriting and (parent_model is None or parent_model == INHERIT):
        raise ValueError(
            f"{owner}: sub-agent(s) {inheriting} have model='inherit' but no parent_model was "
            "given; pass parent_model=... (the lead agent's model), or use "
            "SubagentMiddleware(..., background=True), which inherits the lead's model"
        )
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"{owner}.budget must be a Budget or None, got {budget!r}")
    toolset = ToolSet(runtime, max_background_tasks, on_event)
    toolset.budgets = LeadBudgets(budget, per="thread") if budget is not None else None
    for config in configs:
        inbox = [InboxMiddleware()] if config.graph_factory is None else []
        toolset.executors[config.name] = SubagentExecutor(
            config, tools=tools, parent_model=parent_model, runtime=runtime, middleware=inbox
        )
    types = "\n".join(f"- {c.name}: {c.description or '(no description)'}" for c in configs)
    built: list[BaseTool] = []
    for name in TOOL_NAMES:
        tool = _TOOL_CLASSES[name](
            name=name,
            description=_DESCRIPTIONS[name].format(types=types),
            handle_validation_error=_validation_message,
        )
        tool._set = toolset
        built.append(tool)
    return built


def toolset_of(tools: Sequence[BaseTool]) -> ToolSet:
    """The shared set behind tools made by :func:`make_background_tools`."""
    first = tools[0]
    assert isinstance(first, BackgroundTool)
    return first._set
