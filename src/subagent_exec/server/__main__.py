"""``python -m subagent_exec.server``: same as ``subagent-exec serve``."""

import sys

from ._cli import main

sys.exit(main())
