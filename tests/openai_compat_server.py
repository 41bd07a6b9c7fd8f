"""Moved: the fake OpenAI-compatible server now ships as ``subagent_exec.testing``.

Kept so imports made before the move keep working.
"""

from subagent_exec.testing import OpenAICompatServer, RecordedRequest

__all__ = ["OpenAICompatServer", "RecordedRequest"]
