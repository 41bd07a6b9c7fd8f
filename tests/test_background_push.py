"""``SubagentMiddleware(..., background=True)``: outcomes pushed into the lead's
turns exactly once (within a run, across runs, with and without a
checkpointer), thread isolation, the lead's cancellation against
``cancel_thread``, ``on_turn_end``, events, ``"inherit"`` and retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentMiddleware,
    SubagentRuntime,
    SubagentStatus,
    make_background_tools,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

from .background_helpers import (
    by_turn,
    call,
    calls,
    pause_tool,
    pushed,
    start,
    started_ids,
    tool_results,
)
from .helpers import SETTLE, terminal, wait_until
from .task_tool_helpers import Recorder, custom_events, hold_tool, stream_lead, task_call


def _worker(**latencies: float) -> SubagentConfig:
    model = ScriptedChatModel(
        script={"fast": "fast answer", "slow": "slow answer", "stuck": "never"},
        latency_by_key={"fast": 0.1, "slow": 0.5, "stuck": 30.0, **latencies},
    )
    return SubagentConfig(name="worker", description="does one job", model=model)


def _lead(
    replies: list[Any],
    runtime: SubagentRuntime,
    *,
    configs: list[SubagentConfig] | None = None,
    tools: Sequence[Any] = (),
    subagent_tools: Sequence[Any] = (),
    checkpointer: Any = None,
    **middleware: Any,
) -> tuple[Any, ScriptedChatModel, SubagentMiddleware]:
    """A background lead answering by turn (``tools``: the lead's own)."""
    lead_model = ScriptedChatModel(router=by_turn(replies))
    mw = SubagentMiddleware(configs or [_worker()], subagent_tools, runtime=runtime,
                            background=True, **middleware)
    agent = create_agent(lead_model, tools=list(tools), middleware=[mw],
                         checkpointer=checkpointer, system_prompt="You lead.")
    return agent, lead_model, mw


def _pushes_seen(model: ScriptedChatModel) -> list[list[str]]:
    """For each model call of the lead: the pushed outcomes in its input."""
    return [[t for t in c.texts if t.startswith("background task ")] for c in model.calls]


# -- exactly once --------------------------------------------------------------------------


def test_an_outcome_is_pushed_once_before_the_next_model_call(runtime: SubagentRuntime) -> None:
    agent, model, _ = _lead(
        [calls(start("worker", "fast job", "quick one")),
         calls(call("pause")), calls(call("pause")), "done"],
        runtime, tools=[pause_tool(0.5)],
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    [task_id] = started_ids(result["messages"])
    [message] = pushed(result["messages"])
    assert message.text == (
        f"background task {task_id} (worker: quick one) completed: fast answer"
    )
    assert message.id == f"subagent-background-{task_id}"
    seen = _pushes_seen(model)
    # Not before it ended; then in every later call, once.
    assert seen[0] == [] and seen[1] == []
    assert seen[2] == [message.text] and seen[3] == [message.text]
    # It arrived right after the pause during which the task ended.
    index = result["messages"].index(message)
    assert result["messages"][index - 1].name == "pause"


def test_an_outcome_reaches_the_next_run_of_the_thread_once_with_a_checkpointer(
    runtime: SubagentRuntime,
) -> None:
    agent, model, _ = _lead(
        [calls(start("worker", "slow job", "slow one")), "started; I will tell you",
         lambda m: f"news: {m[-1].text}", "nothing new"],
        runtime, checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "chat-1"}}
    first = asyncio.run(agent.ainvoke({"messages": [("user", "start it")]}, config))
    assert pushed(first["messages"]) == []  # the run ended before the task did
    [task_id] = started_ids(first["messages"])
    terminal(runtime.get(task_id))  # it ends between two runs

    second = asyncio.run(agent.ainvoke({"messages": [("user", "any news?")]}, config))
    third = asyncio.run(agent.ainvoke({"messages": [("user", "and now?")]}, config))

    expected = f"background task {task_id} (worker: slow one) completed: slow answer"
    assert second["messages"][-1].text == f"news: {expected}"
    assert [m.text for m in pushed(third["messages"])] == [expected]  # kept once in the state
    assert third["messages"][-1].text == "nothing new"
    seen = _pushes_seen(model)
    assert seen == [[], [], [expected], [expected]]


def test_an_outcome_is_pushed_once_across_runs_without_a_checkpointer(
    runtime: SubagentRuntime,
) -> None:
    starter = by_turn([calls(start("worker", "slow job")), "started"])

    def route(messages: list[BaseMessage]) -> Any:
        first = next(m for m in messages if isinstance(m, HumanMessage)).text
        return starter(messages) if first == "start it" else "got it"

    lead_model = ScriptedChatModel(router=route)
    mw = SubagentMiddleware([_worker()], runtime=runtime, background=True)
    agent = create_agent(lead_model, middleware=[mw])
    config = {"configurable": {"thread_id": "stateless-7"}}
    first = asyncio.run(agent.ainvoke({"messages": [("user", "start it")]}, config))
    [task_id] = started_ids(first["messages"])
    terminal(runtime.get(task_id))

    # No checkpointer: each run starts from the messages it is given.
    second = asyncio.run(agent.ainvoke({"messages": [("user", "news?")]}, config))
    third = asyncio.run(agent.ainvoke({"messages": [("user", "news?")]}, config))
    assert [m.text.split(" completed:")[0] for m in pushed(second["messages"])] == [
        f"background task {task_id} (worker: a job)"
    ]
    assert pushed(third["messages"]) == []  # the board remembers the lead was told
    assert lead_model.call_count == 4  # one call per later run: nothing else happened
    assert len(runtime.list_tasks()) == 1


def test_an_outcome_reported_by_a_tool_is_not_pushed_again(runtime: SubagentRuntime) -> None:
    agent, model, _ = _lead(
        [calls(start("worker", "fast job")),
         calls(call("wait_tasks", mode="all", timeout_seconds=SETTLE)),
         calls(call("pause")), "done"],
        runtime, tools=[pause_tool(0.05)],
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert "fast answer" in tool_results(result, "wait_tasks")[0].text
    assert pushed(result["messages"]) == []
    assert all(seen == [] for seen in _pushes_seen(model))


# -- threads -----------------------------------------------------------------------------


def test_threads_never_see_each_others_tasks(runtime: SubagentRuntime) -> None:
    ids: list[str] = []

    def thread_one(messages: list[BaseMessage]) -> Any:
        return by_turn([calls(start("worker", "slow job", "thread one's job")), "started",
                        lambda m: f"thread one heard: {m[-1].text}"])(messages)

    def thread_two(messages: list[BaseMessage]) -> Any:
        [other] = ids
        return by_turn([
            calls(call("check_tasks"), call("check_tasks", task_ids=[other]),
                  call("wait_tasks", task_ids=[other]), call("cancel_task", task_id=other),
                  call("message_task", task_id=other, message="psst")),
            "thread two done", "thread two: nothing new",
        ])(messages)

    def route(messages: list[BaseMessage]) -> Any:
        first = next(m for m in messages if isinstance(m, HumanMessage)).text
        return (thread_one if first == "one" else thread_two)(messages)

    lead_model = ScriptedChatModel(router=route)
    mw = SubagentMiddleware([_worker()], runtime=runtime, background=True)
    agent = create_agent(lead_model, middleware=[mw], checkpointer=InMemorySaver())
    one, two = ({"configurable": {"thread_id": t}} for t in ("one", "two"))

    started = asyncio.run(agent.ainvoke({"messages": [("user", "one")]}, one))
    ids.extend(started_ids(started["messages"]))
    result = asyncio.run(agent.ainvoke({"messages": [("user", "two")]}, two))
    empty, named, waited, cancelled, messaged = tool_results(result)
    assert empty.text == "No background tasks in this conversation."
    for answer in (named, waited):
        assert f"{ids[0]}: unknown task id" in answer.text
        assert answer.artifact["unknown"] == ids
    unknown = (f"Error: unknown task id '{ids[0]}': not a background task of this "
               "conversation (check_tasks lists them)")
    assert cancelled.text == unknown and messaged.text == unknown
    holder = terminal(runtime.get(ids[0]))
    assert holder.status is SubagentStatus.COMPLETED  # thread two's cancel did nothing

    again_two = asyncio.run(agent.ainvoke({"messages": [("user", "more")]}, two))
    again_one = asyncio.run(agent.ainvoke({"messages": [("user", "more")]}, one))
    assert pushed(again_two["messages"]) == []
    assert again_one["messages"][-1].text.startswith(
        f"thread one heard: background task {ids[0]} (worker: thread one's job) completed"
    )


# -- stopping --------------------------------------------------------------------------------


def test_a_cancelled_lead_leaves_background_tasks_running_and_cancel_thread_stops_them(
    runtime: SubagentRuntime,
) -> None:
    recorder = Recorder()
    hold = hold_tool(recorder)
    leaf = SubagentConfig(name="leaf", tools=["hold"], model=ScriptedChatModel(
        script={"dig": [tool_call("hold", {"label": "leaf"})]}))
    branch = SubagentConfig(name="branch", tools=["task"], disallowed_tools=(),
                            model=ScriptedChatModel(script={"explore": [
                                calls(task_call("leaf", "dig deep"))]}))
    agent, _, _ = _lead(
        [calls(start("worker", "stuck job"), start("branch", "explore"),
               task_call("worker", "stuck in the foreground")), "never"],
        runtime, configs=[_worker(), branch, leaf], subagent_tools=[hold],
    )

    async def run_then_cancel() -> None:
        run = asyncio.ensure_future(agent.ainvoke({"messages": [("user", "go")]},
                                                  {"configurable": {"thread_id": "t-stop"}}))
        assert await recorder.await_for("hold:leaf")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(run_then_cancel())
    tasks = {h.subagent_name + (" bg" if h.background else ""): h
             for h in runtime.list_tasks(thread_id="t-stop")}
    assert set(tasks) == {"worker bg", "branch bg", "worker", "leaf"}
    foreground = terminal(tasks["worker"])
    assert foreground.status is SubagentStatus.CANCELLED  # the task call's child
    for name in ("worker bg", "branch bg", "leaf"):
        assert tasks[name].status is SubagentStatus.RUNNING, name

    assert runtime.cancel_thread("t-stop", "the user closed the chat") == 3
    for name in ("worker bg", "branch bg", "leaf"):
        assert terminal(tasks[name]).status is SubagentStatus.CANCELLED
    assert recorder.seen("cleanup:leaf")
    assert tasks["branch bg"].cancel_reason == "the user closed the chat"


def test_cancel_thread_reaches_a_running_foreground_call_too(runtime: SubagentRuntime) -> None:
    agent, _, _ = _lead(
        [calls(start("worker", "stuck job"), task_call("worker", "stuck in the foreground")),
         "the lead carried on"], runtime,
    )

    def stop_soon() -> None:
        assert wait_until(lambda: len(runtime.list_tasks(thread_id="t-fg")) == 2
                          and all(h.status is SubagentStatus.RUNNING
                                  for h in runtime.list_tasks(thread_id="t-fg")))
        assert runtime.cancel_thread("t-fg", "stop everything") == 2

    async def scenario() -> dict[str, Any]:
        stopper = asyncio.create_task(asyncio.to_thread(stop_soon))
        result = await agent.ainvoke({"messages": [("user", "go")]},
                                     {"configurable": {"thread_id": "t-fg"}})
        await stopper
        return result

    result = asyncio.run(scenario())
    [task_answer] = tool_results(result, "task")
    assert "was cancelled: stop everything" in task_answer.text
    assert result["messages"][-1].text == "the lead carried on"
    assert all(terminal(h).status is SubagentStatus.CANCELLED
               for h in runtime.list_tasks(thread_id="t-fg"))


# -- the end of a turn ----------------------------------------------------------------------------


def test_on_turn_end_wait_gives_the_lead_another_turn_when_a_task_ends(
    runtime: SubagentRuntime,
) -> None:
    agent, model, _ = _lead(
        [calls(start("worker", "slow job", "research")), "I will get back to you.",
         lambda m: f"Final brief with: {m[-1].text}"],
        runtime, on_turn_end="wait",
    )
    started = time.monotonic()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    elapsed = time.monotonic() - started
    texts = [m.text for m in result["messages"]]
    assert texts[-3] == "I will get back to you."
    assert texts[-2].endswith("(worker: research) completed: slow answer")
    assert texts[-1] == f"Final brief with: {texts[-2]}"
    assert model.call_count == 3 and elapsed < 0.5 + 1.5


def test_on_turn_end_return_ends_the_turn_and_wait_is_bounded(runtime: SubagentRuntime) -> None:
    agent, model, _ = _lead([calls(start("worker", "slow job")), "I will get back to you."],
                            runtime)
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    assert result["messages"][-1].text == "I will get back to you."
    assert model.call_count == 2 and pushed(result["messages"]) == []

    agent, model, _ = _lead([calls(start("worker", "stuck job")), "I will get back to you."],
                            runtime, on_turn_end="wait", turn_end_timeout_seconds=0.3)
    started = time.monotonic()
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    elapsed = time.monotonic() - started
    assert result["messages"][-1].text == "I will get back to you."
    assert model.call_count == 2 and 0.3 <= elapsed < 2.0  # waited, then ended
    [task_id] = started_ids(result["messages"])
    holder = runtime.get(task_id)
    assert holder is not None and holder.status is SubagentStatus.RUNNING


def test_on_turn_end_wait_from_a_sync_graph(runtime: SubagentRuntime) -> None:
    agent, _, _ = _lead(
        [calls(start("worker", "slow job")), "later", lambda m: f"now: {m[-1].text}"],
        runtime, on_turn_end="wait",
    )
    result = agent.invoke({"messages": [("user", "go")]})
    assert result["messages"][-1].text.startswith("now: background task ")
    assert len(pushed(result["messages"])) == 1


# -- events, prompt, inherit, retention -------------------------------------------------


def test_progress_events_are_marked_background(runtime: SubagentRuntime) -> None:
    events: list[dict[str, Any]] = []
    agent, _, _ = _lead(
        [calls(start("worker", "fast job")), calls(call("pause")), "done"],
        runtime, tools=[pause_tool(0.4)], on_event=events.append,
    )
    chunks = asyncio.run(stream_lead(agent, "go"))
    streamed = custom_events(chunks)
    assert [e["type"] for e in streamed] == ["task_started", "task_completed"]
    assert all(e["background"] is True and e["parent_id"] is None for e in streamed)
    assert streamed[1]["result"] == "fast answer"
    assert wait_until(lambda: len(events) == 3)
    assert [e["type"] for e in events] == ["task_started", "task_running", "task_completed"]
    assert {e["task_id"] for e in events} == {streamed[0]["task_id"]}
    assert all(e["background"] and e["thread_id"] == streamed[0]["thread_id"] for e in events)


def test_the_middleware_adds_the_tools_and_the_prompt_section(runtime: SubagentRuntime) -> None:
    agent, model, mw = _lead(["hello"], runtime)
    assert [t.name for t in mw.tools] == [
        "task", "start_task", "check_tasks", "wait_tasks", "cancel_task", "message_task",
        "resume_task",
    ]
    assert all(getattr(t, "runs_on_driver", False) for t in mw.tools)
    assert isinstance(mw, SubagentMiddleware) and mw.name == "SubagentMiddleware"
    asyncio.run(agent.ainvoke({"messages": [("user", "hi")]}))
    system = model.calls[0].messages[0][1]
    assert system.startswith("You lead.") and "## Work in the background" in system
    plain = SubagentMiddleware([_worker()], runtime=runtime)
    assert [t.name for t in plain.tools] == ["task"]
    assert not hasattr(type(plain), "push") or plain.push is None
    assert type(plain).before_model is not type(mw).before_model


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"background": "yes"}, TypeError, "background must be True or False"),
        ({"background": True, "on_turn_end": "later"}, ValueError, "'return' or 'wait'"),
        ({"background": True, "on_turn_end": 1}, TypeError, "'return' or 'wait'"),
        ({"on_turn_end": "wait"}, ValueError, "needs background=True"),
        ({"background": True, "turn_end_timeout_seconds": 0}, ValueError,
         "turn_end_timeout_seconds must be a finite number > 0"),
        ({"background": True, "max_background_tasks": 0}, ValueError,
         "max_background_tasks must be an int >= 1"),
    ],
)
def test_bad_middleware_options_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SubagentMiddleware([_worker()], **kwargs)


def test_inherit_uses_the_lead_model_for_background_sub_agents(runtime: SubagentRuntime) -> None:
    def route(messages: list[BaseMessage]) -> Any:
        first = next(m for m in messages if isinstance(m, HumanMessage)).text
        if first == "summarise the news":  # the sub-agent's own conversation
            return "summary by the lead's model"
        return by_turn([calls(start("summariser", "summarise the news")),
                        calls(call("wait_tasks", mode="all", timeout_seconds=SETTLE)),
                        "done"])(messages)

    lead_model = ScriptedChatModel(router=route)
    mw = SubagentMiddleware([SubagentConfig(name="summariser", model="inherit")],
                            runtime=runtime, background=True)
    agent = create_agent(lead_model, middleware=[mw])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    # The outcome reaches the lead once: pushed before its next model call when
    # the sub-agent ended first (a loaded machine), else through wait_tasks.
    told = [m.text for m in result["messages"] if not isinstance(m, AIMessage)]
    assert sum("summary by the lead's model" in text for text in told) == 1, told


def test_an_untold_outcome_outlives_retention_until_the_lead_is_told(
    make_runtime: Callable[..., SubagentRuntime],
) -> None:
    runtime = make_runtime(max_workers=2, retain_max=0)
    # The tools alone (no push delivery): the lead asks for the outcome itself.
    tools = make_background_tools([_worker()], runtime=runtime)
    agent = create_agent(ScriptedChatModel(router=by_turn([
        calls(start("worker", "fast job")), calls(call("pause")),
        calls(call("check_tasks")), calls(call("check_tasks")), "done",
    ])), tools=[*tools, pause_tool(0.4)])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    first, second = tool_results(result, "check_tasks")
    assert runtime.list_tasks() == []  # the runtime forgot it at once
    assert "completed after" in first.text and "fast answer" in first.text
    assert second.text == "No background tasks in this conversation."  # told: retention applies
    [started] = tool_results(result, "start_task")
    assert "Ask for its outcome with check_tasks or wait_tasks" in started.text


def test_a_lead_running_as_a_task_scopes_background_work_to_its_own_run(
    runtime: SubagentRuntime,
) -> None:
    def build_lead() -> Any:
        mw = SubagentMiddleware([_worker()], runtime=runtime, background=True)
        model = ScriptedChatModel(router=by_turn([calls(start("worker", "stuck job")),
                                                  "the lead answered"]))
        return create_agent(model, middleware=[mw])

    lead_config = SubagentConfig(name="lead", graph_factory=build_lead)
    lead = SubagentExecutor(lead_config, runtime=runtime).start("go", owner="ann")
    assert terminal(lead).status is SubagentStatus.COMPLETED
    [background] = [h for h in runtime.list_tasks() if h.background]
    assert background.thread_id == lead.task_id and background.owner == "ann"
    assert background.parent_id is None and lead.children == []
    # The lead's end did not stop it: it goes on (it may still be starting).
    assert wait_until(lambda: background.status is SubagentStatus.RUNNING)
    assert not background.cancel_event.is_set()
    assert runtime.cancel_thread(lead.task_id) == 1
    assert terminal(background).status is SubagentStatus.CANCELLED


def test_a_pushed_message_tells_failures_and_stops_with_their_reason(
    runtime: SubagentRuntime,
) -> None:
    def broken(messages: list[BaseMessage]) -> str:
        raise RuntimeError("model backend exploded")

    failing = SubagentConfig(name="flaky", model=ScriptedChatModel(router=broken))
    agent, _, _ = _lead(
        [calls(start("flaky", "try"), start("worker", "stuck job")),
         lambda m: calls(call("cancel_task", task_id=started_ids(m)[1], reason="enough")),
         calls(call("pause")), "done"],
        runtime, configs=[_worker(), failing], tools=[pause_tool(0.2)],
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}))
    texts = [m.text for m in pushed(result["messages"])]
    # The cancelled one was told by cancel_task's answer; the failure is pushed.
    assert len(texts) == 1 and "(flaky: a job) failed: RuntimeError: model backend exploded" in (
        texts[0]
    )
    assert "cancelled: enough" in tool_results(result, "cancel_task")[0].text
    assert isinstance(result["messages"][-1], AIMessage)
