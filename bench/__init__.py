"""Benchmarks: `python -m bench.bench_backends` (see docs/benchmarks.md)."""
