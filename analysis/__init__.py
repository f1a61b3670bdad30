"""transferbench's analysis: start, slope, asymptote, negative transfer and Yosinski's effects.

Pure functions on long-format curves (``run_id, condition, n_layers, fine_tuned, source, target,
seed, step, accuracy[, loss]``) from the harness or from anywhere else::

    import analysis
    curves = analysis.read_curves('curves.csv')        # or a results directory
    result = analysis.analyze(curves, threshold=0.9, k=10)
    analysis.write_report(result, 'analysis_out')      # CSV, markdown, LaTeX, figures

Importing this package does not import matplotlib or seaborn (see :mod:`analysis.figures`).
See analysis/README.md for every formula and statistical choice.
"""

from analysis.curves import read_curves, validate_curves
from analysis.report import AnalysisResult, analyze, final_accuracy_table, write_report

__all__ = ['AnalysisResult', 'analyze', 'final_accuracy_table', 'read_curves', 'validate_curves',
           'write_report']
