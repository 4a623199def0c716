"""The intervals every result table puts around a mean or a difference of means.

One module, so every table reports the same kind of interval at the same :data:`CONFIDENCE`.  They are 95% Student
t intervals of a mean (:func:`t_interval`) and Welch t intervals of a difference of two means
(:func:`welch_interval`; :func:`cluster_welch_interval` when the values come in clusters, such as the essays of one
combination): closed-form, deterministic, and honest for the small n an essay has (two judges x two replicates is
n=4, where a bootstrap interval is far too narrow).  Intervals are not clipped to the 0..10 scale;
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
    return _difference_interval(
        mean1 - mean2, sd1**2 / safe1, safe1 - 1, sd2**2 / safe2, safe2 - 1, defined, confidence
    )


def cluster_welch_interval(
    clusters1: ArrayLike,
    var1: ArrayLike,
    clusters2: ArrayLike,
    var2: ArrayLike,
    difference: ArrayLike,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """The Welch interval of a difference of two means whose values come in clusters, elementwise: ``var1`` and
    ``var2`` are the cluster-robust variances of the two means (:func:`cluster_mean_variance`), and the
    Welch-Satterthwaite degrees of freedom count clusters (``clusters - 1`` per side) instead of values. NaN unless
    both sides have two clusters or more. With one value per cluster it is :func:`welch_interval` exactly."""
    c1, v1, c2, v2, difference = (
        np.asarray(v, dtype="float64") for v in (clusters1, var1, clusters2, var2, difference)
    )
    defined = (c1 >= 2) & (c2 >= 2)
    return _difference_interval(
        difference, v1, np.where(defined, c1, 2.0) - 1, v2, np.where(defined, c2, 2.0) - 1, defined, confidence
    )


def cluster_mean_variance(
    clusters: ArrayLike, n: ArrayLike, sum_sq: ArrayLike, sum_n_sum: ArrayLike, sum_n_sq: ArrayLike, mean: ArrayLike
) -> np.ndarray:
    """The cluster-robust (Liang-Zeger, with the small-sample factor C / (C - 1)) variance of a mean of ``n`` values
    in ``clusters`` clusters, elementwise: ``C / (C - 1) * sum_c (S_c - n_c * mean)^2 / n^2``, from the sums over its
    clusters of ``S_c^2`` (``sum_sq``), ``n_c * S_c`` (``sum_n_sum``) and ``n_c^2`` (``sum_n_sq``), ``S_c`` being a
    cluster's sum of values and ``n_c`` its count. NaN below two clusters. One value per cluster gives ``sd^2 / n``."""
    c, n, sq, ns, nn, mean = (np.asarray(v, dtype="float64") for v in (clusters, n, sum_sq, sum_n_sum, sum_n_sq, mean))
    out = np.full(np.shape(c), math.nan)
    two = c >= 2
    spread = np.maximum(sq - 2 * mean * ns + mean**2 * nn, 0)
    out[two] = (c[two] / (c[two] - 1)) * spread[two] / n[two] ** 2
    return out


def _difference_interval(
    difference: np.ndarray,
    v1: np.ndarray,
    df1: np.ndarray,
    v2: np.ndarray,
    df2: np.ndarray,
    defined: np.ndarray,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``difference -+ t(df) * sqrt(v1 + v2)`` with Welch-Satterthwaite ``df = (v1 + v2)^2 / (v1^2/df1 + v2^2/df2)``;
    the point difference when both variances are zero, NaN where not `defined`."""
    v1, v2 = np.where(defined, v1, 0.0), np.where(defined, v2, 0.0)
    se = np.sqrt(v1 + v2)
    spread = se > 0
    df = np.where(spread, (v1 + v2) ** 2 / np.where(spread, v1**2 / df1 + v2**2 / df2, 1.0), 1.0)
    half = np.where(spread, special.stdtrit(df, 0.5 + confidence / 2) * se, 0.0)
    half = np.where(defined, half, math.nan)
    return difference - half, difference + half


def moments(values: SeriesGroupBy) -> pd.DataFrame:
    """n, mean, sd and the t interval of each group."""
    out = pd.DataFrame({"n": values.size(), "mean": values.mean(), "sd": values.std(ddof=1)})
    out["ci_low"], out["ci_high"] = t_interval(out["n"], out["mean"], out["sd"])
    return out
