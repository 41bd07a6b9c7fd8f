"""Bridges to other agent frameworks, each behind its own optional extra.

* :mod:`subagent_exec.integrations.deepagents` -- deepagents' sub-agents run
  through subagent-exec (``pip install 'subagent-exec[deepagents]'``).
"""
