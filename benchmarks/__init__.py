"""Benchmarks of the source checkout (not installed): see :mod:`benchmarks.bench`."""
