"""Small-sample statistics for comparing benchmark cells over seeds.

Every function here takes plain sequences of per-seed values, silently drops NaNs (a metric
that was not computed for a run, e.g. a missing FID) and never raises on degenerate input:
too few values or zero variance give NaN results instead.

Notation: for a sample ``x_1..x_n`` the mean is ``x̄ = Σ x_i / n`` and the unbiased sample
variance is ``s² = Σ (x_i − x̄)² / (n − 1)``; ``t_{q,ν}`` is the ``q`` quantile of Student's t
distribution with ``ν`` degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

ArrayLike = Sequence[float] | np.ndarray


def _clean(values: ArrayLike) -> np.ndarray:
    """Return ``values`` as a 1-D float array with NaNs removed."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean.

    ``half_width = t_{(1+c)/2, n−1} · s / √n`` with ``c = confidence`` (for ``c = 0.95`` the
    ``0.975`` quantile), so the interval is ``x̄ ± half_width``.

    Returns ``(nan, nan)`` for no values and ``(x̄, nan)`` for a single value (no spread
    estimate is possible from one seed).
    """
    x = _clean(values)
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan")
    s = float(x.std(ddof=1))
    t_crit = float(sps.t.ppf(0.5 + confidence / 2.0, df=n - 1))
    return mean, t_crit * s / np.sqrt(n)


def welch_t_test(a: ArrayLike, b: ArrayLike) -> tuple[float, float, float]:
    """Two-sided Welch t-test of ``mean(a) == mean(b)`` (unequal variances).

    With ``v_a = s_a² / n_a`` and ``v_b = s_b² / n_b``:

    * ``t = (ā − b̄) / √(v_a + v_b)``;
    * Welch–Satterthwaite degrees of freedom
      ``ν = (v_a + v_b)² / (v_a² / (n_a − 1) + v_b² / (n_b − 1))``;
    * ``p = 2 · P(T_ν > |t|)``.

    Returns ``(t, ν, p)``; all three are NaN when either sample has fewer than two values or
    both samples have zero variance (the test is undefined there).
    """
    x, y = _clean(a), _clean(b)
    nan3 = (float("nan"),) * 3
    if x.size < 2 or y.size < 2:
        return nan3
    va = float(x.var(ddof=1)) / x.size
    vb = float(y.var(ddof=1)) / y.size
    se2 = va + vb
    if not se2 > 0.0:
        return nan3
    t = (float(x.mean()) - float(y.mean())) / np.sqrt(se2)
    dof = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    p = 2.0 * float(sps.t.sf(abs(t), df=dof))
    return float(t), float(dof), p


def bootstrap_ci(
    values: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Draws ``n_resamples`` resamples of size ``n`` with replacement, takes each resample's mean
    ``x̄*`` and returns ``(x̄, lo, hi)`` with ``lo, hi`` the ``(1−c)/2`` and ``(1+c)/2``
    quantiles of ``x̄*``. With few seeds (n ≤ 5) this interval is too narrow; prefer
    :func:`mean_ci`. Returns NaN bounds for fewer than two values.
    """
    x = _clean(values)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_resamples, x.size), replace=True).mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)
