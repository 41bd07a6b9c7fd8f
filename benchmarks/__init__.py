"""Benchmarks for subagent-exec: what users feel (stop latency, deadline
precision, hand-back latency, isolation, dispatch overhead, scale).

Run ``python -m benchmarks`` (or ``make bench``); ``--quick`` for a CI smoke
run, ``--only NAME`` for one scenario. See docs/performance.md.
"""
