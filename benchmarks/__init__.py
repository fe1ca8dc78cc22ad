"""Latency benchmarks (pytest-benchmark) and the report that turns their JSON into docs/benchmarks.md."""
