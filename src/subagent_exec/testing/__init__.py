"""Test doubles for agents: scripted chat models and a fake OpenAI-compatible server.

* :class:`ScriptedChatModel` -- an in-process fake chat model whose replies are
  routed by the input (the first user message picks the script entry, the
  number of AI messages the turn), whose async calls really await, and which
  ``create_agent`` accepts (``bind_tools``). :func:`tool_call` /
  :func:`tool_calls` build replies that call tools.
* :class:`OpenAICompatServer` -- the same scripts served over HTTP on
  127.0.0.1 in the OpenAI chat-completions format (tool calls included,
  streamed or not), so the *real* ``ChatOpenAI`` client can be tested offline:
  ``ChatOpenAI(base_url=server.base_url, api_key="test")`` or
  ``OPENAI_BASE_URL``. Also runnable: ``python -m subagent_exec.testing --port 0``
  prints its base URL and serves until stopped.

Stdlib HTTP only; nothing here needs an extra.
"""

from ._handler import RecordedRequest
from ._scripted import Reply, ReplyFn, ScriptedCall, ScriptedChatModel, tool_call, tool_calls
from ._server import OpenAICompatServer, ReplyFunction

__all__ = [
    "OpenAICompatServer",
    "RecordedRequest",
    "Reply",
    "ReplyFn",
    "ReplyFunction",
    "ScriptedCall",
    "ScriptedChatModel",
    "tool_call",
    "tool_calls",
]
