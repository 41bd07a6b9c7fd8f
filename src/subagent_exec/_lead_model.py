"""``model="inherit"`` under :class:`SubagentMiddleware`: the lead agent's own model.

The middleware sees the lead's model in every ``wrap_model_call``. After the
call it notes, for each ``task`` tool call in the reply, which model made it;
the ``task`` tool then gives an ``"inherit"`` sub-agent exactly that model.
Keyed by tool call id, so leads with different models sharing one middleware
(and parallel tool calls) each get their own. The note is taken when the tool
call runs; notes of tool calls that never run are dropped beyond ``LIMIT``.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from ._errors import ModelBindingError
from ._executor import SubagentExecutor
from ._models import check_shareable

LIMIT = 10_000


class LeadModels:
    """Which lead model made each ``task`` tool call (shared by middleware and tool).

    Given as the executors' ``parent_model`` so ``"inherit"`` configs are
    accepted; it is never called to build a model: the tool swaps in the lead's.
    """

    def __init__(self, tool_name: str) -> None:
        self.tool_name = tool_name
        self._lock = threading.Lock()
        self._models: OrderedDict[str, BaseChatModel] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # Travels with every run of its tool (e.g. to Ray workers); the notes stay here.
        return {"tool_name": self.tool_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tool_name"])  # type: ignore[misc]

    def __call__(self) -> BaseChatModel:
        raise ValueError(
            "SubagentMiddleware: model='inherit' needs the lead agent's model, which the "
            "middleware sees only when the task tool is called by the agent it is attached "
            "to; pass parent_model=... to SubagentMiddleware to call the tool directly"
        )

    def record(self, model: Any, response: Any) -> None:
        """Note ``model`` as the maker of the ``task`` calls in ``response``."""
        if not isinstance(model, BaseChatModel):
            return
        messages = response.result if hasattr(response, "result") else [response]
        ids: list[str] = [
            call["id"]
            for message in messages
            if isinstance(message, AIMessage)
            for call in message.tool_calls
            if call["name"] == self.tool_name and call["id"]
        ]
        with self._lock:
            for call_id in ids:
                self._models[call_id] = model
            while len(self._models) > LIMIT:
                self._models.popitem(last=False)

    def executor_for(self, executor: SubagentExecutor, tool_call_id: str) -> SubagentExecutor | str:
        """``executor`` using the lead's model for ``"inherit"``, or what went wrong."""
        with self._lock:
            model = self._models.pop(tool_call_id, None)
        if executor.parent_model is not self or executor.config.model != "inherit":
            return executor
        if model is None:
            return (
                f"sub-agent {executor.config.name!r} has model='inherit' and SubagentMiddleware "
                "did not see the lead agent's model for this tool call (was the tool called "
                "by the agent the middleware is attached to?); pass parent_model=... to "
                "SubagentMiddleware"
            )
        try:
            check_shareable(model, subagent=executor.config.name)
        except ModelBindingError as exc:
            return str(exc)
        inherited = copy.copy(executor)
        inherited.parent_model = model
        return inherited
