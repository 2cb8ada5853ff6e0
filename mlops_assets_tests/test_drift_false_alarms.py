"""Issue 10, faults 5, 6, 7, 18: drift statistics that hold at every size.

Monte Carlo tests of the false-alarm rate of every per-column method the engine chooses (numeric: KS,
Wasserstein; categorical: chi-square, Jensen–Shannon; binary: z; PSI on every column) on undrifted data,
at current sizes from the policy's ``min_rows`` up and cardinalities up to 1,000; real drift still caught;
all-missing columns; a rise in missing values; the drift table's column names.

Seeded and deterministic. The bound asserted per column and method is the 5 % level plus a binomial
allowance: with 200 batches at a true rate of 5 %, 19 or more alarms have probability 0.005
(``scipy.stats.binom.sf(18, 200, 0.05)``), so at most 18 alarms (9 %) are allowed per column; pooled over
all columns and configurations the rate must stay below 5 % plus three binomial standard deviations.
"""

import math
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml.drift import (
    CHI2,
    JENSEN_SHANNON,
    KS,
    MISSING_COLUMN,
    MONTE_CARLO,
    NO_REFERENCE_VALUES,
    NO_VALUES,
    NO_VALUES_EITHER_SIDE,
    WASSERSTEIN,
    ColumnKind,
    DriftOptions,
    DriftReport,
    Z,
    build_reference,
    critical_value,
    drift_report,
    null_share_test,
)
from mlops_assets.ml.policy import Policy, policy_from_dict

pytestmark = pytest.mark.wiring

ALPHA = 0.05
BATCHES = 200
MAX_ALARMS = 18  # binom.sf(18, 200, 0.05) = 0.005
MIN_ROWS = Policy().data.min_rows


def _zipf(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1)
    return weights / weights.sum()


_Z105, _Z1000, _Z20 = _zipf(105), _zipf(1000), _zipf(20)
_L105 = np.array([f"d{i:03d}" for i in range(105)])
_L1000 = np.array([f"c{i:04d}" for i in range(1000)])

KINDS: dict[str, ColumnKind] = {
    "num": "numeric",
    "ties": "numeric",
    "few": "numeric",
    "flag": "numeric",
    "dest": "categorical",
    "wide": "categorical",
}


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Undrifted columns of every kind: continuous, heavy ties, three values, a rare flag, 105 and 1,000 categories."""
    return pd.DataFrame(
        {
            "num": rng.lognormal(0.0, 1.0, n),
            "ties": rng.choice(20, n, p=_Z20).astype(np.float64),
            "few": rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.float64),
            "flag": (rng.random(n) < 0.1).astype(np.float64),
            "dest": pd.Categorical.from_codes(rng.choice(105, n, p=_Z105), categories=_L105),
            "wide": pd.Categorical.from_codes(rng.choice(1000, n, p=_Z1000), categories=_L1000),
        }
    )


def _alarms(n_reference: int, n_current: int, seed: int) -> tuple[dict[str, set[str]], dict[str, int], dict[str, int]]:
    """Per column: the tests used, drift alarms and PSI alarms over BATCHES undrifted batches.

    The reference is drawn afresh for every batch: the false-alarm rate of a two-sample test is a rate
    over both samples. With one fixed reference all batches share its sampling noise, and the rate given
    that reference scatters around 5 % (measured against two fixed 20,000-row references, batches of
    1,000: 0–14 alarms in 200 per column and method). Only a reference of 50 times the batch or more is
    drawn once (its noise is then small next to the batch's), which keeps the test cheap.
    """
    rng = np.random.default_rng(seed)
    options = DriftOptions(benjamini_hochberg=False)  # each column's own test, not the family's
    tests: dict[str, set[str]] = {c: set() for c in KINDS}
    drift = dict.fromkeys(KINDS, 0)
    psi = dict.fromkeys(KINDS, 0)
    fixed = build_reference(_frame(rng, n_reference), KINDS) if n_reference >= 50 * n_current else None
    for _ in range(BATCHES):
        reference = fixed or build_reference(_frame(rng, n_reference), KINDS)
        report = drift_report(reference, _frame(rng, n_current), options)
        for col in report.columns:
            tests[col.column].add(col.test)
            drift[col.column] += col.drifted
            psi[col.column] += col.psi_drifted
    return tests, drift, psi


# The reference sizes cover both test families (≤ 1000 present values: p-value tests; larger: distances);
# the current sizes start at the policy's min_rows.
CONFIGS = [(1000, MIN_ROWS), (1000, 4 * MIN_ROWS), (20_000, 1000), (50_000, MIN_ROWS)]


@pytest.mark.parametrize(("n_reference", "n_current"), CONFIGS)
def test_false_alarm_rate_of_every_method_is_at_most_alpha_at_every_size_and_cardinality(
    n_reference: int, n_current: int
) -> None:
    tests, drift, psi = _alarms(n_reference, n_current, seed=n_reference + n_current)
    small = n_reference <= DriftOptions().small_reference_rows
    expected = (
        {"num": KS, "ties": KS, "few": CHI2, "flag": Z, "dest": CHI2, "wide": CHI2}
        if small
        else {
            "num": WASSERSTEIN,
            "ties": WASSERSTEIN,
            "few": JENSEN_SHANNON,
            "flag": JENSEN_SHANNON,
            "dest": JENSEN_SHANNON,
            "wide": JENSEN_SHANNON,
        }
    )
    assert {c: t.pop() for c, t in tests.items() if len(t) == 1} == expected
    too_many = {f"{c} ({expected[c]})": n for c, n in drift.items() if n > MAX_ALARMS}
    too_many |= {f"{c} (psi)": n for c, n in psi.items() if n > MAX_ALARMS}
    assert not too_many, (
        f"alarms in {BATCHES} undrifted batches (max {MAX_ALARMS}): {too_many}; drift {drift} psi {psi}"
    )
    # Pooled over the columns of this configuration (not independent, so only a sanity bound on the mean).
    pooled = (sum(drift.values()) + sum(psi.values())) / (2 * len(KINDS) * BATCHES)
    assert pooled <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / BATCHES), (pooled, drift, psi)


def test_jensen_shannon_and_psi_no_longer_alarm_on_an_undrifted_105_category_column() -> None:
    # Fault 5 as reported: a flights-`dest`-sized Zipf column, one reference of 20,000 rows, batches of
    # 1,000: Jensen–Shannon said "drifted" in 100 % of 200 batches and the PSI flag in 39 %.
    rng = np.random.default_rng(105)

    def dest(n: int) -> pd.DataFrame:
        return pd.DataFrame({"dest": pd.Categorical.from_codes(rng.choice(105, n, p=_Z105), categories=_L105)})

    reference = build_reference(dest(20_000), {"dest": "categorical"})
    js = psi = 0
    for _ in range(BATCHES):
        col = drift_report(reference, dest(1000)).column("dest")
        assert col.test == JENSEN_SHANNON
        js += col.drifted
        psi += col.psi_drifted
    assert js <= MAX_ALARMS and psi <= MAX_ALARMS, (js, psi)
    # The fixed threshold alone (Evidently's rule) is what raised the alarms: it is still available.
    col = drift_report(reference, dest(1000), DriftOptions.evidently()).column("dest")
    assert col.statistic is not None and col.statistic >= 0.1 and col.drifted


def _drifted(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """The benchmark's drift (benchmarks/drift_benchmark.py) on the columns above."""
    frame = _frame(rng, n)
    frame["num"] = rng.lognormal(0.0, 1.1, n)  # σ 1 → 1.1 (benchmark num_12)
    frame["flag"] = (rng.random(n) < 0.16).astype(np.float64)  # share +6 points (benchmark num_18)
    reversed_ = _Z105[::-1]
    frame["dest"] = pd.Categorical.from_codes(rng.choice(105, n, p=reversed_), categories=_L105)  # shares reversed
    wide = 0.9 * _Z1000 + 0.1 / 1000  # 10 % spread uniformly (benchmark cat_5)
    frame["wide"] = pd.Categorical.from_codes(rng.choice(1000, n, p=wide), categories=_L1000)
    return frame


@pytest.mark.parametrize(("n_reference", "n_current"), [(1000, MIN_ROWS), (50_000, MIN_ROWS), (50_000, 20_000)])
def test_real_drift_of_the_benchmarks_size_is_still_caught(n_reference: int, n_current: int) -> None:
    rng = np.random.default_rng(7)
    reference = build_reference(_frame(rng, n_reference), KINDS)
    current = _drifted(rng, n_current)
    report = drift_report(reference, current)
    caught = {c.column for c in report.columns if c.drifted}
    assert caught <= {"num", "flag", "dest", "wide"}  # the undrifted columns stay quiet
    if n_current >= 20_000:
        # At this size calibration removes nothing: the verdicts are those of the fixed thresholds alone.
        fixed = drift_report(reference, current, DriftOptions(distance_alpha=None))
        assert caught == {c.column for c in fixed.columns if c.drifted}
        assert {"num", "dest", "wide"} <= caught
        assert all(c.psi_drifted for c in report.columns if c.column in {"num", "flag", "dest", "wide"})
    else:
        # At min_rows the smaller shifts are within what 500 rows can tell apart; the large ones are caught.
        assert {"dest"} <= caught
        assert report.column("dest").psi_drifted


def test_critical_value_is_the_rank_order_statistic() -> None:
    draws = np.arange(1.0, 500.0)  # 499 draws: k = ceil(500 · 0.95) = 475
    assert critical_value(draws, 0.05) == 475.0
    assert critical_value(np.arange(1.0, 10.0), 0.05) == math.inf  # 9 draws cannot support a 5 % test


# --------------------------------------------------------------------------------------------------
# Fault 6: a column missing on both sides
# --------------------------------------------------------------------------------------------------


def test_a_column_missing_on_both_sides_is_unchanged_not_drifted() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=2000),
            "gone_num": np.full(2000, np.nan),
            "gone_cat": pd.Series([None] * 2000, dtype="object"),
        }
    )
    kinds: dict[str, ColumnKind] = {"x": "numeric", "gone_num": "numeric", "gone_cat": "categorical"}
    reference = build_reference(ref, kinds)
    cur = pd.DataFrame(
        {
            "x": rng.normal(size=800),
            "gone_num": np.full(800, np.nan),
            "gone_cat": pd.Series([None] * 800, dtype="object"),
        }
    )
    report = drift_report(reference, cur)
    for name in ("gone_num", "gone_cat"):
        col = report.column(name)
        assert not col.drifted and col.reason == NO_VALUES_EITHER_SIDE and not col.psi_drifted
    assert not report.dataset_drift and report.n_drifted == 0


def test_a_column_that_loses_all_its_values_still_fails_closed() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference(
        pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)}),
        {
            "x": "numeric",
            "c": "categorical",
        },
    )
    report = drift_report(reference, pd.DataFrame({"x": np.full(600, np.nan), "c": [None] * 600}))
    assert all(c.drifted and c.reason == NO_VALUES for c in report.columns)
    # Values appearing where the reference had none is a change too.
    empty_ref = build_reference(pd.DataFrame({"x": np.full(600, np.nan)}), {"x": "numeric"})
    col = drift_report(empty_ref, pd.DataFrame({"x": rng.normal(size=600)})).column("x")
    assert col.drifted and col.reason == NO_REFERENCE_VALUES
    # Absent from the batch: fails closed as before.
    assert drift_report(reference, pd.DataFrame({"x": rng.normal(size=600)})).column("c").reason == MISSING_COLUMN


# --------------------------------------------------------------------------------------------------
# Fault 7: a rise in missing values
# --------------------------------------------------------------------------------------------------


def _with_missing(rng: np.random.Generator, n: int, share: float) -> pd.DataFrame:
    values = rng.normal(50.0, 10.0, n)
    values[rng.random(n) < share] = np.nan
    cats = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    cats[rng.random(n) < share] = None
    return pd.DataFrame({"delay": values, "carrier": cats})


def test_a_rise_in_missing_values_is_drift_and_a_data_quality_failure() -> None:
    # Fault 7 as reported: 4.9 % → 33.7 % missing; the present values are undrifted.
    rng = np.random.default_rng(7)
    kinds: dict[str, ColumnKind] = {"delay": "numeric", "carrier": "categorical"}
    reference = build_reference(_with_missing(rng, 20_000, 0.049), kinds)
    report = drift_report(reference, _with_missing(rng, 2000, 0.337))
    for name in kinds:
        col = report.column(name)
        assert col.null_share_rise and col.drifted
        assert col.null_share_reference == pytest.approx(0.049, abs=0.005)
        assert col.null_share_current == pytest.approx(0.337, abs=0.03)
        assert col.null_share_p_value is not None and col.null_share_p_value < 1e-10
    assert set(report.data_quality.null_share_increases) == set(kinds)
    assert report.dataset_drift
    # Round trip keeps the findings.
    again = DriftReport.from_dict(report.to_dict())
    assert again.data_quality.null_share_increases == report.data_quality.null_share_increases
    assert again.column("delay").null_share_rise


def test_missing_share_rule_follows_the_policy_threshold_and_does_not_false_alarm() -> None:
    rng = np.random.default_rng(8)
    kinds: dict[str, ColumnKind] = {"delay": "numeric", "carrier": "categorical"}
    reference = build_reference(_with_missing(rng, 20_000, 0.049), kinds)
    # A rise of 3 points is below the default limit (5 points) ...
    modest = _with_missing(rng, 20_000, 0.08)
    assert not drift_report(reference, modest).data_quality.null_share_increases
    # ... and above a stricter one set in the policy.
    strict = policy_from_dict({"max_null_share_increase": 0.02})
    options = DriftOptions(max_null_share_increase=strict.monitoring.max_null_share_increase)
    assert set(drift_report(reference, modest, options).data_quality.null_share_increases) == set(kinds)
    # Undrifted missing share at min_rows, even with a limit of 0: no more than alpha false alarms.
    alarms = 0
    zero = DriftOptions(max_null_share_increase=0.0)
    for _ in range(BATCHES):
        cur = _with_missing(rng, MIN_ROWS, 0.049)
        alarms += bool(drift_report(reference, cur, zero).data_quality.null_share_increases)
    assert alarms <= 2 * MAX_ALARMS, alarms  # two columns, each at most 5 % (Fisher's test is conservative)


def test_null_share_test_is_fishers_one_sided_exact_test() -> None:
    from scipy import stats

    p_value, rose = null_share_test(49, 1000, 168, 500, 0.05, 0.05)
    assert p_value == pytest.approx(stats.fisher_exact([[168, 332], [49, 951]], alternative="greater").pvalue)
    assert rose
    assert null_share_test(49, 1000, 0, 0, 0.05, 0.05) == (None, False)
    assert null_share_test(49, 1000, 20, 500, 0.05, 0.05)[1] is False  # a fall is never a rise


def test_policy_carries_the_missing_share_limit() -> None:
    assert Policy().monitoring.max_null_share_increase == 0.05
    with pytest.raises(ValueError, match="max_null_share_increase"):
        policy_from_dict({"max_null_share_increase": 1.5})


def test_sparse_count_tests_use_a_permutation_p_value() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"wide": _L1000[rng.choice(1000, 800, p=_Z1000)]})
    reference = build_reference(ref, {"wide": "categorical"})
    col = drift_report(reference, pd.DataFrame({"wide": _L1000[rng.choice(1000, 600, p=_Z1000)]})).column("wide")
    assert col.test == CHI2 and col.p_value_method == MONTE_CARLO
    assert col.p_value is not None and col.p_value >= 1 / (DriftOptions().null_draws + 1)


# --------------------------------------------------------------------------------------------------
# Fault 18: the drift table names its columns
# --------------------------------------------------------------------------------------------------


def test_drift_table_rows_name_their_columns() -> None:
    from mlops_assets.assets.monitoring import drift_table

    rng = np.random.default_rng(18)
    frame = _frame(rng, 2000)
    report = drift_report(build_reference(frame, KINDS), _frame(rng, 600))
    table = drift_table(report)
    records: list[dict[str, Any]] = [dict(r.data) for r in table.records]
    assert [r["column"] for r in records] == list(KINDS)
    assert {c.name for c in table.schema.columns} >= {"column", "test", "drifted", "null_share_current"}
    assert all(r["test"] for r in records)


def test_drift_report_asset_table_reads_back_with_column_names(tmp_path: Any) -> None:
    # The asset itself, on a registry whose production model carries a drift reference: the metadata
    # table's rows name their columns (they were all None), and the missing-share rule is wired in.
    from mlops_assets.demo_data.synthetic import generate
    from mlops_assets.ml.drift import spec_columns
    from mlops_assets.resources import ArtifactStoreResource, ModelRegistryResource
    from mlops_assets.storage.registry import Lineage
    from mlops_assets_tests.support import model_graph

    # The asset and its check as the code location builds them for the synthetic model (synthetic/drift_report).
    g = model_graph("synthetic")
    drift_report_asset = next(a for a in g.assets if g.key("drift_report") in a.keys)
    no_drift = next(c for c in g.checks if dg.AssetCheckKey(g.key("drift_report"), "no_drift") in c.check_keys)
    spec = g.model.spec()
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    registry = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}")
    train = generate(3000, seed=1)
    reference = build_reference(train, spec_columns(spec))
    stored = artifacts.open().put_bytes(reference.to_json().encode(), ".json")
    model = artifacts.open().put_bytes(b"model", ".skops")
    with registry.open() as reg:
        reg.register_version(
            spec.name,
            model,
            Lineage(("v1",), "run-1", "1", "abc", "fp"),
            {"drift_reference": stored.to_dict()},
            {},
        )
        for stage in ("Staging", "Production"):
            reg.transition(spec.name, 1, stage, actor="test", reason="test", evidence={})
    current = generate(800, seed=2)
    gone = spec.features[0]
    current[gone] = None  # every value of one input missing: a rise in missing values, failed closed
    result = drift_report_asset(features=current, artifacts=artifacts, registry=registry)
    assert isinstance(result, dg.MaterializeResult) and result.metadata is not None
    records = [dict(r.data) for r in result.metadata["columns"].records]
    assert [r["column"] for r in records] == list(spec.features)
    assert all(r["test"] for r in records)
    by_name = {r["column"]: r for r in records}
    assert by_name[gone]["drifted"] and by_name[gone]["null_share_rise"] and by_name[gone]["reason"] == NO_VALUES
    assert result.metadata["null_share_increases"] == gone
    check = no_drift(result.value)
    assert not check.passed
    assert f"failed closed: {gone}" in (check.description or "")
    assert f"missing values rose: {gone}" in (check.description or "")


def test_sequential_p_value_stops_at_the_hits_th_exceedance() -> None:
    from mlops_assets.ml.drift import sequential_p_value

    stream = iter(np.arange(1000.0) % 10)  # every tenth draw is 9

    def null(n: int) -> np.ndarray:
        return np.array([next(stream) for _ in range(n)])

    # 9.0 is reached by draws 10, 20, ...: the 20th hit is draw 200, p = 20/200.
    assert sequential_p_value(9.0, 500, null) == pytest.approx(0.1)
    # Never reached in 500 draws: the fixed-size p-value (1 + 0)/(500 + 1).
    assert sequential_p_value(100.0, 500, lambda n: np.zeros(n)) == pytest.approx(1 / 501)
