"""`make demo` (python -m subagent_exec.demo) keeps doing what the README says."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_offline_and_stops_what_it_says() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "subagent_exec.demo", "--speed", "0.3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # Not a terminal: status changes are printed line by line, then the final tree.
    assert "Final statuses" in out
    assert re.search(r"run A's lead carried on: completed", out), out
    stop_b = re.search(r"Stop of run B: (\d+)/(\d+) unfinished tasks CANCELLED", out)
    assert stop_b is not None, out
    assert stop_b.group(1) == stop_b.group(2) and int(stop_b.group(2)) >= 2
    assert "the user stopped this researcher" in out
    assert "Traceback" not in done.stderr
