"""transferbench's harness: data, models, conditions, transfer, training, sweeps, results store.

The command line is the app layer's (``transferbench.cli``); this package never imports
``analysis``.

The public Python API for notebooks::

    from harness import load_curves
    curves = load_curves('results/quickstart')   # long-format DataFrame, one row per evaluation
"""

from harness.results import load_curves

__all__ = ['load_curves']
