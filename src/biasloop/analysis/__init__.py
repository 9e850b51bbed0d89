"""Misalignment analysis of bias inheritance runs: values, group data, data distribution.

    >>> from biasloop.analysis import analyze_run  # doctest: +SKIP
    >>> analyze_run(Path("runs/inheritance-mitigations"))  # doctest: +SKIP

See :mod:`biasloop.analysis.run` for what is written where, and each module for
its formulas: :mod:`~biasloop.analysis.values`, :mod:`~biasloop.analysis.group_data`,
:mod:`~biasloop.analysis.distribution`.
"""

from biasloop.analysis.run import AnalysisSettings, analyze_run

__all__ = ["AnalysisSettings", "analyze_run"]
