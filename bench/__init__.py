"""Benchmarks: each script is run by its `make bench-...` target."""
