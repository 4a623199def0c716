"""The intervals every result table puts around a mean or a difference of means.

One module, so every table reports the same kind of interval at the same :data:`CONFIDENCE`.  They are 95% Student
t intervals of a mean (:func:`t_interval`) and Welch t intervals of a difference of two means
(:func:`welch_interval`): closed-form, deterministic, and honest for the small n an essay has (two judges x two
replicates is n=4, where a bootstrap interval is far too narrow).  Intervals are not clipped to the 0..10 scale;
they are NaN when n < 2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pandas.api.typing import SeriesGroupBy
from scipy import special  # stdtrit is t's quantile; scipy.stats costs ~0.5 s more to import

#: Coverage of every interval in the result tables.
CONFIDENCE = 0.95


def t_interval(
    n: ArrayLike, mean: ArrayLike, sd: ArrayLike, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval of a mean, elementwise: ``mean -+ t(1 - (1 - confidence) / 2, n - 1) * sd / sqrt(n)``.

    NaN where ``n < 2`` (no spread to estimate); a zero ``sd`` gives the point ``[mean, mean]``.
    """
    n, mean, sd = (np.asarray(v, dtype="float64") for v in (n, mean, sd))
    defined = n >= 2
    df = np.where(defined, n - 1, 1.0)
    half = special.stdtrit(df, 0.5 + confidence / 2) * sd / np.sqrt(np.where(defined, n, 1.0))
    half = np.where(defined, half, math.nan)
    return mean - half, mean + half


def welch_interval(
    n1: ArrayLike,
    mean1: ArrayLike,
    sd1: ArrayLike,
    n2: ArrayLike,
    mean2: ArrayLike,
    sd2: ArrayLike,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Welch t interval of ``mean1 - mean2``, elementwise (no equal-variance assumption).

    ``se = sqrt(sd1^2/n1 + sd2^2/n2)`` with Welch-Satterthwaite degrees of freedom
    ``se^4 / ((sd1^2/n1)^2/(n1-1) + (sd2^2/n2)^2/(n2-1))``.  NaN unless both groups have ``n >= 2``;
    when both spreads are zero the interval is the point difference.
    """
    n1, mean1, sd1, n2, mean2, sd2 = (np.asarray(v, dtype="float64") for v in (n1, mean1, sd1, n2, mean2, sd2))
    defined = (n1 >= 2) & (n2 >= 2)
    safe1, safe2 = np.where(defined, n1, 2.0), np.where(defined, n2, 2.0)
    v1, v2 = sd1**2 / safe1, sd2**2 / safe2
    se = np.sqrt(v1 + v2)
    spread = se > 0
    df = np.where(spread, (v1 + v2) ** 2 / np.where(spread, v1**2 / (safe1 - 1) + v2**2 / (safe2 - 1), 1.0), 1.0)
    half = np.where(spread, special.stdtrit(df, 0.5 + confidence / 2) * se, 0.0)
    half = np.where(defined, half, math.nan)
    difference = mean1 - mean2
    return difference - half, difference + half


def moments(values: SeriesGroupBy) -> pd.DataFrame:
    """n, mean, sd and the t interval of each group."""
    out = pd.DataFrame({"n": values.size(), "mean": values.mean(), "sd": values.std(ddof=1)})
    out["ci_low"], out["ci_high"] = t_interval(out["n"], out["mean"], out["sd"])
    return out
