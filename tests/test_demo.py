"""`make demo` (python -m subagent_exec.demo) keeps doing what the README says."""

from __future__ import annotations

import re
import subprocess
import sys

from subagent_exec._display import RICH_HINT

#: One line per change when piped: "<time> run A · researcher #1a2b3c4d · running ...".
CHANGE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} run [AB] · [a-z-]+ #[0-9a-f]{8} · [a-z]", re.M)


def run_demo(*python: str) -> str:
    done = subprocess.run(
        [sys.executable, *python, "--speed", "0.3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_demo_runs_offline_and_stops_what_it_says() -> None:
    out = run_demo("-m", "subagent_exec.demo")
    # Not a terminal: one self-explaining line per change, then the final tree.
    assert RICH_HINT not in out, "rich is installed with the test extra"
    assert len(CHANGE.findall(out)) >= 30, out
    assert re.search(r"run A · lead-agent #\w{8} · pending · new run: \"Compare", out), out
    assert re.search(r"run B · lead-agent #\w{8} · cancelled after [\d.]+ s: the user", out), out
    assert "Final statuses" in out
    final = out[out.index("Final statuses"):]
    assert re.search(r"^run A: Compare solid-state batteries .* · started \d\d:\d\d:\d\d$", final,
                     re.M), final
    assert re.search(r"^run B: Summarise the state of grid-scale storage", final, re.M), final
    assert re.search(r"run A's lead carried on: completed", out), out
    stop_b = re.search(r"Stop of run B: (\d+)/(\d+) unfinished tasks CANCELLED", out)
    assert stop_b is not None, out
    assert stop_b.group(1) == stop_b.group(2) and int(stop_b.group(2)) >= 2
    assert "the user stopped this researcher" in out
    assert re.search(r"Resume of run B: lead-agent #\w{8} went on from its last completed "
                     r"step: completed", out), out
    assert not re.search(r"[0-9a-f]{32}", out), "tasks are named by name and short id"
    # One background task next to the runs: run A's news scout, shown with run A.
    assert re.search(
        r'run A · news-scout #\w{8} · pending · started in the background: "Find the latest', out
    ), out
    assert re.search(r"run A · news-scout #\w{8} · completed after [\d.]+ s", out), out
    assert re.search(r"news-scout #\w{8} background .*completed|completed .*news-scout #\w{8} "
                     r"background", final), final
    assert re.search(r"Background task of run A: news-scout #\w{8} completed; its findings "
                     r"were pushed", out), out
    assert "Latest news: Two announcements this week" in out
    # Run C has a budget for its whole tree: when it is spent, the run stops.
    assert re.search(r"run C · lead-agent #\w{8} · failed after [\d.]+ s: BudgetExceeded: "
                     r"max_tokens \d+/900 \(budget of task lead-agent #\w{8}\)", out), out
    by_budget = re.search(r"Budget of run C: BudgetExceeded: max_tokens (\d+)/900 .*; (\d+)/(\d+) "
                          r"of its tasks stopped by it", out)
    assert by_budget is not None, out
    assert int(by_budget.group(1)) > 900 and int(by_budget.group(2)) >= 1
    used = dict(re.findall(r"^Run ([ABC]) used (\d+) tokens \(\d+ in, \d+ out\) in \d+ model "
                           r"calls, cost [\d.e-]+$", out, re.M))
    assert set(used) == {"A", "B", "C"}, out
    assert int(used["C"]) == int(by_budget.group(1))


def test_demo_without_rich_prints_plain_lines_and_a_hint() -> None:
    # As on a machine without the demo extra: importing rich fails.
    blocked = (
        "import sys; sys.modules['rich'] = None; "
        "from subagent_exec.demo import main; sys.exit(main(sys.argv[1:]))"
    )
    out = run_demo("-c", blocked)
    assert RICH_HINT in out.splitlines()
    assert len(CHANGE.findall(out)) >= 30, out
    final = out[out.index("Final statuses"):]
    assert re.search(r"^  run A: Compare solid-state .* · started \d\d:\d\d:\d\d$", final, re.M)
    assert re.search(r"^  └─ lead-agent #\w{8}  completed ", final, re.M), final
    assert re.search(r"^     ├─ news-scout #\w{8} \(background\)  completed ", final, re.M), final
    assert "Stop of run B:" in out
