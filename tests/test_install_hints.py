"""Without an optional extra, its import says which extra to install.

Run in a fresh interpreter in which the extras' packages cannot be imported
(``sys.modules[name] = None`` makes ``import name`` fail as if it were not
installed), so the test session's own imports are untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
for missing in ("ray", "deepagents", "fastapi"):
    sys.modules[missing] = None
hints = {}
def attempt(key, action):
    try:
        action()
    except ImportError as exc:
        hints[key] = f"{type(exc).__name__}: {exc}"
    else:
        hints[key] = "imported"
import subagent_exec
attempt("core", lambda: __import__("subagent_exec.testing"))
attempt("ray", lambda: subagent_exec.RayBackend)
attempt("ray-pool", lambda: __import__("subagent_exec", fromlist=["RayWorkerPool"]).RayWorkerPool)
attempt("deepagents", lambda: __import__("subagent_exec.integrations.deepagents"))
attempt("server", lambda: __import__("subagent_exec.server"))
print(json.dumps(hints))
"""


def test_each_optional_extra_names_its_pip_install_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    hints = json.loads(done.stdout.strip().splitlines()[-1])
    assert hints["core"] == "imported"  # the core and its test doubles need no extra
    assert hints["ray"].startswith("ImportError: ")
    assert hints["ray"].endswith("needs Ray: pip install 'subagent-exec[ray]'")
    assert "pip install 'subagent-exec[ray]'" in hints["ray-pool"]
    assert hints["deepagents"].startswith("ImportError: subagent_exec.integrations.deepagents")
    assert hints["deepagents"].endswith("pip install 'subagent-exec[deepagents]'")
    assert hints["server"].endswith("pip install 'subagent-exec[server]'")
