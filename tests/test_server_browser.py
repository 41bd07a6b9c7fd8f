"""The live run page in headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, installed by the set-up below when missing).

Screenshots go to ``artifacts/`` (gitignored) as test artifacts; each state the
page can be in is photographed and checked (texts readable in full, nothing wider
than the 1280 px window).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from subagent_exec import Budget, SubagentConfig, SubagentExecutor, SubagentRuntime
from subagent_exec.demo_agents import DEMO_PRICES, build_demo_lead_agent
from subagent_exec.server import SubagentRouter, create_router, demo_run_starter
from subagent_exec.testing import ScriptedChatModel

from .server_support import SETTLE, LiveServer, wait_for
from .setup_support import apt_install

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1280,900",
)
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
WINDOW_WIDTH = 1280
#: An answer longer than an event carries (2,000 characters), with line breaks
#: and one unbreakable 300-character token: the page must show all of it.
LONG_ANSWER = (
    "\n".join(f"Paragraph {i}: " + "the essay goes on and on " * 5 for i in range(1, 26))
    + "\nhttps://example.invalid/" + "x" * 300
    + "\nThe end of the long answer."
)
LONG_PROMPT = (
    "Compare solid-state batteries and heat pumps for a short briefing. "
    + "Cover chemistry, supply chains, costs per kWh, lifetimes and recycling. " * 8
)


@pytest.fixture(scope="session")
def chromium_installed(pytestconfig: pytest.Config) -> None:
    """Install Debian's chromium + chromium-driver if they are missing (CI
    machines start without a browser; nothing is downloaded at run time),
    saying so on the terminal first."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(
            f"{CHROMIUM} / {CHROMEDRIVER} missing; install them with "
            "`apt-get install -y chromium chromium-driver` (needs root)"
        )
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():  # past pytest's output capture
            print(f"\n{line}", flush=True)

    problem = apt_install(
        ["chromium", "chromium-driver"], "for the browser test of the run page", say=say
    )
    if problem:
        pytest.fail(problem)
    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


@pytest.fixture
def browser(
    chromium_installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(SETTLE)
    try:
        yield driver
    finally:
        driver.quit()


def odd_run_starter(runtime: SubagentRuntime, *, prompt: str, owner: str | None) -> str:
    """POST /runs for the page tests: the demo, or a run that fails / times out."""
    if prompt == "fail":
        def broken() -> Any:
            raise RuntimeError("the lead agent could not be built")

        config = SubagentConfig(name="broken-lead", graph_factory=broken)
    elif prompt == "long answer":
        config = SubagentConfig(
            name="essayist", model=ScriptedChatModel(default=LONG_ANSWER, latency=0.3)
        )
    elif prompt == "time out":
        config = SubagentConfig(
            name="hasty-lead", timeout_seconds=1.2,
            graph_factory=lambda: build_demo_lead_agent(runtime, speed=1.0),
        )
    elif prompt == "over budget":
        # The demo's lead with a budget for its whole tree: it stops mid-way.
        config = SubagentConfig(
            name="lead-agent", budget=Budget(max_tokens=900),
            graph_factory=lambda: build_demo_lead_agent(runtime, speed=1.0),
        )
    elif prompt.startswith("background"):
        # The demo with a news scout in the background, slowed down so that
        # the scout is still at work when the test stops things.
        return demo_run_starter(2.0, background=True)(runtime, prompt=prompt, owner=owner)
    else:
        return demo_run_starter(1.0)(runtime, prompt=prompt, owner=owner)
    return SubagentExecutor(config, runtime=runtime).execute_async(prompt, owner=owner)


@pytest.fixture
def page_server() -> Iterator[tuple[LiveServer, SubagentRuntime]]:
    # A grace period before the interrupt keeps "Stopping…" on screen long
    # enough to be seen; the chips must still all end "cancelled".
    runtime = SubagentRuntime(
        max_workers=8, max_depth=3, cancel_grace_seconds=1.5, cleanup_timeout_seconds=3.0,
        name="page", price_table=DEMO_PRICES,
    )
    app = FastAPI()
    app.include_router(create_router(runtime, start_run=odd_run_starter))
    server = LiveServer(app, graceful_seconds=0.5).start()
    yield server, runtime
    server.stop()
    assert runtime.shutdown(cancel=True, wait=True, timeout=30.0)


def chips(driver: Any) -> dict[str, tuple[str, str]]:
    """task id -> (data-status, visible text) of every chip on the page."""
    rows = driver.execute_script(
        """return [...document.querySelectorAll('.task')].map(t => {
             const chip = t.querySelector(':scope > .row .chip');
             return [t.dataset.taskId, chip.dataset.status, chip.textContent];
           });"""
    )
    return {task_id: (status, text) for task_id, status, text in rows}


def server_statuses(server: LiveServer) -> dict[str, str]:
    return {t["task_id"]: t["status"] for t in server.client().get("/tasks").json()["tasks"]}


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


@pytest.mark.timeout(900)  # the first browser test may install Chromium
def test_page_shows_the_tree_live_and_stop_turns_every_chip_cancelled(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    from selenium.webdriver.common.by import By

    server, _ = page_server
    browser.get(server.base_url + "/")
    wait_for(
        lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "live",
        "the page's event stream",
    )
    browser.find_element(By.ID, "start-run").click()
    # The tree fills in from the event stream: lead agent, researchers, fact-checkers.
    wait_for(
        lambda: sum(1 for s, _ in chips(browser).values() if s == "running") >= 5,
        "five running tasks on the page",
    )
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".name")]
    assert names[0] == "lead-agent" and {"researcher", "fact-checker"} <= set(names)
    nested = browser.find_elements(By.CSS_SELECTOR, ".children .children .task")
    assert nested, "grandchildren are drawn under their parent"
    elapsed = browser.find_element(By.CSS_SELECTOR, ".run > .row .elapsed").text
    assert elapsed.endswith(" s"), elapsed
    # "Stop all" is for threads with background tasks: this run has none.
    assert not browser.find_element(By.CSS_SELECTOR, ".run-head .stop-thread").is_displayed()
    screenshot(browser, "server-page-running.png")

    # Record every status each chip shows from here on, however briefly.
    browser.execute_script(
        """window.seenStatuses = {};
           new MutationObserver((mutations) => {
             for (const m of mutations) {
               const id = m.target.closest('.task').dataset.taskId;
               (window.seenStatuses[id] ||= []).push(m.target.dataset.status);
             }
           }).observe(document.getElementById('runs'),
                      {attributes: true, subtree: true, attributeFilter: ['data-status']});"""
    )
    stop = browser.find_element(By.CSS_SELECTOR, ".run > .row button.stop")
    stop.click()
    assert stop.text == "Stopping…" and not stop.is_enabled()
    # The stop reaches the whole tree: every sub-agent says so while unwinding
    # (the runtime's grace period keeps this state on screen).
    # Under load a chip may already have gone on to "cancelled" by the time the
    # last one shows "stopping"; the observer below checks each went through it.
    wait_for(
        lambda: all(s in ("stopping", "cancelled") for s, _ in chips(browser).values()),
        "every chip stopping (or already cancelled)",
    )
    buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, "button.stop") if b.is_displayed()]
    assert all(b.text == "Stopping…" and not b.is_enabled() for b in buttons)
    screenshot(browser, "server-page-stopping.png")

    wait_for(
        lambda: all(c == ("cancelled", "cancelled") for c in chips(browser).values()),
        "every chip cancelled",
    )
    assert not any(b.is_displayed() for b in browser.find_elements(By.CSS_SELECTOR, "button.stop"))
    assert set(chips(browser)) == set(server_statuses(server))
    assert set(server_statuses(server).values()) == {"cancelled"}
    seen = browser.execute_script("return window.seenStatuses")
    assert set(seen) == set(chips(browser))
    for statuses in seen.values():
        assert statuses[-2:] == ["stopping", "cancelled"], statuses  # never back to running
    before = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".elapsed")]
    time.sleep(0.5)
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".elapsed")] == before, (
        "elapsed times stop when the tasks end"
    )
    screenshot(browser, "server-page-cancelled.png")


@pytest.mark.timeout(900)
def test_cancelled_failed_and_timed_out_look_different(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    server, _ = page_server
    browser.get(server.base_url + "/")
    client = server.client()
    for prompt in ("fail", "time out", "a run to stop"):
        assert client.post("/runs", json={"prompt": prompt}).status_code == 202
    stoppable = [t for t in client.get("/tasks").json()["tasks"] if t["task"] == "a run to stop"]
    client.post(f"/tasks/{stoppable[0]['task_id']}/stop")
    wait_for(lambda: set(server_statuses(server).values()) <= TERMINAL, "all runs end", 20)
    wait_for(lambda: len(chips(browser)) == len(server_statuses(server)), "page caught up")
    shown = chips(browser)
    statuses = server_statuses(server)
    assert {s for s, _ in shown.values()} == {"failed", "timed_out", "cancelled"}
    for task_id, status in statuses.items():
        label = {"timed_out": "timed out"}.get(status, status)
        assert shown[task_id] == (status, label)
    details = browser.execute_script(
        """return Object.fromEntries([...document.querySelectorAll('.task')].map(t =>
             [t.querySelector(':scope > .row .chip').dataset.status,
              t.querySelector(':scope > .row .detail').textContent]));"""
    )
    assert "could not be built" in details["failed"]  # the error, from the event alone
    assert "exceeded timeout_seconds=1.2" in details["timed_out"]
    colours = browser.execute_script(
        """const out = {};
           for (const chip of document.querySelectorAll('.chip')) {
             const style = getComputedStyle(chip);
             out[chip.dataset.status] = [style.backgroundColor, style.color];
           }
           return out;"""
    )
    assert len({tuple(c) for c in colours.values()}) == 3, colours
    # "cancelled" is neutral: a grey, not a warning or error colour.
    red, green, blue = (int(v) for v in colours["cancelled"][0][4:-1].split(",")[:3])
    assert max(red, green, blue) - min(red, green, blue) < 24, colours["cancelled"]
    screenshot(browser, "server-page-statuses.png")


@pytest.mark.timeout(900)
def test_page_stays_correct_under_a_burst_of_events(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    server, _ = page_server
    browser.get(server.base_url + "/")
    client = server.client()
    wait_for(lambda: browser.execute_script("return window.subagentExecPage !== undefined"), "page")
    roots = [client.post("/runs").json()["task_id"] for _ in range(20)]
    time.sleep(0.8)  # let sub-agents start, so the stops cascade through trees
    for root in roots:
        client.post(f"/tasks/{root}/stop")
    wait_for(lambda: set(server_statuses(server).values()) <= TERMINAL, "all runs end", 30)
    expected = server_statuses(server)
    assert len(expected) > len(roots), "the runs had sub-agents when they were stopped"
    wait_for(
        lambda: {k: s for k, (s, _) in chips(browser).items()} == expected,
        "the page shows exactly the server's final statuses",
    )
    runs = browser.execute_script("return document.querySelectorAll('#runs > .run').length")
    assert runs == len(roots), "every run is a card; every sub-agent sits under its parent"


@pytest.mark.timeout(900)
def test_page_resyncs_after_the_server_restarts(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    def serve(port: int = 0) -> tuple[LiveServer, SubagentRuntime, SubagentRouter]:
        runtime = SubagentRuntime(max_workers=4, name="restart")
        router = create_router(runtime, start_run=odd_run_starter)
        app = FastAPI()
        app.include_router(router)
        return LiveServer(app, graceful_seconds=0.5, port=port).start(), runtime, router

    first, first_runtime, first_router = serve()
    browser.get(first.base_url + "/")
    old = first.client().post("/runs").json()["task_id"]
    wait_for(lambda: old in chips(browser), "the first server's run on the page")
    first_router.event_buffer.stop()  # as `subagent-exec serve` does on Ctrl-C
    first.stop()
    first_runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)
    # A new server on the same address numbers its events from 1 again: the
    # page's Last-Event-ID is stale, the stream says reset, the page re-reads.
    second, second_runtime, _ = serve(first.port)
    try:
        new = second.client().post("/runs").json()["task_id"]
        wait_for(
            lambda: old not in chips(browser) and new in chips(browser),
            "the old server's run gone, the new one shown",
        )
        assert set(chips(browser)) <= set(server_statuses(second))
        connection = browser.find_element(By.ID, "connection")
        assert connection.get_attribute("data-state") == "live"
        second.client().post(f"/tasks/{new}/stop")
        wait_for(
            lambda: {s for s, _ in chips(browser).values()} == {"cancelled"}, "the new run stops"
        )
    finally:
        second.stop()
        second_runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)


# -- texts in full, AI messages, clearing: one screenshot per state ---------------------

PAGE_FACTS = """
const doc = document.documentElement;
const clipped = (e) => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
const shown = (e) => e.getClientRects().length > 0;
return {
  innerWidth: window.innerWidth,
  pageOverflow: doc.scrollWidth - doc.clientWidth,
  runWidths: [...document.querySelectorAll('#runs > .run')].filter(shown)
    .map((e) => e.getBoundingClientRect().width),
  // Opened texts and opened AI messages: all of it must be visible.
  openClipped: [...document.querySelectorAll(
      '.clip-box.open .clip, .msgs:not([hidden]) .msg-body, .msgs:not([hidden]) .tool-arg')]
    .filter(shown).filter(clipped).map((e) => e.textContent.slice(0, 80)),
  // A text cut to one line must offer its "more" button.
  cutWithoutMore: [...document.querySelectorAll('.clip-box:not(.open)')].filter(shown)
    .filter((b) => clipped(b.querySelector('.clip')) && !shown(b.querySelector('.more')))
    .map((b) => b.textContent.slice(0, 80)),
};
"""


def page_facts(driver: Any) -> dict[str, Any]:
    facts: dict[str, Any] = driver.execute_script(PAGE_FACTS)
    return facts


def assert_readable(driver: Any) -> dict[str, Any]:
    """What every state must satisfy at 1280 px: no sideways scrolling, run cards
    using the width, opened texts shown whole, cut texts openable."""
    facts = page_facts(driver)
    assert facts["innerWidth"] == WINDOW_WIDTH, facts
    assert facts["pageOverflow"] <= 0, f"the page scrolls sideways: {facts}"
    # 24 px margins each side and a scrollbar: a card gets (almost) all the rest.
    assert all(w >= WINDOW_WIDTH - 2 * 24 - 20 for w in facts["runWidths"]), facts["runWidths"]
    assert facts["openClipped"] == [], facts["openClipped"]
    assert facts["cutWithoutMore"] == [], facts["cutWithoutMore"]
    return facts


def card(driver: Any, task_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#runs > .run[data-task-id="{task_id}"]')


def own_row(driver: Any, task_id: str, selector: str) -> Any:
    """An element of a task's own row (not of its children's)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(
        By.CSS_SELECTOR, f'.task[data-task-id="{task_id}"] > .row {selector}'
    )


def open_text(driver: Any, task_id: str, which: str) -> str:
    """Click a task's "more" for ``which`` (what / detail) and return the text shown."""
    box = own_row(driver, task_id, f".clip-box.{which}")
    if "open" not in (box.get_attribute("class") or ""):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.find_element("css selector", ".more").click()
    return str(box.find_element("css selector", ".clip").get_attribute("textContent"))


def visible_run_ids(driver: Any) -> set[str]:
    return set(driver.execute_script(
        """return [...document.querySelectorAll('#runs > .run')]
             .filter((e) => e.getClientRects().length > 0).map((e) => e.dataset.taskId);"""
    ))


@pytest.mark.timeout(900)
def test_page_texts_in_full_ai_messages_live_and_clearing_finished_runs(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    from selenium.webdriver.common.by import By

    server, runtime = page_server
    client = server.client()
    browser.get(server.base_url + "/")
    wait_for(
        lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "live",
        "the page's event stream",
    )
    run_a = client.post("/runs", json={"prompt": LONG_PROMPT}).json()["task_id"]
    essay = client.post("/runs", json={"prompt": "long answer"}).json()["task_id"]
    run_c = client.post("/runs", json={"prompt": "a run to stop"}).json()["task_id"]

    # 1. The running tree: each run labelled with its prompt and start time.
    wait_for(
        lambda: sum(1 for s, _ in chips(browser).values() if s == "running") >= 8,
        "both demo runs' trees running",
    )
    for root, prompt in ((run_a, LONG_PROMPT), (run_c, "a run to stop")):
        head = card(browser, root).find_element(By.CSS_SELECTOR, ":scope > .run-head")
        label = head.find_element(By.CSS_SELECTOR, ".run-label .clip")
        assert label.is_displayed() and label.text, "the run's label is shown"
        assert prompt.startswith(label.text.rstrip("…").strip()[:40])
        start = head.find_element(By.CSS_SELECTOR, ".run-start")
        assert start.is_displayed()
        shown_at = re.fullmatch(r"started (\d\d):(\d\d):(\d\d)", start.text)
        assert shown_at is not None, start.text
        holder = runtime.get(root)
        assert holder is not None and holder.started_at is not None
        started = holder.started_at.astimezone()
        shown_seconds = int(shown_at[1]) * 3600 + int(shown_at[2]) * 60 + int(shown_at[3])
        real_seconds = started.hour * 3600 + started.minute * 60 + started.second
        assert abs(shown_seconds - real_seconds) <= 1, (start.text, started)
        # The lead's row does not repeat the prompt: the label is the prompt.
        assert own_row(browser, root, ".clip-box.what .clip").text == ""
    # Long prompts are cut to one line, with "more"; opened, they are whole.
    researcher = next(
        t.task_id for t in runtime.list_tasks(parent_id=run_a) if t.subagent_name == "researcher"
    )
    assert own_row(browser, researcher, ".clip-box.what .more").is_displayed()
    assert_readable(browser)
    screenshot(browser, "page-1-running-tree.png")

    # 2. A stopped run: reasons name tasks by sub-agent name and short id.
    stop = card(browser, run_c).find_element(By.CSS_SELECTOR, ":scope > .row button.stop")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", stop)
    stop.click()
    assert stop.text == "Stopping…" and not stop.is_enabled()
    def tree_c() -> list[str]:
        found, stack = [], [run_c]
        while stack:
            holder = runtime.get(stack.pop())
            if holder is not None:
                found.append(holder.task_id)
                stack.extend(holder.children)
        return found

    wait_for(
        lambda: all(chips(browser).get(t) == ("cancelled", "cancelled") for t in tree_c()),
        "run C cancelled",
    )
    lead_ref = f"lead-agent #{run_c[:8]}"
    assert len(tree_c()) >= 3, "the stop reached the run's sub-agents"
    for task_id in tree_c()[1:]:
        reason = own_row(browser, task_id, ".clip-box.detail .clip").text
        assert reason.startswith(f"ancestor {lead_ref} was cancelled"), reason
        assert not re.search(r"[0-9a-f]{32}", reason), reason
    assert assert_readable(browser)
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", card(browser, run_c))
    screenshot(browser, "page-2-stopped.png")

    # 3. The lead's AI messages, opened while it runs: new ones appear as they come.
    wait_for(
        lambda: own_row(browser, run_a, "button.msgs-toggle").is_displayed(), "a first AI message"
    )
    own_row(browser, run_a, "button.msgs-toggle").click()
    messages = lambda: browser.find_elements(  # noqa: E731
        By.CSS_SELECTOR, f'.task[data-task-id="{run_a}"] > .row .msg'
    )
    wait_for(lambda: len(messages()) == 1, "the first AI message listed")
    first = messages()[0].text
    assert "→ task" in first and "subagent_type: researcher" in first, first
    assert LONG_PROMPT.strip()[-60:] in first, "tool arguments are shown in full"
    wait_for(lambda: len(messages()) == 2, "the second AI message, live", 30)
    assert "subagent_type: writer" in messages()[1].text
    assert messages()[0].text == first, "messages already shown stay as they are"
    toggle = own_row(browser, run_a, "button.msgs-toggle").text
    assert toggle.startswith("▾") and "2 AI messages" in toggle, toggle
    assert_readable(browser)
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", card(browser, run_a))
    screenshot(browser, "page-3-ai-messages.png")

    # 4. Answers opened in full, also past what an event carries (2,000 characters).
    wait_for(
        lambda: {runtime.get(run_a).status.value, runtime.get(essay).status.value}  # type: ignore[union-attr]
        == {"completed"},
        "run A and the essay complete", 30,
    )
    wait_for(lambda: chips(browser)[run_a][0] == "completed", "run A completed on the page")
    shown = open_text(browser, essay, "detail")
    full = client.get(f"/tasks/{essay}").json()["result"]
    assert len(full) > 2000 and full == LONG_ANSWER
    wait_for(
        lambda: open_text(browser, essay, "detail") == "→ " + full, "the whole essay, fetched"
    )
    assert shown.startswith("→ Paragraph 1:")
    answer = open_text(browser, run_a, "detail")
    assert answer == "→ " + runtime.get(run_a).result  # type: ignore[union-attr]
    open_text(browser, researcher, "what")
    facts = assert_readable(browser)
    assert len(facts["runWidths"]) == 3
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", card(browser, essay))
    screenshot(browser, "page-4-expanded-answer.png")

    # 5. Finished runs cleared from view, remembered by this browser, shown again.
    wait_for(lambda: set(server_statuses(server).values()) <= TERMINAL, "every task ended")
    clear = browser.find_element(By.ID, "clear-finished")
    wait_for(lambda: clear.text == "Clear finished (3)", "three finished runs to clear")
    clear.click()
    wait_for(lambda: visible_run_ids(browser) == set(), "every run cleared")
    assert browser.find_element(By.ID, "empty").is_displayed()
    browser.refresh()
    show = browser.find_element(By.ID, "show-cleared")
    wait_for(
        lambda: show.is_displayed() and show.text == "Show cleared (3)", "cleared after reload"
    )
    assert visible_run_ids(browser) == set()
    assert_readable(browser)
    screenshot(browser, "page-5-cleared.png")
    show.click()
    wait_for(lambda: visible_run_ids(browser) == {run_a, essay, run_c}, "cleared runs shown again")
    restore = card(browser, run_a).find_element(By.CSS_SELECTOR, ".run-head .clear-run")
    assert restore.text == "Restore"
    restore.click()
    browser.refresh()
    wait_for(lambda: visible_run_ids(browser) == {run_a}, "only the restored run after reload")
    # Opened after a reload, the AI messages come from GET /tasks/{id}.
    own_row(browser, run_a, "button.msgs-toggle").click()
    server_messages = client.get(f"/tasks/{run_a}").json()["ai_messages"]
    wait_for(lambda: len(messages()) == len(server_messages) == 3, "all three AI messages")
    assert messages()[2].text.endswith(server_messages[2]["text"].split("\n")[-1])
    assert_readable(browser)
    screenshot(browser, "page-6-restored.png")
    errors = [
        entry["message"] for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == [], "the page ran without a script error"


@pytest.mark.timeout(900)
def test_background_tasks_are_drawn_with_their_run_and_stop_all_stops_the_thread(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    from selenium.webdriver.common.by import By

    server, runtime = page_server
    client = server.client()
    browser.get(server.base_url + "/")
    wait_for(
        lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "live",
        "the page's event stream",
    )
    root = client.post("/runs", json={"prompt": "background briefing on heat pumps"}).json()[
        "task_id"
    ]
    wait_for(lambda: any(h.background for h in runtime.list_tasks()), "the scout started")
    [scout] = [h for h in runtime.list_tasks() if h.background]
    assert scout.parent_id is None and scout.thread_id == root

    # Drawn in its run's card, apart from the tree, marked "background".
    in_card = f'#runs > .run[data-task-id="{root}"] > .background-tasks'
    row = f'{in_card} .task[data-task-id="{scout.task_id}"]'
    wait_for(lambda: chips(browser).get(scout.task_id, ("",))[0] == "running", "scout running")
    assert browser.find_element(By.CSS_SELECTOR, f"{in_card} .bg-title").text == "Background"
    assert browser.find_element(By.CSS_SELECTOR, f"{row} > .row .bg-tag").is_displayed()
    assert own_row(browser, root, ".bg-tag").is_displayed() is False
    nested = f'.children .task[data-task-id="{scout.task_id}"]'
    assert not browser.find_elements(By.CSS_SELECTOR, nested), "not drawn as a child"
    assert browser.execute_script("return document.querySelectorAll('#runs > .run').length") == 1
    stop_all = card(browser, root).find_element(
        By.CSS_SELECTOR, ":scope > .run-head .stop-thread"
    )
    assert stop_all.is_displayed() and stop_all.text == "Stop all"
    wait_for(
        lambda: sum(1 for s, _ in chips(browser).values() if s == "running") >= 4,
        "the run's tree at work next to the scout",
    )
    assert_readable(browser)
    screenshot(browser, "page-7-background.png")

    # The lead's own Stop: its tree stops, its background task does not.
    own_row(browser, root, "button.stop").click()
    wait_for(lambda: chips(browser)[root][0] in ("stopping", "cancelled"), "the lead stops")
    assert chips(browser)[scout.task_id] == ("running", "running")
    assert not scout.cancel_event.is_set()
    assert stop_all.is_displayed()

    # "Stop all": every task of the thread, the scout included.
    stop_all.click()
    assert stop_all.text == "Stopping…" and not stop_all.is_enabled()
    wait_for(lambda: scout.is_terminal, "the scout ends")
    assert scout.status.value == "cancelled" and "Stop all" in (scout.cancel_reason or "")
    thread = [h.task_id for h in runtime.list_tasks(thread_id=root)]
    wait_for(
        lambda: all(chips(browser).get(t) == ("cancelled", "cancelled") for t in thread),
        "every task of the thread cancelled on the page",
    )
    wait_for(lambda: not stop_all.is_displayed(), "Stop all gone once nothing runs")
    assert_readable(browser)
    screenshot(browser, "page-8-background-stopped.png")
    errors = [
        entry["message"] for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == [], "the page ran without a script error"


@pytest.mark.timeout(900)
def test_tokens_and_cost_per_task_and_per_run_live_and_a_budget_stop(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    from selenium.webdriver.common.by import By

    server, runtime = page_server
    browser.get(server.base_url + "/")
    wait_for(
        lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "live",
        "the page's event stream",
    )
    root = server.client().post("/runs", json={"prompt": "over budget"}).json()["task_id"]
    holder = runtime.get(root)
    assert holder is not None

    def usage_texts() -> dict[str, str]:
        return dict(browser.execute_script(
            """return [...document.querySelectorAll('.task')].map(t =>
                 [t.dataset.taskId, t.querySelector(':scope > .row .usage').textContent]);"""
        ))

    # Live: tokens show up on rows while the run is still at work.
    wait_for(lambda: any(usage_texts().values()) and not holder.is_terminal, "tokens, live")
    head = card(browser, root).find_element(By.CSS_SELECTOR, ":scope > .run-head .run-usage")
    assert re.fullmatch(r"run: \d+ tokens · cost [\d.e-]+", head.text), head.text
    assert_readable(browser)
    screenshot(browser, "page-9-tokens-live.png")

    # The budget stops the run; each row shows what its task used, the head the total.
    wait_for(lambda: chips(browser).get(root, ("",))[0] == "failed", "the run stopped by it")
    tree = [h for h in runtime.list_tasks() if h.trace_id == holder.trace_id]
    for task in tree:
        terminal_status = task.wait(SETTLE)
        assert terminal_status
    wait_for(lambda: all(chips(browser).get(t.task_id, ("",))[0] in TERMINAL for t in tree),
             "every chip terminal")
    def shown(task_id: str) -> tuple[int, float] | None:
        found = re.fullmatch(r"(\d+) tokens · cost ([\d.e-]+)", usage_texts().get(task_id, ""))
        return (int(found[1]), float(found[2])) if found else None

    for task in tree:
        used = task.usage
        assert used.cost is not None
        wait_for(lambda t=task: shown(t.task_id) is not None
                 and shown(t.task_id)[0] == t.usage.total_tokens,  # type: ignore[index]
                 f"{task.subagent_name}'s usage")
        assert shown(task.task_id)[1] == pytest.approx(used.cost, rel=0.05)  # type: ignore[index]
    total = holder.tree_usage.total_tokens
    assert total > 900
    # Shown compact past a thousand, as the page does ("1.1k").
    expected = str(total) if total < 1000 else f"{total / 1000:.1f}k"
    wait_for(lambda: head.text.startswith(f"run: {expected} tokens · cost "),
             f"the run's total {total}, shown: {head.text}")
    run_cost = float(head.text.rsplit(" ", 1)[1])
    assert run_cost == pytest.approx(holder.tree_usage.cost, rel=0.05)
    detail = own_row(browser, root, ".clip-box.detail .clip").text
    assert "BudgetExceeded: max_tokens" in detail and "/900 (budget of task lead-agent #" in detail
    assert_readable(browser)
    screenshot(browser, "page-10-budget-stopped.png")
    errors = [
        entry["message"] for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == [], "the page ran without a script error"


@pytest.mark.timeout(900)
def test_page_lists_past_runs_from_the_store_after_a_restart(
    browser: Any, tmp_path: Path
) -> None:
    """A server restarted on the same store: the page shows the runs of before
    the restart with their final statuses, newest first, a page at a time
    ("Older runs"), and opening one shows its answer in full from the store."""
    from selenium.webdriver.common.by import By

    from subagent_exec import SqliteStore

    path = tmp_path / "tasks.db"
    before = SubagentRuntime(max_workers=4, name="before", store=SqliteStore(path))
    essay = before.get(odd_run_starter(before, prompt="long answer", owner=None))
    assert essay is not None and essay.wait(SETTLE) and essay.result == LONG_ANSWER
    quick = SubagentExecutor(
        SubagentConfig(name="quick", model=ScriptedChatModel(default="quick answer")),
        runtime=before,
    )
    older = [quick.execute(f"quick run {i}").task_id for i in range(21)]
    assert before.shutdown(wait=True, timeout=SETTLE)
    before.store.close()
    newest_first = [*reversed(older), essay.task_id]

    runtime = SubagentRuntime(max_workers=4, name="after", store=str(path))
    app = FastAPI()
    app.include_router(create_router(runtime, start_run=odd_run_starter))
    server = LiveServer(app, graceful_seconds=0.5).start()
    try:
        browser.get(server.base_url + "/")

        def shown_runs() -> list[str]:
            return list(browser.execute_script(
                "return [...document.querySelectorAll('#runs > .run')]"
                ".map((e) => e.dataset.taskId);"
            ))

        wait_for(lambda: shown_runs() == newest_first[:20], "the newest 20 past runs, in order")
        assert {s for s, _ in chips(browser).values()} == {"completed"}
        more = browser.find_element(By.ID, "older-runs")
        assert more.is_displayed()
        screenshot(browser, "server-page-past-runs.png")
        more.click()
        wait_for(lambda: shown_runs() == newest_first, "every past run after 'Older runs'")
        wait_for(lambda: not more.is_displayed(), "no older page left")
        # The essay's run: its lead task's full answer, read back from the store.
        wait_for(
            lambda: open_text(browser, essay.task_id, "detail").rstrip().endswith(
                "The end of the long answer."
            ),
            "the whole answer of a past run",
        )
        assert browser.find_element(By.ID, "connection").get_attribute("data-state") == "live"
        assert_readable(browser)
        screenshot(browser, "server-page-past-runs-all.png")
    finally:
        server.stop()
        runtime.shutdown(cancel=True, wait=True, timeout=SETTLE)


@pytest.mark.timeout(900)  # may be the first browser test: it may install Chromium
def test_resume_button_on_stopped_tasks_starts_a_task_that_goes_on(
    browser: Any, page_server: tuple[LiveServer, SubagentRuntime]
) -> None:
    from selenium.webdriver.common.by import By

    server, _ = page_server
    browser.get(server.base_url + "/")
    wait_for(
        lambda: browser.find_element(By.ID, "connection").get_attribute("data-state") == "live",
        "the page's event stream",
    )
    browser.find_element(By.ID, "start-run").click()
    wait_for(lambda: sum(1 for s, _ in chips(browser).values() if s == "running") >= 3,
             "the run at work")
    root = browser.find_element(By.CSS_SELECTOR, "#runs > .run").get_attribute("data-task-id")
    # No Resume while the tasks run.
    resumes = browser.find_elements(By.CSS_SELECTOR, "button.resume")
    assert not any(b.is_displayed() for b in resumes)
    browser.find_element(By.CSS_SELECTOR, ".run > .row button.stop").click()
    wait_for(lambda: all(s == "cancelled" for s, _ in chips(browser).values()),
             "every chip cancelled")
    # Every stopped task offers Resume.
    wait_for(lambda: sum(b.is_displayed() for b in browser.find_elements(
        By.CSS_SELECTOR, "button.resume")) == len(chips(browser)), "a Resume button per task")
    resume = browser.find_element(
        By.CSS_SELECTOR, f'.task[data-task-id="{root}"] > .row button.resume'
    )
    assert resume.text == "Resume" and resume.is_enabled()
    resume.click()

    def resumed_id() -> str | None:
        for task in server.client().get("/tasks").json()["tasks"]:
            if task["resumed_from"] == root:
                return str(task["task_id"])
        return None

    wait_for(lambda: resumed_id() is not None, "the resumed task on the server")
    new_id = resumed_id()
    drawn = f'.task[data-task-id="{new_id}"]'
    wait_for(lambda: bool(browser.find_elements(By.CSS_SELECTOR, drawn)),
             "the resumed task drawn on the page")
    wait_for(lambda: not resume.is_displayed(), "Resume gone once the task is resumed")
    statuses = server_statuses(server)
    assert statuses[root] == "cancelled"  # the stopped task's record never changes
    assert statuses[str(new_id)] in ("pending", "running", "completed")
    screenshot(browser, "server-page-resumed.png")
