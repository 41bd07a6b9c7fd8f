"""Moved: the fake OpenAI-compatible server now ships as ``subagent_exec.testing``.

Kept so imports made before the move keep working, including the handler
pieces ``tests/provider_servers.py`` builds its other wire formats from.
"""

from subagent_exec.testing import OpenAICompatServer, RecordedRequest
from subagent_exec.testing._handler import _DELAY_RE, _SLOW_RE, _count_tokens
from subagent_exec.testing._handler import Handler as _Handler
from subagent_exec.testing._wire import message_text as _message_text
from subagent_exec.testing._wire import split_words as _split_words

__all__ = [
    "_DELAY_RE",
    "_SLOW_RE",
    "OpenAICompatServer",
    "RecordedRequest",
    "_Handler",
    "_count_tokens",
    "_message_text",
    "_split_words",
]
