"""Small-sample statistics for comparing benchmark cells over seeds.

Every function here takes plain sequences of per-seed values, silently drops NaNs (a metric
that was not computed for a run, e.g. a missing FID) and never raises on degenerate input:
too few values or zero variance give NaN results instead.

Notation: for a sample ``x_1..x_n`` the mean is ``x̄ = Σ x_i / n`` and the unbiased sample
variance is ``s² = Σ (x_i − x̄)² / (n − 1)``; ``t_{q,ν}`` is the ``q`` quantile of Student's t
distribution with ``ν`` degrees of freedom.

The t-tests and their confidence intervals are scipy's (:func:`scipy.stats.ttest_1samp`,
:func:`scipy.stats.ttest_rel`, :func:`scipy.stats.ttest_ind` with ``equal_var=False``, their
``alternative=`` and ``.confidence_interval()``); this module adds the NaN handling, the
degenerate cases and the choice of test. Comparisons between benchmark cells
(:func:`compare_cells`) are paired by seed when both cells were trained on the same seeds:
cells that share a seed share initial weights, data order, training noise and evaluation
noise (common random numbers), so the paired test is both correct and more powerful. It pairs
the seeds where both cells have a value (a missing value drops that seed's pair, not the
pairing); Welch's test is used only when the cells were trained on different seeds.
:func:`holm_adjust` corrects a family of p-values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

ArrayLike = Sequence[float] | np.ndarray


def _clean(values: ArrayLike) -> np.ndarray:
    """Return ``values`` as a 1-D float array with NaNs removed."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


_NAN3 = (float("nan"),) * 3


def _scipy_t(test: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``test(*args, **kwargs)`` (a :mod:`scipy.stats` t-test) without its warning about a sample
    whose values are all equal ("precision loss ... catastrophic cancellation"): the callers
    below pass such a sample only where zero spread is a valid input (one Welch side, or a
    zero-width confidence interval), and refuse the undefined cases themselves."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message="Precision loss", category=RuntimeWarning)
        return test(*args, **kwargs)


def _t_dof_p(result: Any) -> tuple[float, float, float]:
    """``(t, ν, p)`` of a scipy ``TtestResult``."""
    return float(result.statistic), float(result.df), float(result.pvalue)


def _two_sided_interval(test: Callable[..., Any], *args: Any, confidence: float,
                        **kwargs: Any) -> tuple[float, float]:
    """Two-sided ``confidence`` interval of a scipy t-test's estimate (its
    ``.confidence_interval()``), whatever ``alternative`` the test itself uses."""
    interval = _scipy_t(test, *args, alternative="two-sided", **kwargs).confidence_interval(
        confidence)
    return float(interval.low), float(interval.high)


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean.

    ``half_width = t_{(1+c)/2, n−1} · s / √n`` with ``c = confidence`` (for ``c = 0.95`` the
    ``0.975`` quantile), so the interval is ``x̄ ± half_width``: half the width of
    :func:`scipy.stats.ttest_1samp`'s ``confidence_interval(c)``.

    Returns ``(nan, nan)`` for no values and ``(x̄, nan)`` for a single value (no spread
    estimate is possible from one seed); ``(x̄, 0)`` when all values are equal.
    """
    x = _clean(values)
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan")
    low, high = _two_sided_interval(sps.ttest_1samp, x, 0.0, confidence=confidence)
    return mean, (high - low) / 2.0


def _welch_defined(x: np.ndarray, y: np.ndarray) -> bool:
    """Welch's test needs two values a side and some spread: ``s_a²/n_a + s_b²/n_b > 0``."""
    return bool(x.size >= 2 and y.size >= 2
                and x.var(ddof=1) / x.size + y.var(ddof=1) / y.size > 0)


def welch_t_test(a: ArrayLike, b: ArrayLike,
                 alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch t-test of ``mean(a) == mean(b)`` (unequal variances), two-sided by default:
    :func:`scipy.stats.ttest_ind` with ``equal_var=False``.

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
    if not _welch_defined(x, y):
        return _NAN3
    return _t_dof_p(_scipy_t(sps.ttest_ind, x, y, equal_var=False, alternative=alternative))


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
    """Student t-test of ``mean(values) = mu`` (:func:`scipy.stats.ttest_1samp`):
    ``t = (x̄ − mu) / (s / √n)``, ``ν = n − 1``.

    Returns ``(t, ν, p)`` with ``p`` for ``alternative`` (``less``: the mean is below ``mu``).
    NaNs are dropped; all three are NaN for fewer than two values or zero spread.
    """
    _check_alternative(alternative)
    x = _clean(values)
    if x.size < 2 or not x.std(ddof=1) > 0.0:
        return _NAN3
    return _t_dof_p(_scipy_t(sps.ttest_1samp, x, mu, alternative=alternative))


def paired_t_test(a: ArrayLike | Mapping[Hashable, float], b: ArrayLike | Mapping[Hashable, float],
                  alternative: str = "two-sided") -> tuple[float, float, float]:
    """Paired t-test of ``mean(a − b) = 0`` over matched replicates (seeds):
    :func:`scipy.stats.ttest_rel` on the pairs.

    ``a`` and ``b`` are either two mappings ``{seed: value}`` (matched by seed; seeds missing
    on either side are left out) or two aligned sequences. A pair with a NaN on either side is
    dropped. With the differences ``d_i = a_i − b_i`` (``n`` pairs):
    ``t = d̄ / (s_d / √n)``, ``ν = n − 1``, ``p`` for ``alternative`` (``less``: a below b).

    This is the test for common random numbers: cells that share a seed share initial
    weights, data order, training noise and evaluation noise, so ``a_i`` and ``b_i`` are
    correlated and the spread of ``d_i`` is what matters. Returns ``(t, ν, p)``; all NaN for
    fewer than two pairs or zero spread of the differences.
    """
    _check_alternative(alternative)
    x, y = _paired_arrays(a, b)
    if x.size < 2 or not (x - y).std(ddof=1) > 0.0:
        return _NAN3
    return _t_dof_p(_scipy_t(sps.ttest_rel, x, y, alternative=alternative))


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

    ``test``: ``"paired t"``, ``"Welch t"`` or ``"one-sample t"``; ``n_a``, ``n_b``: values
    used (both the number of pairs for the paired test); ``mean_a``, ``mean_b``: means over
    those values (for the paired test over the paired seeds only); ``effect = mean_a −
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


def compare_cells(a_by_seed: Mapping[Hashable, float], b_by_seed: Mapping[Hashable, float],
                  alternative: str = "two-sided", confidence: float = 0.95) -> Comparison:
    """Compare two cells' per-seed values: paired t when the cells were trained on the same
    seeds, Welch t when they were trained on different seeds.

    The seeds a cell was trained on are the keys of its mapping; a NaN value (a metric that
    was not computed for that run, e.g. a failed FID) keeps its seed in the cell.

    * **Same seeds** (``set(a_by_seed) == set(b_by_seed)``): paired by seed over the ``n``
      seeds where both values are finite (:func:`paired_t_test`, i.e.
      :func:`scipy.stats.ttest_rel`); a NaN on one side drops that seed's pair only.
      ``n_a = n_b = n``; ``mean_a``, ``mean_b`` are the means over those ``n`` seeds and the
      effect ``d̄ = mean_a − mean_b`` is the mean difference, with the CI
      ``d̄ ± t_{(1+c)/2, n−1} s_d / √n``. With fewer than two pairs the test is undefined
      (NaN ``t``, ``dof``, ``p``).
    * **Different seeds**: Welch's unequal-variance t-test over each cell's finite values
      (:func:`welch_t_test`, i.e. :func:`scipy.stats.ttest_ind` with ``equal_var=False``);
      effect ``ā − b̄``, CI ``(ā − b̄) ± t_{(1+c)/2, ν} √(s_a²/n_a + s_b²/n_b)`` with the
      Welch–Satterthwaite ``ν``.

    ``p`` is for ``alternative``; the CI (scipy's ``confidence_interval(confidence)``) is
    always two-sided. The effect is in the metric's units.
    """
    _check_alternative(alternative)
    if set(a_by_seed) == set(b_by_seed):
        x, y = _paired_arrays(a_by_seed, b_by_seed)
        n = int(x.size)
        mean_a, mean_b = (float(v.mean()) if n else float("nan") for v in (x, y))
        effect = float((x - y).mean()) if n else float("nan")
        low = high = float("nan")
        if n >= 2:  # a zero spread gives the zero-width interval [d̄, d̄]
            low, high = _two_sided_interval(sps.ttest_rel, x, y, confidence=confidence)
        t, dof, p = paired_t_test(x, y, alternative)
        return Comparison(PAIRED_T, n, n, mean_a, mean_b, effect, low, high, t, dof, p,
                          alternative)
    x = _clean(list(a_by_seed.values()))
    y = _clean(list(b_by_seed.values()))
    mean_a = float(x.mean()) if x.size else float("nan")
    mean_b = float(y.mean()) if y.size else float("nan")
    low = high = float("nan")
    if _welch_defined(x, y):
        low, high = _two_sided_interval(sps.ttest_ind, x, y, equal_var=False,
                                        confidence=confidence)
    t, dof, p = welch_t_test(x, y, alternative)
    return Comparison(WELCH_T, int(x.size), int(y.size), mean_a, mean_b, mean_a - mean_b, low,
                      high, t, dof, p, alternative)


def one_sample_comparison(values: ArrayLike, alternative: str = "two-sided",
                          confidence: float = 0.95) -> Comparison:
    """:class:`Comparison` of a sample of differences against zero (one-sample t,
    :func:`scipy.stats.ttest_1samp`): ``effect`` is their mean with the t-CI
    ``d̄ ± t_{(1+c)/2, n−1} s / √n``; ``n_b = 0``, ``mean_b = 0``."""
    x = _clean(values)
    t, dof, p = one_sample_t_test(x, 0.0, alternative)
    mean, half = mean_ci(x, confidence)
    return Comparison(ONE_SAMPLE_T, int(x.size), 0, mean, 0.0, mean, mean - half, mean + half,
                      t, dof, p, alternative)
