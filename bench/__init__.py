"""Benchmark scripts; their recorded results are under bench/results/ and docs/benchmarks.md."""
