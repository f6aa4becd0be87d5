"""Benchmarks with budgets: `make bench` runs them and records the figures in BENCHMARKS.md."""
