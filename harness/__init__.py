"""transferbench's harness: data, models, transfer, training, sweeps, results store, CLI.

The public Python API for notebooks::

    from harness import load_curves
    curves = load_curves('results/quickstart')   # long-format DataFrame, one row per evaluation
"""

from harness.results import load_curves

__all__ = ['load_curves']
