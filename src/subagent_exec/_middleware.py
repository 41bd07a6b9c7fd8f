"""``SubagentMiddleware``: the ``task`` tool plus a system-prompt section, as
``create_agent`` middleware; with ``background=True`` also the background
tools and push delivery of their outcomes (docs/background.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, cast

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain_core.messages import AIMessage, SystemMessage

from ._background import make_background_tools, toolset_of
from ._background_push import PushDelivery
from ._budget import Budget
from ._checks import check_number
from ._config import SubagentConfig
from ._lead_model import LeadModels
from ._models import ModelSpec
from ._runtime import SubagentRuntime
from ._task_tool import EventListener, build_task_tool

SYSTEM_PROMPT_SECTION = (
    "## Delegating with `{name}`\n"
    "You can hand self-contained pieces of work to sub-agents with the `{name}` tool. "
    "Independent pieces can be delegated in one message: they run in parallel. Each "
    "sub-agent starts from nothing but the prompt you give it, so make the prompt "
    "complete. Use the answers they return to build your own answer."
)
BACKGROUND_PROMPT_SECTION = (
    "\n\n## Work in the background\n"
    "- `{name}` waits for the sub-agent's answer: use it when you need the answer before "
    "you can go on.\n"
    "- `start_task` starts a sub-agent in the background and returns at once with its task "
    "id: use it for long work while you keep answering the user or doing other work. When a "
    "background task ends, its outcome arrives by itself as a message (\"background task "
    "<id> (...) completed: ...\") before your next turn: do not poll for it.\n"
    "- `check_tasks` reports on your background tasks; `wait_tasks` waits until one (or "
    "all) of them ends, for when you have nothing else to do; `message_task` tells a running "
    "one something new (a correction, a detail, a narrower focus); `cancel_task` stops one "
    "whose work is no longer needed."
)
OnTurnEnd = Literal["return", "wait"]


class SubagentMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Adds the ``task`` tool and a short system-prompt section to ``create_agent``.

    ``create_agent(model, middleware=[SubagentMiddleware([researcher, writer])])``
    is the same as passing ``make_task_tool(...)`` in ``tools`` plus a line in
    the system prompt telling the model how to delegate.

    ``background=True`` adds the five tools of :func:`make_background_tools`
    (``start_task``, ``check_tasks``, ``wait_tasks``, ``cancel_task``,
    ``message_task``), a prompt section on when to use which, and push
    delivery: before each model call of the lead, the outcome of every
    background task of its thread that has ended since is added to its state,
    each exactly once. ``on_turn_end="wait"``: when the lead answers without
    tool calls while its background tasks still run, wait (at most
    ``turn_end_timeout_seconds``) for the next one to end and give the lead
    another turn. ``max_background_tasks``: unfinished background tasks per
    thread. ``budget``: limits shared by everything one run of the lead
    delegates with ``task``, and (a separate meter) by every background task
    of one thread (docs/budgets.md).
    """

    def __new__(cls, *args: Any, background: bool = False, **kwargs: Any) -> SubagentMiddleware:
        # The hooks of push delivery are graph nodes: only a background lead gets them.
        chosen = BackgroundSubagentMiddleware if background is True else cls
        instance: SubagentMiddleware = super().__new__(chosen)
        return instance

    def __init__(
        self,
        subagents: Sequence[SubagentConfig],
        tools: Sequence[Any] = (),
        parent_model: ModelSpec | None = None,
        runtime: SubagentRuntime | None = None,
        name: str = "task",
        *,
        system_prompt: str | None = None,
        on_event: EventListener | None = None,
        stream_subagent_output: bool = False,
        background: bool = False,
        on_turn_end: OnTurnEnd = "return",
        turn_end_timeout_seconds: float = 300.0,
        max_background_tasks: int = 8,
        budget: Budget | None = None,
    ) -> None:
        super().__init__()
        _check_background(background, on_turn_end, turn_end_timeout_seconds)
        # Without a parent_model, "inherit" uses the lead agent's own model (_lead_model.py).
        lead_models = LeadModels(name) if parent_model is None else None
        inherited = parent_model if lead_models is None else lead_models
        self.task_tool = build_task_tool(
            subagents,
            tools,
            inherited,
            runtime,
            name,
            on_event=on_event,
            stream_subagent_output=stream_subagent_output,
            lead_models=lead_models,
            budget=budget,
        )
        self.tools = [self.task_tool]
        # Which lead model made each task / start_task call (model="inherit").
        self._lead_models = [lead_models] if lead_models is not None else []
        self.push: PushDelivery | None = None
        if background:
            starter_models = LeadModels("start_task") if parent_model is None else None
            background_tools = make_background_tools(
                subagents, [*tools, self.task_tool],
                parent_model if starter_models is None else starter_models, runtime,
                max_background_tasks=max_background_tasks, on_event=on_event, budget=budget,
            )
            toolset = toolset_of(background_tools)
            toolset.lead_models = starter_models
            toolset.pushed = True
            self._lead_models += [starter_models] if starter_models is not None else []
            self.tools = [self.task_tool, *background_tools]
            self.push = PushDelivery(toolset, wait_at_turn_end=on_turn_end == "wait",
                                     turn_end_timeout=turn_end_timeout_seconds)
        section = SYSTEM_PROMPT_SECTION.format(name=name)
        if background:
            section += BACKGROUND_PROMPT_SECTION.format(name=name)
        self.system_prompt = system_prompt if system_prompt is not None else section

    def _with_section(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        if self.push is not None:
            self.push.confirm(request.messages)  # the model sees these outcomes now
        if request.system_message is None:
            system = SystemMessage(content=self.system_prompt)
        else:
            system = SystemMessage(
                content=cast(
                    "list[str | dict[str, str]]",
                    [
                        *request.system_message.content_blocks,
                        {"type": "text", "text": f"\n\n{self.system_prompt}"},
                    ],
                )
            )
        return request.override(system_message=system)

    def _record(self, request: ModelRequest[Any], response: Any) -> None:
        for lead_models in self._lead_models:
            lead_models.record(request.model, response)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        response = handler(self._with_section(request))
        self._record(request, response)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        response = await handler(self._with_section(request))
        self._record(request, response)
        return response


class BackgroundSubagentMiddleware(SubagentMiddleware):
    """``SubagentMiddleware(..., background=True)``: adds the push-delivery hooks."""

    push: PushDelivery

    @property
    def name(self) -> str:
        return "SubagentMiddleware"

    def before_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return self.push.deliver(cast("dict[str, Any]", state))

    async def abefore_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return self.push.deliver(cast("dict[str, Any]", state))

    @hook_config(can_jump_to=["model"])
    def after_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return self.push.turn_end(cast("dict[str, Any]", state))

    @hook_config(can_jump_to=["model"])
    async def aafter_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return await self.push.aturn_end(cast("dict[str, Any]", state))


def _check_background(background: object, on_turn_end: object, timeout: object) -> None:
    owner = "SubagentMiddleware"
    if not isinstance(background, bool):
        raise TypeError(f"{owner}.background must be True or False, got {background!r}")
    if not isinstance(on_turn_end, str):
        raise TypeError(f"{owner}.on_turn_end must be 'return' or 'wait', got {on_turn_end!r}")
    if on_turn_end not in ("return", "wait"):
        raise ValueError(f"{owner}.on_turn_end must be 'return' or 'wait', got {on_turn_end!r}")
    if on_turn_end == "wait" and not background:
        raise ValueError(f"{owner}.on_turn_end='wait' needs background=True (it waits for "
                         "background tasks)")
    check_number(owner, "turn_end_timeout_seconds", timeout, positive=True, finite=True)
