"""``python -m subagent_exec.testing``: run the fake OpenAI-compatible server.

Prints the base URL on the first line of stdout (then serves until Ctrl-C or
SIGTERM), so a shell or a test can read it::

    $ python -m subagent_exec.testing --port 0 --script examples/quickstart.py:fake_openai_model
    http://127.0.0.1:43817/v1

``--script`` names what answers: ``FILE.py:NAME`` or ``package.module:NAME``
(a chat model such as a ``ScriptedChatModel``, a mapping of request model
names to chat models, or a zero-argument function returning either), or a
``FILE.json`` holding ``{"script": {...}, "default": ..., "latency": ...}`` for
a ``ScriptedChatModel`` (a reply is a string or ``{"content": ..., "tool_calls":
[{"name": ..., "args": {...}}]}``). Without ``--script`` it echoes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from ._scripted import ScriptedChatModel, tool_calls
from ._server import OpenAICompatServer

__all__ = ["load_script", "main"]


def _json_reply(raw: Any, where: str) -> str | AIMessage:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a reply is a string or an object, got {raw!r}")
    calls = raw.get("tool_calls") or []
    content = raw.get("content", "")
    if not calls:
        return str(content)
    pairs = [(c["name"], dict(c.get("args") or {})) for c in calls]
    message = tool_calls(*pairs)
    message.content = str(content)
    return message


def _from_json(path: Path) -> ScriptedChatModel:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("script", {}), dict):
        raise ValueError(f'{path}: expected {{"script": {{...}}, "default": ..., ...}}')
    script: dict[str, list[str | AIMessage]] = {}
    for key, replies in data.get("script", {}).items():
        items = replies if isinstance(replies, list) else [replies]
        script[key] = [_json_reply(r, f"{path}: script[{key!r}]") for r in items]
    return ScriptedChatModel(
        script=script, default=data.get("default"), latency=float(data.get("latency", 0.0))
    )


def load_script(spec: str) -> BaseChatModel | Mapping[str, BaseChatModel]:
    """What ``--script SPEC`` names, loaded (see the module docstring)."""
    if spec.endswith(".json"):
        return _from_json(Path(spec))
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"--script {spec!r}: use FILE.py:NAME, package.module:NAME or FILE.json")
    if target.endswith(".py"):
        path = Path(target).resolve()
        module_spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"--script {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module  # pydantic and dataclasses look it up
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    found = getattr(module, name)
    if callable(found) and not isinstance(found, BaseChatModel):
        found = found()
    if isinstance(found, BaseChatModel | Mapping):
        return found
    raise ValueError(
        f"--script {spec!r} gave a {type(found).__name__}; expected a chat model or a mapping "
        "of model names to chat models"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subagent_exec.testing",
        description="A fake OpenAI-compatible chat-completions server on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--script", help="FILE.py:NAME, package.module:NAME or FILE.json")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds per chunk")
    args = parser.parse_args(argv)
    chat_model = load_script(args.script) if args.script else None
    server = OpenAICompatServer(
        host=args.host,
        port=args.port,
        chat_model=chat_model,
        delay=args.delay,
        chunk_delay=args.chunk_delay,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(server.base_url, flush=True)
        print(
            f"serving; try: OPENAI_BASE_URL={server.base_url} OPENAI_API_KEY=test "
            "python your_agent.py  (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    return 0
