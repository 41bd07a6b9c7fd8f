"""A fork server for tests/test_docs_run.py: imports the heavy modules once,
then runs each documentation block in a forked child.

Why: every block used to start a fresh interpreter, and importing LangChain,
LangGraph, the provider clients and this package took ~2-6 s of each block's
time on 2 shared cores (most of the docs test's ~2.5 min). A forked child has
those modules in ``sys.modules`` already; everything else is as a reader's
``python -c``: the block runs as a new ``__main__`` module (its own names, so
a missing import still fails), in its own empty directory, with stdin from
/dev/null, its output captured, and the interpreter's normal exit (atexit
handlers, non-daemon threads joined). Nothing has run in this process before
the fork but imports: no event loop, no threads of ours.

Protocol, one line of JSON per request on stdin: ``{"code", "cwd", "out",
"err"}``; the answers, on stdout: ``pid <n>`` when the child is started, then
``exit <code>`` when it ended (negative: killed by that signal).
"""

from __future__ import annotations

import json
import os
import sys
import types

PRELOAD = (
    "langchain.agents",
    "langchain_core.messages",
    "langchain_core.tools",
    "langgraph.graph",
    "langchain_openai",
    "langchain_anthropic",
    "subagent_exec",
    "subagent_exec.testing",
    "subagent_exec.server",
)


def _run_block(request: dict[str, str]) -> None:
    """In the child: become ``python -c <code>`` run in ``cwd``; never returns."""
    os.chdir(request["cwd"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for source, target in ((stdin, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
        os.close(source)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["-c"]
    sys.path[0] = ""  # as with ``python -c``: the working directory first
    # Raised SystemExit (or an exception's traceback and status 1) ends the
    # interpreter exactly as it ends ``python -c``.
    exec(compile(request["code"], "<string>", "exec"), main.__dict__)
    raise SystemExit(0)


def serve() -> None:
    for name in PRELOAD:
        __import__(name)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_block(request)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    serve()
