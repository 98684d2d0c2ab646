"""Benchmarks (never run by the test suite). See README "Benchmarks"."""
