"""Benchmarks of the source checkout (not installed with the package): see :mod:`benchmarks.bench`."""
