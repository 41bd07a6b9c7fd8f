"""Tools that must run on the driver, called from a sub-agent on a worker.

Some tools cannot travel: the ``task`` tool holds the runtime, whose registry
and tree live on the driver. Such a tool says so (``runs_on_driver = True``).
At submission it is replaced by a :class:`RemoteTool` with the same name,
description and arguments. A call on the worker goes to the driver as an item
of the run's stream (``("call", request_id, request)``); the driver invokes
the real tool there, as if from inside the calling sub-agent (so a child the
``task`` tool starts is registered under the caller, and the caller's slot is
lent to it while it waits), and sends the ToolMessage back through the
actor's ``deliver`` method.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from ..._errors import describe

#: Items a worker run puts on its stream besides AI messages and its end.
CALL = "call"
CALL_CANCELLED = "call_cancelled"


class Channel:
    """A worker run's way to ask the driver for something and await the answer.

    Requests go out as items of the run's stream; answers come back through
    the actor's ``deliver`` method.
    """

    def __init__(self, outbox: asyncio.Queue[tuple[str, Any, Any] | None]) -> None:
        self.outbox = outbox
        self.loop = asyncio.get_running_loop()
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        reply: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.replies[request_id] = reply
        self.outbox.put_nowait((CALL, request_id, request))
        try:
            return await reply
        except asyncio.CancelledError:
            # Our caller was cancelled: the driver cancels the call (the task
            # tool then stops its child, bounded). A stop of this whole run
            # reaches such children through the driver's cascade anyway.
            self.outbox.put_nowait((CALL_CANCELLED, request_id, None))
            raise
        finally:
            self.replies.pop(request_id, None)

    def answer(self, request_id: str, reply: dict[str, Any]) -> None:
        waiting = self.replies.get(request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)


#: The channel of the run whose code is executing (set per run, on the worker).
current_channel: contextvars.ContextVar[Channel | None] = contextvars.ContextVar(
    "subagent_exec_ray_channel", default=None
)


class RemoteTool(BaseTool):
    """Stands in, on a Ray worker, for a tool that runs on the driver.

    Same name, description and arguments as the tool it stands in for; a call
    is served by that tool on the driver (see the module docstring).
    """

    name: str
    description: str = ""

    @classmethod
    def standing_in_for(cls, tool: BaseTool) -> RemoteTool:
        return cls(name=tool.name, description=tool.description, args_schema=tool.args_schema)

    async def _arun(
        self, run_manager: AsyncCallbackManagerForToolRun | None = None, **arguments: Any
    ) -> ToolMessage:
        tool_call_id = str(arguments.get("tool_call_id") or f"call-{uuid.uuid4().hex}")
        channel = current_channel.get()
        if channel is None:
            return self._error(tool_call_id, self._outside_a_run())
        reply = await channel.call(
            {"tool_name": self.name, "args": arguments, "tool_call_id": tool_call_id}
        )
        return ToolMessage(
            content=reply["content"],
            tool_call_id=tool_call_id,
            name=self.name,
            status=reply["status"],
            artifact=reply["artifact"],
        )

    def _run(
        self, run_manager: CallbackManagerForToolRun | None = None, **arguments: Any
    ) -> ToolMessage:
        # A sync graph calls tools in an executor thread: hand the call to the
        # run's loop (the actor's) and block this thread only.
        channel = current_channel.get()
        if channel is None:
            tool_call_id = str(arguments.get("tool_call_id") or "")
            return self._error(tool_call_id, self._outside_a_run())
        return asyncio.run_coroutine_threadsafe(self._arun(**arguments), channel.loop).result()

    def _outside_a_run(self) -> str:
        return f"the {self.name} tool works only inside a sub-agent run"

    def _error(self, tool_call_id: str, problem: str) -> ToolMessage:
        return ToolMessage(
            content=f"Error: {problem}", tool_call_id=tool_call_id, name=self.name, status="error"
        )


async def serve_call(tool: BaseTool | None, request: dict[str, Any]) -> dict[str, Any]:
    """On the driver: run ``tool`` for a worker's request; the reply to send back."""
    try:
        if tool is None:
            raise LookupError(f"no driver-side tool named {request['tool_name']!r}")
        message = await tool.ainvoke(
            {
                "type": "tool_call",
                "name": tool.name,
                "args": request["args"],
                "id": request["tool_call_id"],
            }
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return {"content": f"Error: {describe(exc)}", "status": "error", "artifact": None}
    if not isinstance(message, ToolMessage):  # a tool that returned plain content
        return {"content": str(message), "status": "success", "artifact": None}
    return {"content": message.content, "status": message.status, "artifact": message.artifact}
