"""Small-sample statistics for comparing benchmark cells over seeds.

Every function here takes plain sequences of per-seed values, silently drops NaNs (a metric
that was not computed for a run, e.g. a missing FID) and never raises on degenerate input:
too few values or zero variance give NaN results instead.

Notation: for a sample ``x_1..x_n`` the mean is ``x̄ = Σ x_i / n`` and the unbiased sample
variance is ``s² = Σ (x_i − x̄)² / (n − 1)``; ``t_{q,ν}`` is the ``q`` quantile of Student's t
distribution with ``ν`` degrees of freedom.

Comparisons between benchmark cells (:func:`compare_cells`) are paired by seed when both cells
have the same seeds: cells that share a seed share initial weights, data order, training noise
and evaluation noise (common random numbers), so the paired test is both correct and more
powerful; Welch's test is the fallback. :func:`holm_adjust` corrects a family of p-values.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

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


def welch_t_test(a: ArrayLike, b: ArrayLike,
                 alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch t-test of ``mean(a) == mean(b)`` (unequal variances), two-sided by default.

    With ``v_a = s_a² / n_a`` and ``v_b = s_b² / n_b``:

    * ``t = (ā − b̄) / √(v_a + v_b)``;
    * Welch–Satterthwaite degrees of freedom
      ``ν = (v_a + v_b)² / (v_a² / (n_a − 1) + v_b² / (n_b − 1))``;
    * ``p = 2 · P(T_ν > |t|)`` (``alternative="less"``: ``P(T_ν < t)``, i.e. the
      alternative ``mean(a) < mean(b)``; ``"greater"``: ``P(T_ν > t)``).

    Returns ``(t, ν, p)``; all three are NaN when either sample has fewer than two values or
    both samples have zero variance (the test is undefined there).
    """
    _check_alternative(alternative)
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
    return float(t), float(dof), t_p_value(float(t), float(dof), alternative)


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


# --------------------------------------------------------------------------- tests with a direction
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
"""``alternative`` of the tests below, as in scipy: the alternative hypothesis is
``mean(a) − mean(b) ≠ 0`` (``two-sided``), ``< 0`` (``less``) or ``> 0`` (``greater``)."""


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def t_p_value(t: float, dof: float, alternative: str = "two-sided") -> float:
    """p-value of a t statistic with ``dof`` degrees of freedom: ``2 P(T > |t|)``
    (``two-sided``), ``P(T < t)`` (``less``) or ``P(T > t)`` (``greater``); NaN in, NaN out."""
    _check_alternative(alternative)
    if not (np.isfinite(t) and np.isfinite(dof)):
        return float("nan")
    if alternative == "less":
        return float(sps.t.cdf(t, df=dof))
    if alternative == "greater":
        return float(sps.t.sf(t, df=dof))
    return 2.0 * float(sps.t.sf(abs(t), df=dof))


def _paired_arrays(a: ArrayLike | Mapping[Hashable, float],
                   b: ArrayLike | Mapping[Hashable, float]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(a_i, b_i)`` with both values present and not NaN.

    Mappings are matched by key (the seed): only keys present in both count. Sequences are
    matched by position and must have the same length.
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("paired values: pass two mappings (matched by seed) or two sequences")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) & set(b), key=repr)
        x = np.array([float(a[k]) for k in keys], dtype=float)
        y = np.array([float(b[k]) for k in keys], dtype=float)
    else:
        x = np.asarray(a, dtype=float).ravel()
        y = np.asarray(b, dtype=float).ravel()
        if x.shape != y.shape:
            raise ValueError(f"paired values: {x.size} values against {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def one_sample_t_test(values: ArrayLike, mu: float = 0.0,
                      alternative: str = "two-sided") -> tuple[float, float, float]:
    """Student t-test of ``mean(values) = mu``: ``t = (x̄ − mu) / (s / √n)``, ``ν = n − 1``.

    Returns ``(t, ν, p)`` with ``p`` for ``alternative`` (``less``: the mean is below ``mu``).
    NaNs are dropped; all three are NaN for fewer than two values or zero spread.
    """
    _check_alternative(alternative)
    x = _clean(values)
    if x.size < 2:
        return (float("nan"),) * 3
    se = float(x.std(ddof=1)) / np.sqrt(x.size)
    if not se > 0.0:
        return (float("nan"),) * 3
    t = (float(x.mean()) - mu) / se
    dof = float(x.size - 1)
    return float(t), dof, t_p_value(t, dof, alternative)


def paired_t_test(a: ArrayLike | Mapping[Hashable, float], b: ArrayLike | Mapping[Hashable, float],
                  alternative: str = "two-sided") -> tuple[float, float, float]:
    """Paired t-test of ``mean(a − b) = 0`` over matched replicates (seeds).

    ``a`` and ``b`` are either two mappings ``{seed: value}`` (matched by seed; seeds missing
    on either side are left out) or two aligned sequences. A pair with a NaN on either side is
    dropped. With the differences ``d_i = a_i − b_i`` (``n`` pairs):
    ``t = d̄ / (s_d / √n)``, ``ν = n − 1``, ``p`` for ``alternative`` (``less``: a below b).

    This is the test for common random numbers: cells that share a seed share initial
    weights, data order, training noise and evaluation noise, so ``a_i`` and ``b_i`` are
    correlated and the spread of ``d_i`` is what matters. Returns ``(t, ν, p)``; all NaN for
    fewer than two pairs or zero spread of the differences.
    """
    x, y = _paired_arrays(a, b)
    return one_sample_t_test(x - y, 0.0, alternative)


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (family-wise error rate control).

    With the ``m`` non-NaN p-values sorted ascending, ``p_(1) ≤ … ≤ p_(m)``:
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``. Rejecting ``p̃ < α`` controls the
    probability of any false rejection at ``α`` under arbitrary dependence. The adjusted values
    are monotone in the raw ones; NaN entries stay NaN and do not count in ``m``. Returns an
    array of the input's shape (ties keep their input order).
    """
    p = np.asarray(p_values, dtype=float)
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(flat))
    m = valid.size
    if m == 0:
        return out.reshape(p.shape)
    order = valid[np.argsort(flat[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    out[order] = np.maximum.accumulate(scaled)
    return out.reshape(p.shape)


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_cells`: ``a`` against ``b`` over seeds.

    ``test``: ``"paired t"`` or ``"Welch t"``; ``n_a``, ``n_b``: values used (equal, the
    number of pairs, for the paired test); ``mean_a``, ``mean_b``; ``effect = mean_a −
    mean_b`` (for the paired test the mean of the differences, which equals it);
    ``ci_low``, ``ci_high``: the two-sided ``confidence`` interval of that difference
    (whatever ``alternative``); ``t``, ``dof``, ``p`` (for ``alternative``). Undefined
    statistics are NaN.
    """

    test: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    effect: float
    ci_low: float
    ci_high: float
    t: float
    dof: float
    p: float
    alternative: str

    def as_dict(self) -> dict[str, object]:
        """Plain dict (JSON/CSV-friendly)."""
        return asdict(self)


PAIRED_T = "paired t"
WELCH_T = "Welch t"
ONE_SAMPLE_T = "one-sample t"


def _finite_by_key(values: Mapping[Hashable, float]) -> dict[Hashable, float]:
    return {k: float(v) for k, v in values.items() if not np.isnan(float(v))}


def compare_cells(a_by_seed: Mapping[Hashable, float], b_by_seed: Mapping[Hashable, float],
                  alternative: str = "two-sided", confidence: float = 0.95) -> Comparison:
    """Compare two cells' per-seed values: paired t when the seeds match, Welch t otherwise.

    NaN values are dropped first. When both cells then have the same seed set, with at least
    two seeds, the comparison is paired by seed (:func:`paired_t_test`; CI
    ``d̄ ± t_{(1+c)/2, n−1} s_d / √n``). Otherwise it is Welch's unequal-variance t-test
    (:func:`welch_t_test`, with ``alternative``; CI ``(ā − b̄) ± t_{(1+c)/2, ν} √(s_a²/n_a +
    s_b²/n_b)`` with the Welch–Satterthwaite ``ν``). The effect is ``mean(a) − mean(b)`` in the
    metric's units.
    """
    _check_alternative(alternative)
    a, b = _finite_by_key(a_by_seed), _finite_by_key(b_by_seed)
    x, y = np.array(list(a.values()), dtype=float), np.array(list(b.values()), dtype=float)
    mean_a = float(x.mean()) if x.size else float("nan")
    mean_b = float(y.mean()) if y.size else float("nan")
    quantile = 0.5 + confidence / 2.0
    nan = float("nan")
    if set(a) == set(b) and len(a) >= 2:
        keys = sorted(a, key=repr)
        d = np.array([a[k] - b[k] for k in keys])
        t, dof, p = one_sample_t_test(d, 0.0, alternative)
        half = (float(sps.t.ppf(quantile, df=d.size - 1)) * float(d.std(ddof=1)) / np.sqrt(d.size))
        effect = float(d.mean())
        return Comparison(PAIRED_T, d.size, d.size, mean_a, mean_b, effect, effect - half,
                          effect + half, t, dof, p, alternative)
    effect = mean_a - mean_b
    t, dof, p = welch_t_test(x, y, alternative)
    if np.isfinite(dof):
        half = float(sps.t.ppf(quantile, df=dof)) * np.sqrt(x.var(ddof=1) / x.size
                                                            + y.var(ddof=1) / y.size)
        low, high = effect - half, effect + half
    else:
        low = high = nan
    return Comparison(WELCH_T, int(x.size), int(y.size), mean_a, mean_b, effect, float(low),
                      float(high), t, dof, p, alternative)


def one_sample_comparison(values: ArrayLike, alternative: str = "two-sided",
                          confidence: float = 0.95) -> Comparison:
    """:class:`Comparison` of a sample of differences against zero (one-sample t): ``effect``
    is their mean with the t-CI ``d̄ ± t_{(1+c)/2, n−1} s / √n``; ``n_b = 0``, ``mean_b = 0``."""
    x = _clean(values)
    t, dof, p = one_sample_t_test(x, 0.0, alternative)
    mean, half = mean_ci(x, confidence)
    return Comparison(ONE_SAMPLE_T, int(x.size), 0, mean, 0.0, mean, mean - half, mean + half,
                      t, dof, p, alternative)
