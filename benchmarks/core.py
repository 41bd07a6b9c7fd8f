"""The pieces every scenario shares: figures with targets, statistics, machine
info, an RSS sampler and small waiting helpers.

A *figure* is one measured quantity: either raw samples (reported as p50 and
p99, all samples kept in the JSON) or one value (a ratio, a count). A figure
may carry a *target*; its verdict is PASS/FAIL against that target, or
"info" for baselines and context numbers that have no target.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import psutil

Stat = Literal["p50", "p99", "max", "value"]
Op = Literal["<", "<=", "==", ">="]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Options:
    """What every scenario is told: quick (CI smoke) or full, and the seed."""

    quick: bool = False
    seed: int = 1234


@dataclass(frozen=True)
class Target:
    """``stat op threshold`` in the figure's unit, e.g. p99 < 10 ms."""

    stat: Stat
    op: Op
    threshold: float

    def describe(self, unit: str) -> str:
        label = "" if self.stat == "value" else f"{self.stat} "
        return f"{label}{self.op} {format_number(self.threshold)}{_unit_suffix(unit)}"

    def met_by(self, figure: Figure) -> bool:
        observed = figure.stat(self.stat)
        return observed is not None and _OPS[self.op](observed, self.threshold)


@dataclass
class Figure:
    """One measured quantity of a scenario."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    value: float | None = None
    target: Target | None = None
    note: str = ""

    def stat(self, key: Stat) -> float | None:
        if key == "value":
            return self.value
        if not self.samples:
            return None
        if key == "max":
            return max(self.samples)
        return percentile(self.samples, 50.0 if key == "p50" else 99.0)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.target.met_by(self) else "FAIL"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "unit": self.unit,
            "verdict": self.verdict,
            "target": self.target.describe(self.unit) if self.target else None,
            "note": self.note,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.samples:
            out.update(
                n=len(self.samples),
                p50=self.stat("p50"),
                p99=self.stat("p99"),
                min=min(self.samples),
                max=max(self.samples),
                mean=sum(self.samples) / len(self.samples),
                samples=self.samples,
            )
        return out


@dataclass
class ScenarioResult:
    """Everything one scenario measured, plus what it was run with."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    gc_pauses: dict[str, dict[str, float]] = field(default_factory=dict)
    #: 1/5/15-minute load averages before and after the scenario.
    load_average: list[list[float] | None] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "notes": self.notes,
            "duration_s": self.duration_s,
            "error": self.error,
            "gc_pauses": self.gc_pauses,
            "load_average": self.load_average,
            "figures": [f.to_json() for f in self.figures],
        }


# -- statistics -----------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: list[float]) -> float:
    return percentile(samples, 50.0)


def ms(seconds: float) -> float:
    return seconds * 1e3


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.4f}"
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _unit_suffix(unit: str) -> str:
    return "" if unit in ("", "ratio", "count") else f" {unit}"


def format_with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{format_number(value)}{_unit_suffix(unit)}"


# -- machine --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; the load average tells how shared it was."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_total_mib": round(psutil.virtual_memory().total / 2**20),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average_at_start": load_average(),
        "versions": {
            name: _version(name)
            for name in ("subagent-exec", "langgraph", "langchain-core", "langchain", "psutil")
        },
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def os_thread_count() -> int:
    return int(psutil.Process().num_threads())


def settled_thread_count(timeout: float = 2.0) -> int:
    """The OS thread count once it stopped changing for 50 ms.

    ``Thread.join`` returns before the OS thread is fully gone, so a count
    taken right after a shutdown may still see a thread on its way out.
    """
    deadline = time.monotonic() + timeout
    last = os_thread_count()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = os_thread_count()
        if now == last:
            return now
        last = now
    return last


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)
        self.peak_mib = rss_mib()

    def _loop(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self._interval):
            self.peak_mib = max(self.peak_mib, process.memory_info().rss / 2**20)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, rss_mib())


# -- waiting (harness only: never inside a measured interval) --------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark harness: timed out after {timeout}s waiting for {what}")
        time.sleep(0.0005)


def wait_event(event: threading.Event, timeout: float, what: str) -> None:
    if not event.wait(timeout):
        raise TimeoutError(f"benchmark harness: timed out after {timeout}s waiting for {what}")
