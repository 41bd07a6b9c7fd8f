"""``SubagentMiddleware``: the ``task`` tool plus a system-prompt section, as
``create_agent`` middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, SystemMessage

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


class SubagentMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Adds the ``task`` tool and a short system-prompt section to ``create_agent``.

    ``create_agent(model, middleware=[SubagentMiddleware([researcher, writer])])``
    is the same as passing ``make_task_tool(...)`` in ``tools`` plus a line in
    the system prompt telling the model how to delegate.
    """

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
    ) -> None:
        super().__init__()
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
        )
        self._lead_models = lead_models
        self.tools = [self.task_tool]
        self.system_prompt = (
            system_prompt if system_prompt is not None else SYSTEM_PROMPT_SECTION.format(name=name)
        )

    def _with_section(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
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

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        response = handler(self._with_section(request))
        if self._lead_models is not None:
            self._lead_models.record(request.model, response)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        response = await handler(self._with_section(request))
        if self._lead_models is not None:
            self._lead_models.record(request.model, response)
        return response
