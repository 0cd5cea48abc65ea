"""vdm.reporting.stats against hand-computed values and scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from vdm.reporting.stats import (
    bootstrap_ci,
    compare_cells,
    holm_adjust,
    mean_ci,
    one_sample_comparison,
    one_sample_t_test,
    paired_t_test,
    welch_t_test,
)

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


# ------------------------------------------------------------------------------ paired / Holm
def test_paired_t_by_hand() -> None:
    # d = a − b = [1, 2, 3]: mean 2, s = 1 → t = 2 / (1/√3) = 2√3, ν = 2;
    # for ν = 2 the two-sided p is 1 − |t|/√(2 + t²) = 1 − 2√3/√14
    a, b = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]
    t, dof, p = paired_t_test(a, b)
    assert t == pytest.approx(2 * math.sqrt(3))
    assert dof == 2.0
    assert p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    assert paired_t_test(a, b, "greater")[2] == pytest.approx(p / 2)
    assert paired_t_test(a, b, "less")[2] == pytest.approx(1 - p / 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_paired_and_welch_match_scipy(seed: int, alternative: str) -> None:
    rng = np.random.default_rng(seed)
    common = rng.normal(size=5)  # common random numbers: a and b are correlated
    a, b = common + rng.normal(0.3, 0.5, 5), common + rng.normal(0.0, 0.5, 5)
    t, dof, p = paired_t_test(a, b, alternative)
    ref = sps.ttest_rel(a, b, alternative=alternative)
    assert (t, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert dof == 4
    t, _, p = welch_t_test(a, b[:4], alternative)
    ref = sps.ttest_ind(a, b[:4], equal_var=False, alternative=alternative)
    assert (t, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    t, dof, p = one_sample_t_test(a, 0.1, alternative)
    ref = sps.ttest_1samp(a, 0.1, alternative=alternative)
    assert (t, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def test_paired_t_matches_by_seed_and_drops_nan_pairs() -> None:
    a = {0: 2.0, 1: 4.0, 2: 6.0, 3: float("nan"), 7: 9.0}  # seed 7 has no partner
    b = {2: 3.0, 1: 2.0, 0: 1.0, 3: 0.0}
    assert paired_t_test(a, b) == paired_t_test([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert paired_t_test([1.0, np.nan, 3.0], [0.0, 5.0, 1.0]) == paired_t_test([1.0, 3.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="3 values against 2"):
        paired_t_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(TypeError):
        paired_t_test({0: 1.0}, [1.0])


def test_paired_t_degenerate_is_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in [([1.0], [2.0]), ([1.0, 2.0], [0.0, 1.0]), ([], [])]:  # n < 2, zero spread
            assert all(math.isnan(v) for v in paired_t_test(a, b))


def test_holm_by_hand() -> None:
    # m = 4 sorted: 0.01·4 = 0.04, 0.02·3 = 0.06, 0.03·2 = 0.06, 0.5·1 = 0.5 (monotone max)
    p = [0.03, 0.5, 0.01, float("nan"), 0.02]
    adjusted = holm_adjust(p)
    assert adjusted[[0, 1, 2, 4]] == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert math.isnan(adjusted[3])
    # step-down monotonicity: a later raw p smaller scaled than an earlier one takes the max
    assert holm_adjust([0.01, 0.011, 0.04]) == pytest.approx([0.03, 0.03, 0.04])
    assert holm_adjust([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([]).shape == (0,)
    assert math.isnan(holm_adjust([float("nan")])[0])
    assert holm_adjust([0.2]) == pytest.approx([0.2])


def test_compare_cells_paired_when_seeds_match() -> None:
    a = {0: 10.0, 1: 12.0, 2: 11.0}
    b = {0: 11.0, 1: 13.5, 2: 11.5}  # d = [−1, −1.5, −0.5]: mean −1, s = 0.5
    c = compare_cells(a, b, alternative="less")
    assert c.test == "paired t" and (c.n_a, c.n_b) == (3, 3)
    assert c.effect == pytest.approx(-1.0) == pytest.approx(c.mean_a - c.mean_b)
    half = T975_DOF2 * 0.5 / math.sqrt(3)
    assert (c.ci_low, c.ci_high) == (pytest.approx(-1 - half), pytest.approx(-1 + half))
    ref = sps.ttest_rel(list(a.values()), list(b.values()), alternative="less")
    assert c.p == pytest.approx(ref.pvalue) and c.dof == 2
    assert c.as_dict()["test"] == "paired t"


def test_compare_cells_welch_when_seeds_differ() -> None:
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 4.0, 1: 6.0, 3: 8.0}  # seed 3 instead of 2
    c = compare_cells(a, b, alternative="less")
    assert c.test == "Welch t" and (c.n_a, c.n_b) == (3, 3)
    ref = sps.ttest_ind([1, 2, 3], [4, 6, 8], equal_var=False, alternative="less")
    assert c.p == pytest.approx(ref.pvalue)
    # Welch–Satterthwaite CI: −4 ± t_{0.975, 50/17} √(5/3), as scipy's confidence_interval
    ci = ref.confidence_interval(0.95)
    assert c.effect == -4.0
    two_sided = sps.ttest_ind([1, 2, 3], [4, 6, 8], equal_var=False).confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == (pytest.approx(two_sided.low), pytest.approx(two_sided.high))
    assert math.isinf(ci.low)  # scipy's one-sided CI is one-sided; ours is always two-sided


def test_compare_cells_pairs_around_a_missing_value() -> None:
    """Issue 18's example: one NaN (a failed FID) must not unpair the comparison. Trained on
    the same seeds 0..4, A has no value on seed 4: paired on the 4 common seeds."""
    nan = float("nan")
    a = dict(enumerate([3.0, 3.5, 4.0, 4.5, nan]))
    b = dict(enumerate([3.2, 3.75, 4.1, 4.8, 6.0]))
    c = compare_cells(a, b, alternative="less")
    # d = [−0.2, −0.25, −0.1, −0.3]: d̄ = −0.2125, Σ(d − d̄)² = 0.021875, s_d² = 0.021875/3,
    # t = d̄ / (s_d/√4); ν = 3, where P(T_3 < t) = 1/2 + (θ + sin θ cos θ)/π, θ = atan(t/√3)
    s_d = math.sqrt(0.021875 / 3)
    t = -0.2125 / (s_d / 2)
    theta = math.atan(t / math.sqrt(3))
    assert c.test == "paired t" and (c.n_a, c.n_b) == (4, 4) and c.dof == 3
    assert c.effect == pytest.approx(-0.2125) and c.t == pytest.approx(t)
    assert c.p == pytest.approx(0.5 + (theta + math.sin(theta) * math.cos(theta)) / math.pi)
    assert round(c.p, 4) == 0.0078  # the number
    assert (c.mean_a, c.mean_b) == (pytest.approx(3.75), pytest.approx(3.9625))  # over the pairs
    half = sps.t.ppf(0.975, 3) * s_d / 2
    assert (c.ci_low, c.ci_high) == (pytest.approx(-0.2125 - half), pytest.approx(-0.2125 + half))
    # what the old rule (Welch over all finite values) said instead: effect −0.62, p = 0.162
    welch = sps.ttest_ind([3.0, 3.5, 4.0, 4.5], list(b.values()), equal_var=False,
                          alternative="less")
    assert round(welch.pvalue, 3) == 0.162 and c.p < welch.pvalue / 20
    # a NaN on either side, or both, drops only those seeds' pairs
    b_nan = {**b, 1: nan}
    assert compare_cells(a, b_nan).n_a == 3
    assert compare_cells(a, b_nan).p == pytest.approx(
        sps.ttest_rel([3.0, 4.0, 4.5], [3.2, 4.1, 4.8]).pvalue)


def test_compare_cells_same_seeds_with_under_two_pairs_stays_paired_and_undefined() -> None:
    # trained on the same seeds, one finite pair left: no test (never Welch on correlated runs)
    c = compare_cells({0: 1.0, 1: float("nan"), 2: 3.0}, {0: 1.5, 1: 2.5, 2: float("nan")})
    assert c.test == "paired t" and (c.n_a, c.n_b) == (1, 1) and c.effect == -0.5
    assert all(math.isnan(v) for v in (c.ci_low, c.ci_high, c.t, c.dof, c.p))
    one = compare_cells({0: 1.0}, {0: 2.0})
    assert one.test == "paired t" and one.effect == -1.0 and math.isnan(one.p)


def test_compare_cells_one_seed_each_on_different_seeds_is_welch_and_nan() -> None:
    c = compare_cells({0: 1.0}, {1: 2.0})
    assert c.test == "Welch t" and c.effect == -1.0
    assert all(math.isnan(v) for v in (c.ci_low, c.ci_high, c.t, c.dof, c.p))


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_compare_cells_intervals_are_scipys(confidence: float) -> None:
    a, b = {0: 1.0, 1: 2.5, 2: 2.0, 3: 4.0}, {0: 1.5, 1: 2.0, 2: 3.5, 3: 4.2}
    paired = compare_cells(a, b, "greater", confidence)
    ref = sps.ttest_rel(list(a.values()), list(b.values())).confidence_interval(confidence)
    assert (paired.ci_low, paired.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    b_other = {k + 10: v for k, v in b.items()}
    welch = compare_cells(a, b_other, "greater", confidence)
    ref = sps.ttest_ind(list(a.values()), list(b.values()),
                        equal_var=False).confidence_interval(confidence)
    assert welch.test == "Welch t"
    assert (welch.ci_low, welch.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))


def test_compare_cells_zero_spread_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = compare_cells({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})  # d = [0.5, 0.5]
        assert (same.ci_low, same.ci_high, same.effect) == (0.5, 0.5, 0.5)
        assert math.isnan(same.p)
        one_flat = compare_cells({0: 1.0, 1: 1.0, 2: 1.0}, {3: 1.0, 4: 2.0, 5: 3.0})
        assert one_flat.test == "Welch t" and one_flat.p == pytest.approx(1 - math.sqrt(3 / 5))
        assert mean_ci([4.0, 4.0]) == (4.0, 0.0)


def test_one_sample_comparison() -> None:
    c = one_sample_comparison([-0.1, -0.2, -0.3, float("nan")], alternative="less")
    assert c.test == "one-sample t" and c.n_a == 3 and c.effect == pytest.approx(-0.2)
    assert c.p == pytest.approx(sps.ttest_1samp([-0.1, -0.2, -0.3], 0.0, alternative="less").pvalue)
    assert c.ci_high == pytest.approx(-0.2 + T975_DOF2 * 0.1 / math.sqrt(3))


def test_bad_alternative_is_refused() -> None:
    with pytest.raises(ValueError, match="alternative"):
        welch_t_test([1, 2], [3, 4], "smaller")
