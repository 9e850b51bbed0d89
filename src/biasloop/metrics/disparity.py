"""Between-group disparity: one gap and one ratio for both studies.

Both take one value per group (a group's quality, accuracy, selection rate …)
and follow one convention at the edges, so an SCPL run and an inheritance run
report the same number for the same group values:

    >>> gap([0.25, 0.75, 0.5])
    0.5
    >>> ratio([0.4, 0.8])
    0.5
    >>> ratio([0.0, 0.0])   # every group gets the same (nothing): parity
    1.0
    >>> import math; math.isnan(ratio([-0.2, 0.4]))   # a ratio of signed values means nothing
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NAN = float("nan")


def gap(values: Sequence[float]) -> float:
    """``gap = max_g v_g − min_g v_g`` over groups.

    NaN when there is no group or any group's value is NaN (undefined, not zero).
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0 or np.isnan(array).any():
        return NAN
    return float(array.max() - array.min())


def ratio(values: Sequence[float]) -> float:
    """``ratio = min_g v_g / max_g v_g``, the impact ratio (1 is parity).

    Defined for non-negative values. When every group's value is 0 the groups are
    treated alike, so ``0/0`` is taken as parity: ``ratio = 1`` (and ``gap = 0``).
    NaN when there is no group, any value is NaN, or any value is negative.
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0 or np.isnan(array).any() or array.min() < 0:
        return NAN
    top = float(array.max())
    if top == 0:
        return 1.0
    return float(array.min()) / top
