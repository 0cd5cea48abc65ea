"""vdm.stats against hand-computed values and scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from vdm.stats import bootstrap_ci, mean_ci, welch_t_test

# Student-t quantiles with closed forms (hand-checkable):
#   ν = 1 (Cauchy): t_q = tan(π (q − 1/2))          → t_{0.975,1} = tan(0.475 π) = 12.7062
#   ν = 2:          t_q = (2q − 1) / √(2 q (1 − q))  → t_{0.975,2} = 0.95 / √0.04875 = 4.30265
T975_DOF1 = math.tan(0.475 * math.pi)
T975_DOF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def test_closed_form_quantiles_match_tables() -> None:
    assert T975_DOF1 == pytest.approx(12.7062, abs=1e-4)
    assert T975_DOF2 == pytest.approx(4.3027, abs=1e-4)


def test_mean_ci_three_values_by_hand() -> None:
    # x = [1, 2, 3]: mean 2, s² = ((−1)² + 0² + 1²)/2 = 1, s = 1, n = 3
    # half-width = t_{0.975,2} · 1/√3 = 4.30265 / 1.73205 = 2.48414
    mean, hw = mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert hw == pytest.approx(T975_DOF2 / math.sqrt(3))
    assert hw == pytest.approx(2.48414, abs=1e-5)


def test_mean_ci_two_values_by_hand() -> None:
    # x = [0, 2]: mean 1, s² = (1 + 1)/1 = 2, s/√n = √2/√2 = 1 → half-width = t_{0.975,1}
    mean, hw = mean_ci([0.0, 2.0])
    assert mean == pytest.approx(1.0)
    assert hw == pytest.approx(T975_DOF1)


def test_mean_ci_other_confidence_matches_scipy() -> None:
    x = np.array([0.3, 1.7, 2.2, 0.9, 1.1])
    lo, hi = sps.t.interval(0.9, df=4, loc=x.mean(), scale=sps.sem(x))
    mean, hw = mean_ci(x, confidence=0.9)
    assert mean == pytest.approx(x.mean())
    assert hw == pytest.approx((hi - lo) / 2)


def test_mean_ci_degenerate_inputs() -> None:
    assert mean_ci([5.0])[0] == 5.0 and math.isnan(mean_ci([5.0])[1])
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([1.0, float("nan"), 2.0, 3.0]) == pytest.approx(mean_ci([1.0, 2.0, 3.0]))
    assert mean_ci([4.0, 4.0, 4.0]) == (4.0, 0.0)


def test_welch_by_hand_unequal_variances() -> None:
    # a = [1, 2, 3]: mean 2, s² = 1 → v_a = 1/3;  b = [4, 6, 8]: mean 6, s² = 4 → v_b = 4/3
    # t = (2 − 6)/√(1/3 + 4/3) = −4/√(5/3) = −3.09839
    # ν = (5/3)² / ((1/3)²/2 + (4/3)²/2) = (25/9) / (17/18) = 50/17 = 2.94118
    t, dof, p = welch_t_test([1, 2, 3], [4, 6, 8])
    assert t == pytest.approx(-4 / math.sqrt(5 / 3))
    assert t == pytest.approx(-3.09839, abs=1e-5)
    assert dof == pytest.approx(50 / 17)
    ref = sps.ttest_ind([1, 2, 3], [4, 6, 8], equal_var=False)
    assert p == pytest.approx(ref.pvalue)
    assert 0.05 < p < 0.06  # ≈ 0.0552


def test_welch_by_hand_two_dof_closed_form_p() -> None:
    # a = [0, 2], b = [3, 5]: means 1 and 4, s² = 2 each → v_a = v_b = 1
    # t = −3/√2, ν = 2² / (1/1 + 1/1) = 2
    # for ν = 2 the two-sided p is 1 − |t|/√(2 + t²) = 1 − √(4.5/6.5) = 1 − 3/√13 = 0.167950
    t, dof, p = welch_t_test([0, 2], [3, 5])
    assert t == pytest.approx(-3 / math.sqrt(2))
    assert dof == pytest.approx(2.0)
    assert p == pytest.approx(1 - 3 / math.sqrt(13))
    assert p == pytest.approx(0.167950, abs=1e-6)


def test_welch_one_sample_without_spread() -> None:
    # a = [1, 1, 1]: v_a = 0;  b = [1, 2, 3]: v_b = 1/3
    # t = (1 − 2)/√(1/3) = −√3, ν = (1/3)² / ((1/3)²/2) = 2, p = 1 − √3/√5 = 0.225403
    t, dof, p = welch_t_test([1, 1, 1], [1, 2, 3])
    assert t == pytest.approx(-math.sqrt(3))
    assert dof == pytest.approx(2.0)
    assert p == pytest.approx(1 - math.sqrt(3 / 5))


@pytest.mark.parametrize("seed", range(5))
def test_welch_matches_scipy_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, size=3 + seed)
    b = rng.normal(0.5, 2.0, size=7 - seed)
    t, _, p = welch_t_test(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize(("a", "b"), [
    ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),  # zero variance in both
    ([1.0], [2.0, 3.0, 4.0]),  # n < 2
    ([], [2.0, 3.0]),
    ([1.0, float("nan")], [2.0, 3.0]),  # one value left after dropping NaN
])
def test_welch_degenerate_is_nan_without_warnings(a: list[float], b: list[float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = welch_t_test(a, b)
    assert all(math.isnan(v) for v in result)


def test_bootstrap_ci_is_deterministic_and_brackets_mean() -> None:
    x = [2.0, 2.5, 3.0, 3.5, 4.0]
    mean, lo, hi = bootstrap_ci(x, seed=1)
    assert mean == pytest.approx(3.0)
    assert lo < mean < hi
    assert bootstrap_ci(x, seed=1) == (mean, lo, hi)
    assert math.isnan(bootstrap_ci([1.0])[1])
