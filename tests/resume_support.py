"""Helpers for the resume tests: a scripted sub-agent whose model calls and
tool calls are counted, with a tool that blocks until released (so a test can
stop the task in the middle of it)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import StructuredTool

from subagent_exec import SubagentConfig
from subagent_exec.testing import ScriptedChatModel, tool_call

TASK = "survey the three sources"
FINAL = "final answer: sources A, B and C agree"


@dataclass
class CountingAgent:
    """A sub-agent that calls ``step`` twice, then ``slow`` (which blocks the
    first time until ``release`` is set), then answers ``FINAL``."""

    calls: Counter[str] = field(default_factory=Counter)
    slow_started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    block_first_slow: bool = True

    def __post_init__(self) -> None:
        self.model = ScriptedChatModel(
            script={
                TASK: [
                    tool_call("step", {"n": 1}),
                    tool_call("step", {"n": 2}),
                    tool_call("slow", {}),
                    self._answer,
                    self._answer,  # every later turn too
                ]
            },
        )

    @staticmethod
    def _answer(messages: list[Any]) -> str:
        """A new human message (a follow-up) is answered; else the final answer."""
        last = messages[-1]
        if last.type == "human" and len(messages) > 2:
            return f"follow-up answer to: {last.text}"
        return FINAL


    def tools(self) -> list[Any]:
        async def step(n: int) -> str:
            """One step of the survey."""
            self.calls[f"step{n}"] += 1
            return f"source {'ABC'[n - 1]} read"

        async def slow() -> str:
            """The long step."""
            self.calls["slow"] += 1
            self.slow_started.set()
            if self.block_first_slow and self.calls["slow"] == 1:
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
            return "source C read"

        return [
            StructuredTool.from_function(coroutine=step, name="step"),
            StructuredTool.from_function(coroutine=slow, name="slow"),
        ]

    def config(self, name: str = "surveyor", **options: Any) -> SubagentConfig:
        return SubagentConfig(name=name, model=self.model, **options)

    @property
    def model_calls(self) -> int:
        return len(self.model.calls)
