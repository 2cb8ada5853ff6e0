"""Tests of the drift engine: statistics against scipy, fail-closed behaviour, PSI, BH, serialisation."""

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from mlops_assets.ml.drift import (
    CHI2,
    CHISQUARE,
    EMPTY_FRAME,
    JENSEN_SHANNON,
    KS,
    MISSING_COLUMN,
    NO_REFERENCE_VALUES,
    NO_VALUES,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    PSI_STABLE,
    WASSERSTEIN,
    ColumnKind,
    DriftOptions,
    DriftReference,
    DriftReport,
    NumericReference,
    Z,
    bh_adjust,
    build_reference,
    drift_report,
    ks_pvalue,
    psi,
    psi_band,
    psi_critical,
    spec_columns,
    spec_ranges,
)
from mlops_assets.ml.spec import spec_from_dict

pytestmark = pytest.mark.core

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# Values on a coarse grid as well, so that ties (the hard case of every ECDF kernel) are common.
tied = st.integers(min_value=-20, max_value=20).map(lambda i: i / 4)
samples = st.lists(st.one_of(finite, tied), min_size=1, max_size=80)
labels = st.sampled_from(["a", "b", "c", "d", "e"])


def _numeric(ref: list[float] | np.ndarray, **kwargs: Any) -> DriftReference:
    return build_reference(pd.DataFrame({"x": np.asarray(ref, dtype=float)}), {"x": "numeric"}, **kwargs)


def _report(reference: DriftReference, cur: list[float] | np.ndarray, **options: Any) -> DriftReport:
    return drift_report(reference, pd.DataFrame({"x": np.asarray(cur, dtype=float)}), DriftOptions(**options))


# --------------------------------------------------------------------------------------------------
# Statistics against scipy
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(ref=samples, cur=samples)
def test_ks_statistic_and_asymptotic_p_value_match_scipy(ref: list[float], cur: list[float]) -> None:
    col = _report(_numeric(ref), cur, column_tests={"x": KS}).column("x")
    assert col.test == KS
    assert col.statistic is not None and 0.0 <= col.statistic <= 1.0
    assert col.p_value is not None and 0.0 <= col.p_value <= 1.0
    if len(ref) * len(cur) == 1:  # scipy's asymptotic p-value is NaN for two single values; ours is defined
        return
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert col.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert col.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


@SETTINGS
@given(ref=samples, cur=samples)
def test_exact_reference_wasserstein_matches_scipy(ref: list[float], cur: list[float]) -> None:
    col = _report(_numeric(ref), cur, column_tests={"x": WASSERSTEIN}).column("x")
    norm = max(float(np.std(ref)), 0.001)
    expected = stats.wasserstein_distance(ref, cur) / norm
    assert col.error_bound == 0.0
    assert col.statistic == pytest.approx(expected, rel=1e-9, abs=1e-9 * (1 + max(map(abs, ref + cur))) / norm)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(200, 3000),
    shift=st.floats(-1.0, 1.0),
    quantiles=st.integers(10, 60),
    shape=st.sampled_from(["normal", "lognormal", "integers", "bimodal", "point_mass"]),
)
def test_grid_statistics_agree_with_raw_reference_within_stored_bound(
    seed: int, n: int, shift: float, quantiles: int, shape: str
) -> None:
    rng = np.random.default_rng(seed)

    def draw(size: int) -> np.ndarray:
        if shape == "normal":
            return rng.normal(size=size)
        if shape == "lognormal":
            return rng.lognormal(size=size)
        if shape == "integers":
            return rng.integers(0, 5 * quantiles, size=size).astype(float)
        if shape == "point_mass":  # zero-inflated: a fifth of the values at the minimum
            return np.where(rng.random(size) < 0.2, 0.0, rng.exponential(size=size))
        return np.where(rng.random(size) < 0.3, rng.normal(-4, 0.5, size), rng.normal(2, 1, size))

    ref, cur = draw(n), draw(n // 2 + 1) + shift
    reference = _numeric(ref, max_exact=0, quantiles=quantiles)
    stored = reference.column("x")
    assert isinstance(stored, NumericReference)
    if stored.exact:  # fewer distinct values than blocks: stored losslessly
        assert stored.grid_wasserstein == 0.0 and stored.grid_ks == 0.0
    norm = max(float(np.std(ref)), 0.001)
    w = _report(reference, cur, column_tests={"x": WASSERSTEIN}).column("x")
    assert w.statistic is not None and w.error_bound is not None
    assert abs(w.statistic - stats.wasserstein_distance(ref, cur) / norm) <= w.error_bound + 1e-9
    ks = _report(reference, cur, column_tests={"x": KS}).column("x")
    assert ks.statistic is not None and ks.error_bound is not None
    assert abs(ks.statistic - stats.ks_2samp(ref, cur).statistic) <= ks.error_bound + 1e-12


def test_wasserstein_keeps_precision_with_a_large_offset() -> None:
    rng = np.random.default_rng(0)
    ref, cur = 1e9 + rng.normal(size=5000), 1e9 + rng.normal(0.05, 1.0, size=7000)
    col = _report(_numeric(ref, max_exact=10_000), cur).column("x")
    assert col.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-6)


def _categorical(ref: list[str], cur: list[str], **options: Any) -> DriftReport:
    reference = build_reference(pd.DataFrame({"c": ref}), {"c": "categorical"})
    return drift_report(reference, pd.DataFrame({"c": cur}), DriftOptions(**options))


@SETTINGS
@given(ref=st.lists(labels, min_size=1, max_size=200), cur=st.lists(labels, min_size=1, max_size=200))
def test_chi2_matches_chi2_contingency(ref: list[str], cur: list[str]) -> None:
    # Asymptotic p-values at any expected count (the default switches to a permutation p-value below 5).
    col = _categorical(ref, cur, column_tests={"c": CHI2}, min_expected_count=0.0).column("c")
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.count(k) for k in keys], [cur.count(k) for k in keys]])
    expected = stats.chi2_contingency(table, correction=False) if len(keys) > 1 else None
    assert col.p_value == pytest.approx(1.0 if expected is None else expected.pvalue, rel=1e-9, abs=1e-12)


@SETTINGS
@given(ref=st.lists(labels, min_size=1, max_size=200), cur=st.lists(labels, min_size=1, max_size=200))
def test_chisquare_is_evidentlys_goodness_of_fit(ref: list[str], cur: list[str]) -> None:
    col = _categorical(ref, cur, column_tests={"c": CHISQUARE}).column("c")
    keys = sorted(set(ref) | set(cur))
    if len(keys) == 1:
        assert col.p_value == 1.0
        return
    observed = np.array([cur.count(k) for k in keys], dtype=float)
    expected = np.array([ref.count(k) for k in keys], dtype=float) * len(cur) / len(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.chisquare(observed, expected)
    assert col.p_value == pytest.approx(result.pvalue, rel=1e-9, abs=1e-12)


@SETTINGS
@given(
    ref=st.lists(st.sampled_from(["no", "yes"]), min_size=2, max_size=200),
    cur=st.lists(st.sampled_from(["no", "yes"]), min_size=2, max_size=200),
)
def test_z_test_squared_is_the_two_by_two_chi_square(ref: list[str], cur: list[str]) -> None:
    col = _categorical(ref, cur, min_expected_count=0.0).column("c")
    keys = sorted(set(ref) | set(cur))
    assert col.test == (Z if len(keys) == 2 else col.test)
    if len(keys) < 2:
        assert col.p_value == 1.0
        return
    table = np.array([[ref.count(k) for k in keys], [cur.count(k) for k in keys]])
    expected = stats.chi2_contingency(table, correction=False)
    assert col.statistic is not None
    assert col.statistic**2 == pytest.approx(expected.statistic, rel=1e-9, abs=1e-12)
    assert col.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_jensen_shannon_uses_the_natural_log_like_evidently() -> None:
    ref, cur = ["a"] * 600 + ["b"] * 400 + ["c"] * 1000, ["a"] * 900 + ["b"] * 100 + ["d"] * 50
    col = _categorical(ref, cur).column("c")
    p = np.array([600, 400, 1000, 0]) / 2000
    q = np.array([900, 100, 0, 50]) / 1050
    assert col.test == JENSEN_SHANNON  # 2000 reference rows: the large-reference test
    assert col.statistic == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    base2 = _categorical(ref, cur, js_base=2.0).column("c")
    assert base2.statistic == pytest.approx(distance.jensenshannon(p, q, base=2.0), rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Test choice (Evidently's rule)
# --------------------------------------------------------------------------------------------------


def test_tests_are_chosen_by_kind_reference_size_and_distinct_values() -> None:
    rng = np.random.default_rng(1)

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "num": rng.normal(size=n),
                "flag": rng.integers(0, 2, n),
                "few": rng.integers(0, 4, n),
                "cat": rng.choice(["a", "b", "c"], n),
                "bin": rng.choice(["x", "y"], n),
            }
        )

    kinds: dict[str, ColumnKind] = {
        "num": "numeric",
        "flag": "numeric",
        "few": "numeric",
        "cat": "categorical",
        "bin": "categorical",
    }
    small = drift_report(build_reference(frame(1000), kinds), frame(5000))
    assert {c.column: c.test for c in small.columns} == {"num": KS, "flag": Z, "few": CHI2, "cat": CHI2, "bin": Z}
    evidently = drift_report(build_reference(frame(1000), kinds), frame(5000), DriftOptions.evidently())
    assert evidently.column("cat").test == CHISQUARE and evidently.column("few").test == CHISQUARE
    large = drift_report(build_reference(frame(1001), kinds), frame(5000))
    assert {c.column: c.test for c in large.columns} == {
        "num": WASSERSTEIN,
        "flag": JENSEN_SHANNON,
        "few": JENSEN_SHANNON,
        "cat": JENSEN_SHANNON,
        "bin": JENSEN_SHANNON,
    }
    overridden = drift_report(
        build_reference(frame(1001), kinds),
        frame(5000),
        DriftOptions(column_tests={"num": KS}, thresholds={"num": 0.01}),
    )
    assert overridden.column("num").test == KS and overridden.column("num").threshold == 0.01


def test_value_count_test_on_a_grid_reference_is_refused() -> None:
    reference = _numeric(np.random.default_rng(2).normal(size=3000), max_exact=100, quantiles=50)
    with pytest.raises(ValueError, match="exact reference values"):
        _report(reference, [0.0, 1.0], column_tests={"x": CHI2})


def test_unknown_test_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown drift tests"):
        DriftOptions(column_tests={"x": "anderson"})


# --------------------------------------------------------------------------------------------------
# PSI
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    ref=st.lists(st.integers(0, 50), min_size=2, max_size=12),
    cur=st.lists(st.integers(0, 50), min_size=2, max_size=12),
)
def test_psi_is_non_negative(ref: list[int], cur: list[int]) -> None:
    size = min(len(ref), len(cur))
    r, c = np.array(ref[:size], dtype=float), np.array(cur[:size], dtype=float)
    if r.sum() == 0 or c.sum() == 0:
        return
    assert psi(r, c) >= 0.0


@SETTINGS
@given(values=samples, cats=st.lists(st.one_of(labels, st.none()), min_size=1, max_size=80))
def test_psi_of_a_sample_against_itself_is_zero(values: list[float], cats: list[str | None]) -> None:
    frame = pd.DataFrame({"x": values[: len(cats)] + [0.0] * max(0, len(cats) - len(values)), "c": cats})
    kinds: dict[str, ColumnKind] = {"x": "numeric", "c": "categorical"}
    report = drift_report(build_reference(frame, kinds), frame)
    for col in report.columns:
        if col.psi is not None:
            assert col.psi == 0.0
            assert not col.psi_drifted
            assert col.psi_band == PSI_STABLE


def test_psi_bands_and_numeric_bins() -> None:
    ref = np.arange(1000, dtype=float)
    shifted = _report(_numeric(ref), ref + 300).column("x")
    assert shifted.psi_buckets == 10
    assert shifted.psi is not None and shifted.psi > 0.25 and shifted.psi_band == PSI_SIGNIFICANT
    assert shifted.psi_drifted
    # Open outer bins: values far beyond the reference range land in the last decile bin.
    far = _report(_numeric(ref), np.full(50, 1e9)).column("x")
    assert far.psi == pytest.approx(psi(np.full(10, 100.0), np.array([0.0] * 9 + [50.0])))
    assert [psi_band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        PSI_STABLE,
        PSI_STABLE,
        PSI_MODERATE,
        PSI_MODERATE,
        PSI_SIGNIFICANT,
        PSI_SIGNIFICANT,
    ]
    assert psi_critical(100, 100, 1) == 0.0  # one bucket: any mass elsewhere is a change


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_psi_critical_value_has_the_stated_false_alarm_rate(kind: str) -> None:
    # Both samples from the same distribution: PSI exceeds its critical value about alpha of the time.
    rng = np.random.default_rng(7)
    alpha, runs, n_ref, n_cur = 0.05, 600, 3000, 2000
    probs = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.07])
    alarms = 0
    for _ in range(runs):
        if kind == "numeric":
            ref_df, cur_df = (
                pd.DataFrame({"v": rng.gamma(2.0, size=n_ref)}),
                pd.DataFrame({"v": rng.gamma(2.0, size=n_cur)}),
            )
        else:
            cats = np.array(list("abcdefg"))
            ref_df = pd.DataFrame({"v": cats[rng.choice(7, n_ref, p=probs)]})
            cur_df = pd.DataFrame({"v": cats[rng.choice(7, n_cur, p=probs)]})
        reference = build_reference(ref_df, {"v": kind})  # type: ignore[dict-item]
        col = drift_report(reference, cur_df, DriftOptions(psi_alpha=alpha)).column("v")
        alarms += col.psi_drifted
    rate = alarms / runs
    # Binomial sd at 600 runs ≈ 0.009: three of them plus the error of the chi-square approximation.
    assert 0.02 <= rate <= 0.085, rate


# --------------------------------------------------------------------------------------------------
# Fail closed, data quality
# --------------------------------------------------------------------------------------------------


def test_nan_only_empty_and_missing_columns_fail_closed() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b", "c"], 500), "y": rng.normal(size=500)})
    kinds: dict[str, ColumnKind] = {"x": "numeric", "c": "categorical", "y": "numeric"}
    reference = build_reference(ref, kinds)
    cur = pd.DataFrame({"x": [np.nan] * 10, "c": [None] * 10})
    report = drift_report(reference, cur)
    x, c, y = report.column("x"), report.column("c"), report.column("y")
    assert x.drifted and x.reason == NO_VALUES and x.statistic is None and x.psi_drifted
    assert c.drifted and c.reason == NO_VALUES and c.statistic is None
    assert c.psi is not None and c.psi_drifted  # categorical PSI has a missing bucket: it sees the change
    assert y.drifted and y.reason == MISSING_COLUMN
    assert report.dataset_drift and report.data_quality.missing_columns == ("y",)
    assert report.data_quality.null_shares[0].current == 1.0

    empty = drift_report(reference, ref.iloc[:0])
    assert empty.dataset_drift and empty.reason == EMPTY_FRAME
    assert all(col.drifted and col.reason == NO_VALUES for col in empty.columns)
    assert all(s.current is None for s in empty.data_quality.null_shares)
    # Not even a relaxed drift share can turn the empty frame into "no drift".
    assert drift_report(reference, ref.iloc[:0], DriftOptions(drift_share=1.0)).dataset_drift


def test_reference_without_values_fails_closed() -> None:
    reference = build_reference(pd.DataFrame({"x": [np.nan, np.nan]}), {"x": "numeric"})
    col = _report(reference, [1.0, 2.0]).column("x")
    assert col.drifted and col.reason == NO_REFERENCE_VALUES


def test_data_quality_findings() -> None:
    ref = pd.DataFrame({"x": np.linspace(0, 10, 200), "c": ["a", "b"] * 100, "s": [str(i) for i in range(200)]})
    kinds: dict[str, ColumnKind] = {"x": "numeric", "c": "categorical", "s": "categorical"}
    reference = build_reference(ref, kinds, ranges={"x": (0.0, 10.0)})
    cur = pd.DataFrame(
        {
            "x": ["1.5", "oops", "12", "-3", None, "-inf"],
            "c": ["a", "z", "z", "y", None, "a"],
            "s": [1, 2, 3, 4, 5, 6],
            "new": 1,
        }
    )
    quality = drift_report(reference, cur).data_quality
    assert quality.extra_columns == ("new",)
    changes = {d.column: d for d in quality.dtype_changes}
    assert changes["x"].unparseable == 1  # "oops"; None is missing, "-inf" parses
    assert "s" in changes  # text reference, numbers now
    (rng_x,) = quality.out_of_range
    assert (rng_x.column, rng_x.below, rng_x.above) == ("x", 2, 1)  # -3 and -inf; 12
    unseen = {u.column: u for u in quality.unseen_categories}
    assert unseen["c"].n_rows == 3 and unseen["c"].top == (("z", 2), ("y", 1)) and not unseen["c"].pooled
    shares = {s.column: s for s in quality.null_shares}
    assert shares["x"].current == pytest.approx(2 / 6)  # None and the unparseable value


def test_pooled_reference_categories_share_one_bucket() -> None:
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["r1", "r2", "r3"]})
    reference = build_reference(ref, {"c": "categorical"}, max_categories=2)
    report = drift_report(reference, pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["r1", "r9", "r3"]}))
    (unseen,) = report.data_quality.unseen_categories
    assert unseen.pooled and unseen.n_rows == 3
    assert report.column("c").psi == 0.0  # same bucket shares: the tail is one "other" bucket


# --------------------------------------------------------------------------------------------------
# Invariance, BH, dataset drift, serialisation
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(values=samples, cats=st.lists(labels, min_size=1, max_size=80), seed=st.integers(0, 2**32 - 1))
# -0.0 and 0.0 are equal but were stored (and hashed) as they came: found by this property.
@example(values=[0.0, -0.0], cats=["a", "a"], seed=0)
@example(values=[1.0, 1.0, 0.0, -0.0], cats=["a", "a"], seed=0)
def test_reference_and_report_do_not_depend_on_row_order(values: list[float], cats: list[str], seed: int) -> None:
    size = min(len(values), len(cats))
    frame = pd.DataFrame({"x": values[:size], "c": cats[:size]})
    shuffled = frame.sample(frac=1.0, random_state=seed % (2**31)).reset_index(drop=True)
    kinds: dict[str, ColumnKind] = {"x": "numeric", "c": "categorical"}
    a, b = (
        build_reference(frame, kinds, max_exact=5, quantiles=10),
        build_reference(shuffled, kinds, max_exact=5, quantiles=10),
    )
    assert a.profile_id == b.profile_id
    current = pd.DataFrame({"x": values[::-1][:size], "c": cats[:size]})
    assert drift_report(a, current) == drift_report(a, current.iloc[::-1].reset_index(drop=True))


def test_bh_adjust_hand_computed() -> None:
    # Sorted p: 0.01, 0.03, 0.04, 0.20 (m = 4): 4·0.01/1 = 0.04; 4·0.03/2 = 0.06 → min(0.06, 0.0533) = 0.0533;
    # 4·0.04/3 = 0.0533; 4·0.20/4 = 0.20.
    assert bh_adjust([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.20])


def test_bh_changes_verdicts_of_p_value_tests_only() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({f"x{i}": rng.normal(size=400) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": rng.normal(0.12 * i, 1.0, size=400) for i in range(4)})
    reference = build_reference(ref, dict.fromkeys(ref.columns, "numeric"))  # type: ignore[arg-type]
    raw = drift_report(reference, cur, DriftOptions(benjamini_hochberg=False))
    adjusted = drift_report(reference, cur)
    p = [c.p_value for c in raw.columns]
    expected = bh_adjust([float(v) for v in p if v is not None])
    assert [c.p_value_adjusted for c in adjusted.columns] == pytest.approx(expected)
    assert all(c.p_value_adjusted == c.p_value for c in raw.columns)
    # BH never adds an alarm.
    assert all(r.drifted or not a.drifted for r, a in zip(raw.columns, adjusted.columns, strict=True))
    distances = drift_report(reference, cur, DriftOptions(column_tests=dict.fromkeys(ref.columns, WASSERSTEIN)))
    assert all(c.p_value is None and c.p_value_adjusted is None for c in distances.columns)


@pytest.mark.parametrize(("n_drifted", "share", "expected"), [(2, 0.5, True), (1, 0.5, False), (1, 0.25, True)])
def test_dataset_drift_when_the_drifted_share_reaches_the_threshold(
    n_drifted: int, share: float, expected: bool
) -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({f"x{i}": rng.normal(size=3000) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": rng.normal(5.0 if i < n_drifted else 0.0, 1.0, size=3000) for i in range(4)})
    report = drift_report(
        build_reference(ref, dict.fromkeys(ref.columns, "numeric")), cur, DriftOptions(drift_share=share)
    )  # type: ignore[arg-type]
    assert report.n_drifted == n_drifted and report.drifted_share == n_drifted / 4
    assert report.dataset_drift is expected and report.reason is None


def test_score_column_is_reported_as_prediction_drift_only() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "score": rng.uniform(size=2000)})
    cur = pd.DataFrame({"x": rng.normal(size=2000), "score": rng.uniform(0.5, 1.5, size=2000)})
    reference = build_reference(ref, {"x": "numeric", "score": "numeric"})
    report = drift_report(reference, cur, DriftOptions(score_column="score"))
    assert [c.column for c in report.columns] == ["x"]
    assert report.prediction_drift is not None and report.prediction_drift.drifted
    assert not report.dataset_drift
    with pytest.raises(ValueError, match="score column"):
        drift_report(reference, cur, DriftOptions(score_column="nope"))


def test_reference_json_round_trip_and_stable_id() -> None:
    rng = np.random.default_rng(8)
    cats = np.array(["a", "b", None], dtype=object)
    frame = pd.DataFrame({"x": rng.lognormal(size=5000), "i": rng.integers(0, 3, 5000), "c": rng.choice(cats, 5000)})
    kinds: dict[str, ColumnKind] = {"x": "numeric", "i": "numeric", "c": "categorical"}
    reference = build_reference(frame, kinds, ranges={"x": (0.0, None)})
    again = DriftReference.from_json(json.dumps(json.loads(reference.to_json())))
    assert again == reference and again.profile_id == reference.profile_id
    assert build_reference(frame, kinds, ranges={"x": (0.0, None)}).profile_id == reference.profile_id
    assert build_reference(frame.iloc[1:], kinds).profile_id != reference.profile_id


def test_report_json_round_trip_keeps_infinite_statistics() -> None:
    ref = pd.DataFrame({"c": ["a", "b"] * 50, "x": np.arange(100.0)})
    cur = pd.DataFrame({"c": ["a", "b", "new"] * 30, "x": [np.nan] * 90})
    reference = build_reference(ref, {"c": "categorical", "x": "numeric"})
    report = drift_report(reference, cur, DriftOptions.evidently())
    assert report.column("c").test == CHISQUARE and report.column("c").statistic == math.inf
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert DriftReport.from_dict(json.loads(text)) == report


def test_spec_helpers_pick_features_kinds_and_bounds() -> None:
    spec = spec_from_dict(
        {
            "name": "toy",
            "id_column": "id",
            "label": {"column": "y", "positive": 1, "values": [0, 1]},
            "features": ["age", "city"],
            "columns": {
                "id": {"type": "int"},
                "y": {"type": "int"},
                "age": {"type": "int", "min": 0, "max": 120},
                "city": {"type": "string"},
            },
        }
    )
    assert spec_columns(spec, score_column="score") == {"age": "numeric", "city": "categorical", "score": "numeric"}
    assert spec_ranges(spec) == {"age": (0.0, 120.0)}


def test_ks_pvalue_is_scipys_asymptotic_formula() -> None:
    assert ks_pvalue(0.1, 300, 500) == pytest.approx(stats.kstwo.sf(0.1, round(300 * 500 / 800)))
