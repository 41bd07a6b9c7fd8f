"""``python -m subagent_exec.testing``: the fake OpenAI-compatible server (see ``_cli``)."""

from ._cli import main

raise SystemExit(main())
