"""Tests for the fixed-horizon A/B test, against values computed independently with scipy."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, norm

from mlops_assets.ml.abtest import (
    ABPlan,
    ab_decision,
    ab_decision_stratified,
    minimum_sample_size,
    plan_ab_test,
    stratified_ztest,
    two_proportion_ztest,
)

pytestmark = pytest.mark.core


def _textbook_z(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    """Pooled two-proportion z and its two-sided p-value, written out independently of the module."""
    p_a, p_b = x_a / n_a, x_b / n_b
    p = (x_a + x_b) / (n_a + n_b)
    z = (p_b - p_a) / math.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))
    return z, 2 * (1 - norm.cdf(abs(z)))


@pytest.mark.parametrize(
    ("x_a", "n_a", "x_b", "n_b"),
    [(100, 1000, 130, 1000), (480, 5000, 530, 5100), (30, 40, 12, 35), (7, 9000, 25, 11000)],
)
def test_ztest_matches_textbook_formula_and_chi_square(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    result = two_proportion_ztest(x_a, n_a, x_b, n_b)
    z, p = _textbook_z(x_a, n_a, x_b, n_b)
    chi2, chi2_p, dof, _ = chi2_contingency(np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]]), correction=False)

    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert dof == 1
    assert result.z**2 == pytest.approx(chi2, rel=1e-9)  # z² = Pearson χ² without continuity correction
    assert result.p_value == pytest.approx(chi2_p, rel=1e-9)
    assert result.difference == pytest.approx(x_b / n_b - x_a / n_a)
    assert (result.rate_a, result.rate_b) == (x_a / n_a, x_b / n_b)


def test_ztest_direction_and_confidence_interval() -> None:
    result = two_proportion_ztest(100, 1000, 130, 1000, alpha=0.05)
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)  # unpooled, for the interval

    assert result.z > 0  # B (challenger) better: positive z
    assert (result.ci_low, result.ci_high) == pytest.approx((0.03 - 1.959963985 * se, 0.03 + 1.959963985 * se))
    assert two_proportion_ztest(130, 1000, 100, 1000).z == pytest.approx(-result.z)
    wider = two_proportion_ztest(100, 1000, 130, 1000, alpha=0.01)
    assert wider.ci_low < result.ci_low and wider.ci_high > result.ci_high


def test_ztest_without_variation_is_no_evidence() -> None:
    for x in (0, 50):
        result = two_proportion_ztest(x, 50, x, 50)
        assert (result.z, result.p_value) == (0.0, 1.0)


@given(
    n_a=st.integers(1, 5000),
    n_b=st.integers(1, 5000),
    frac_a=st.floats(0, 1),
    frac_b=st.floats(0, 1),
)
def test_ztest_agrees_with_chi_square_everywhere(n_a: int, n_b: int, frac_a: float, frac_b: float) -> None:
    x_a, x_b = round(frac_a * n_a), round(frac_b * n_b)
    result = two_proportion_ztest(x_a, n_a, x_b, n_b)
    assert 0.0 <= result.p_value <= 1.0
    if 0 < x_a + x_b < n_a + n_b:  # chi-square is undefined on a table with an empty column
        chi2, _, _, _ = chi2_contingency(np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]]), correction=False)
        assert result.z**2 == pytest.approx(chi2, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize(
    "bad", [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 10, 1, 0), (0, 0, 0, 0)], ids=["neg", "over", "empty_b", "empty"]
)
def test_ztest_refuses_impossible_counts(bad: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        two_proportion_ztest(*bad)


def test_minimum_sample_size_matches_r_power_prop_test() -> None:
    # R documentation of power.prop.test: power.prop.test(p1 = .50, p2 = .75, power = .90)  =>  n = 76.7
    assert minimum_sample_size(0.50, 0.25, alpha=0.05, power=0.90) == 77


@pytest.mark.parametrize(("p1", "mde", "alpha", "power"), [(0.1, 0.02, 0.05, 0.8), (0.2, 0.05, 0.01, 0.9)])
def test_minimum_sample_size_matches_formula_and_delivers_power(
    p1: float, mde: float, alpha: float, power: float
) -> None:
    p2 = p1 + mde
    p_bar = (p1 + p2) / 2
    z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
    expected = ((z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / mde) ** 2

    n = minimum_sample_size(p1, mde, alpha=alpha, power=power)

    assert n == math.ceil(expected)

    def achieved_power(k: int) -> float:
        # Power of the pooled test at n = k per arm (normal approximation), as R's power.prop.test computes it.
        return float(
            norm.cdf(
                (math.sqrt(k) * mde - z_a * math.sqrt(2 * p_bar * (1 - p_bar)))
                / math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
            )
        )

    assert achieved_power(n) >= power > achieved_power(n - 1)  # the smallest n that delivers the power


@pytest.mark.parametrize(("p1", "mde"), [(0.0, 0.1), (1.0, 0.1), (0.5, 0.0), (0.5, -0.1), (0.95, 0.05)])
def test_minimum_sample_size_refuses_degenerate_inputs(p1: float, mde: float) -> None:
    with pytest.raises(ValueError):
        minimum_sample_size(p1, mde)


def test_decision_continues_before_the_horizon_even_when_significant() -> None:
    plan = plan_ab_test(0.10, 0.02)
    half = plan.n_per_arm // 2

    # A huge early difference is still "continue": deciding on it would be peeking.
    early = ab_decision(plan, round(0.10 * half), half, round(0.20 * half), half)
    assert early.decision == "continue" and early.winner is None
    assert early.test is not None and early.test.p_value < plan.alpha
    assert early.progress == pytest.approx(half / plan.n_per_arm)

    # One arm at the horizon is not enough.
    lopsided = ab_decision(plan, 100, plan.n_per_arm, 150, plan.n_per_arm - 1)
    assert lopsided.decision == "continue"

    nothing = ab_decision(plan, 0, 0, 0, 0)
    assert (nothing.decision, nothing.progress, nothing.test) == ("continue", 0.0, None)


def test_decision_declares_the_better_arm_after_the_horizon() -> None:
    plan = plan_ab_test(0.10, 0.02)
    n = plan.n_per_arm

    challenger_wins = ab_decision(plan, round(0.10 * n), n, round(0.125 * n), n)
    assert (challenger_wins.decision, challenger_wins.winner, challenger_wins.progress) == ("winner", "challenger", 1.0)
    assert challenger_wins.test is not None and challenger_wins.test.p_value < 0.05
    assert challenger_wins.test.ci_low > 0

    champion_wins = ab_decision(plan, round(0.10 * n), n, round(0.075 * n), n + 500)
    assert (champion_wins.decision, champion_wins.winner) == ("winner", "champion")

    tie = ab_decision(plan, round(0.10 * n), n, round(0.101 * n), n)
    assert (tie.decision, tie.winner) == ("no_difference", None)
    assert tie.test is not None and tie.test.p_value >= 0.05


def test_decision_evidence_is_complete_and_json_ready() -> None:
    plan = ABPlan(p_baseline=0.5, min_detectable_effect=0.25, alpha=0.05, power=0.9, n_per_arm=77)
    evidence = ab_decision(plan, 40, 80, 60, 80).to_dict()

    assert evidence["decision"] == "winner" and evidence["winner"] == "challenger"
    assert evidence["plan"]["n_per_arm"] == 77
    test = evidence["test"]
    assert (test["successes_a"], test["n_a"], test["successes_b"], test["n_b"]) == (40, 80, 60, 80)
    assert test["difference"] == pytest.approx(0.25)
    z, p = _textbook_z(40, 80, 60, 80)
    assert (test["z"], test["p_value"]) == (pytest.approx(z), pytest.approx(p))
    assert test["ci_low"] < 0.25 < test["ci_high"]


# -- stratified (per data version) -------------------------------------------------------------------------------------


def test_stratified_ztest_with_one_stratum_is_the_plain_ztest() -> None:
    plain = two_proportion_ztest(700, 1000, 760, 1000)
    strat = stratified_ztest([(700, 1000, 760, 1000)])
    assert strat.z == pytest.approx(plain.z) and strat.p_value == pytest.approx(plain.p_value)
    assert strat.difference == pytest.approx(plain.difference)


def test_stratified_ztest_removes_the_confounding_of_a_changing_split() -> None:
    # Two months with the same accuracy for both arms (0.9 then 0.7) but a split of 5 % then 50 %:
    # pooled, the challenger's rows lean to the worse month and it looks worse; within months it is not.
    strata = [(8550, 9500, 450, 500), (3500, 5000, 3500, 5000)]
    pooled = two_proportion_ztest(8550 + 3500, 14500, 450 + 3500, 5500)
    assert pooled.p_value < 1e-10 and pooled.difference < -0.1
    strat = stratified_ztest(strata)
    assert strat.difference == pytest.approx(0.0, abs=1e-12) and strat.p_value == pytest.approx(1.0)
    assert strat.n_a == 14500 and strat.n_b == 5500
    result = ab_decision_stratified(plan_ab_test(0.8, 0.05), [*strata, (100, 200, 0, 0)])
    assert result.decision == "no_difference" and result.winner is None  # the stratum with one arm is left out


def test_stratified_ztest_needs_a_stratum_with_both_arms() -> None:
    with pytest.raises(ValueError, match="both arms"):
        stratified_ztest([(10, 20, 0, 0)])
