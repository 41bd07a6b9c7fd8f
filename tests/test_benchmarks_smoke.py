"""Smoke test of the benchmark harness (``python -m benchmarks``).

Checks that the quick mode runs end to end in a subprocess and writes a
well-formed JSON report. Timings are deliberately not checked: speed
targets belong to the benchmarks themselves, and this machine is shared.
The subprocess run is a bounded smoke test (two fast scenarios, a few
seconds, mostly interpreter and LangChain start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package lives at the repository root

from benchmarks.cli import render_table, select  # noqa: E402
from benchmarks.core import Figure, Target, percentile  # noqa: E402

VERDICTS = {"PASS", "FAIL", "info"}


def _run_benchmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


def test_quick_run_writes_a_complete_json_report(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = _run_benchmarks(
        "--quick", "--only", "stop_pending,stop_tree,views,start_many", "--output", str(output)
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text(encoding="utf-8"))

    assert report["schema"] == 1
    assert report["mode"] == "quick"
    machine = report["machine"]
    for key in ("cpu_count", "python", "platform", "cpu_model", "versions"):
        assert machine[key], key
    assert list(report["scenarios"]) == ["stop_pending", "stop_tree", "views", "start_many"]
    assert report["gc_freeze"] is True
    for scenario in report["scenarios"].values():
        assert scenario["error"] is None
        assert set(scenario["gc_pauses"]) == {"gen0", "gen1", "gen2"}
        assert scenario["figures"], scenario["name"]
        for figure in scenario["figures"]:
            assert figure["verdict"] in VERDICTS
            assert ("value" in figure) != ("samples" in figure), figure["name"]
            if "samples" in figure:
                assert figure["n"] == len(figure["samples"]) > 0
                assert figure["min"] <= figure["p50"] <= figure["p99"] <= figure["max"]
    # Every run reports its floors next to the figures they bound (issue 13).
    names = {
        key: [f["name"] for f in scenario["figures"]]
        for key, scenario in report["scenarios"].items()
    }
    for shape in ("1+5+25", "1+10+100", "chain of 10"):
        assert f"{shape}: tree stop / floor (medians)" in names["stop_tree"]
    for n in (8, 64, 256):
        assert f"{n} at once: sub-agents / floor (medians)" in names["start_many"]
    assert "execute() of a trivial sub-agent, no reader (baseline)" in names["views"]
    assert "execute() of a trivial sub-agent, while stats() loops" in names["views"]
    for scenario in report["scenarios"].values():
        assert len(scenario["load_average"]) == 2
    # The table printed to stdout names every scenario run.
    assert "2. stop a PENDING sub-agent" in done.stdout
    assert "3. stop a tree (1+5+25, 1+10+100, chain of 10)" in done.stdout


def test_unknown_scenario_is_refused_by_name() -> None:
    done = _run_benchmarks("--only", "no_such_scenario")
    assert done.returncode == 2
    assert "no_such_scenario" in done.stderr
    assert "stop_running" in done.stderr  # the message lists the known names


def test_select_keeps_the_issue_order() -> None:
    assert [s.name for s in select(["deadline,stop_running"])] == ["stop_running", "deadline"]
    with pytest.raises(ValueError, match="bogus"):
        select(["bogus"])


def test_percentile_interpolates_like_numpy() -> None:
    samples = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_verdicts_follow_the_target() -> None:
    fast = Figure("stop", "ms", samples=[1.0] * 99 + [20.0], target=Target("p99", "<", 10.0))
    slow = Figure("stop", "ms", samples=[1.0] * 98 + [20.0] * 2, target=Target("p99", "<", 10.0))
    assert fast.verdict == "PASS"
    assert slow.verdict == "FAIL"
    assert Figure("ratio", "ratio", value=1.0).verdict == "info"
    assert Figure("n", "count", value=0.0, target=Target("value", "==", 0)).verdict == "PASS"


def test_render_table_marks_a_crashed_scenario() -> None:
    report = {
        "scenarios": {
            "x": {"title": "X", "error": "Traceback ...", "figures": []},
        }
    }
    table = render_table(report, markdown=True)
    assert "| X | (crashed, see stderr/JSON) |" in table
    assert "ERROR" in table


def test_the_ab_harness_runs_and_prints_each_variant() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", "--quick", "wakeups", "deadline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "woken by every event" in done.stdout and "woken by the end only" in done.stdout
    assert "fresh loops" in done.stdout and "worker loops" in done.stdout
    refused = _run_benchmarks_ab("nonsense")
    assert refused.returncode == 2 and "nonsense" in refused.stderr


def _run_benchmarks_ab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
