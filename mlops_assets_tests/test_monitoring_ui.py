"""What the monitoring assets show in the Dagster UI: tables that name their rows and say which way passes, short
inline histograms, the data-quality warning, a labelled A/B test and a readable SLA (issue 16, item 2).

Pure display functions are checked on reports built by the drift engine (core); the assets and checks of the
synthetic model are invoked directly, and one materialization is read back the way the UI parses it (wiring).
"""

import json
import math
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml import abtest, drift
from mlops_assets.ml.drift import (
    MARKDOWN_INLINE_LIMIT,
    NEW_CATEGORIES,
    NULL_SHARE_ROSE,
    OUT_OF_RANGE,
    ColumnKind,
    build_reference,
    column_histogram,
    column_table_rows,
    data_quality_findings,
    data_quality_rows,
    decided_by,
    drift_report,
    histogram_columns,
    histogram_markdown,
    psi_band_bounds,
)
from mlops_assets.ml.policy import SECTION_OF, MonitoringPolicy, Policy, PolicyError, policy_from_dict
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM

pytestmark = pytest.mark.core

KINDS: dict[str, ColumnKind] = {"x": "numeric", "c": "categorical", "flag": "numeric"}


def _frame(rng: np.random.Generator, n: int, *, shift: float = 0.0, new: int = 0, nulls: float = 0.0) -> pd.DataFrame:
    c = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    c[:new] = [f"new{i % 3}" for i in range(new)]
    x = rng.normal(shift, 1.0, n)
    x[: int(nulls * n)] = np.nan
    return pd.DataFrame({"x": x, "c": c, "flag": (rng.random(n) < 0.3).astype(float)})


def _report(n_ref: int = 3000, n_cur: int = 1500, seed: int = 1, **current: Any) -> drift.DriftReport:
    rng = np.random.default_rng(seed)
    reference = build_reference(_frame(rng, n_ref), KINDS, ranges={"x": (-10.0, 10.0)})
    return drift_report(reference, _frame(rng, n_cur, **current))


# --------------------------------------------------------------------------------------------------
# The per-column table: name and decision first, which rule decided, PSI as information
# --------------------------------------------------------------------------------------------------


def test_every_row_names_its_column_and_the_decision_comes_first() -> None:
    report = _report(shift=1.0)
    rows = column_table_rows(report)
    assert [r["column"] for r in rows] == list(KINDS)
    assert all(isinstance(r["column"], str) and r["column"] for r in rows)
    assert drift.COLUMN_TABLE_ORDER[:4] == ("column", "drifted", "decided_by", "psi_band")
    assert set(rows[0]) == set(drift.COLUMN_TABLE_ORDER)
    assert [r["drifted"] for r in rows] == [c.drifted for c in report.columns]
    descriptions = drift.column_table_descriptions(report.options)
    assert set(descriptions) == set(drift.COLUMN_TABLE_ORDER)
    assert "Passes when false" in descriptions["drifted"] and "THE DECISION" in descriptions["drifted"]
    assert "not the decision" in descriptions["psi_beyond_noise"]
    assert "passes when >= threshold" in descriptions["p_value_adjusted"]


def test_psi_beyond_noise_is_not_the_decision_and_the_table_says_so() -> None:
    # What the flights demo showed: PSI above its critical value in the "stable" band on an undrifted column.
    # With 30,000 rows a side a shift of 0.05 sd is detectable (PSI > its 95 % null quantile) but far below the
    # effect the decision needs (Wasserstein 0.1): the flag answers "detectable?", the decision "large enough?".
    rng = np.random.default_rng(16)
    reference = build_reference(pd.DataFrame({"x": rng.normal(0, 1, 30_000)}), {"x": "numeric"})
    col = drift_report(reference, pd.DataFrame({"x": rng.normal(0.05, 1, 30_000)})).column("x")
    assert col.psi is not None and col.psi_critical is not None
    assert col.psi_drifted and col.psi > col.psi_critical and col.psi_band == drift.PSI_STABLE
    assert not col.drifted and col.statistic is not None and col.statistic < col.threshold
    (row,) = column_table_rows(drift_report(reference, pd.DataFrame({"x": rng.normal(0.05, 1, 30_000)})))
    assert row["psi_beyond_noise"] is True and row["drifted"] is False
    assert row["psi_band"] == "stable (< 0.1)"
    assert row["decided_by"].startswith("wasserstein ") and " < 0.1" in row["decided_by"]
    assert "psi_drifted" not in row


def test_decided_by_names_the_rule_with_its_numbers() -> None:
    base = dict(
        column="x",
        kind="numeric",
        p_value=None,
        p_value_adjusted=None,
        reason=None,
        error_bound=0.0,
        psi=0.01,
        psi_band=drift.PSI_STABLE,
        psi_critical=0.02,
        psi_drifted=False,
        psi_buckets=10,
        n_reference=100,
        n_current=100,
    )
    ks = drift.ColumnDrift(
        **base, test="ks", statistic=0.3, drift_score=0.002, threshold=0.05, drifted=True, p_value_method="asymptotic"
    )
    assert decided_by(ks, 0.05) == "ks p_adj 0.002 < 0.05"
    calm = drift.ColumnDrift(**base, test="ks", statistic=0.1, drift_score=0.31, threshold=0.05, drifted=False)
    assert decided_by(calm, 0.05) == "ks p_adj 0.31 ≥ 0.05"
    small = drift.ColumnDrift(
        **base, test="wasserstein", statistic=0.04, drift_score=0.04, threshold=0.1, drifted=False
    )
    assert decided_by(small, 0.05) == "wasserstein 0.04 < 0.1"
    noise = drift.ColumnDrift(
        **base, test="jensenshannon", statistic=0.12, drift_score=0.12, threshold=0.1, drifted=False, critical=0.15
    )
    assert decided_by(noise, 0.05) == "jensenshannon 0.12 ≥ 0.1 but ≤ noise 0.15"
    real = drift.ColumnDrift(
        **base, test="wasserstein", statistic=0.27, drift_score=0.27, threshold=0.1, drifted=True, critical=0.086
    )
    assert decided_by(real, 0.05) == "wasserstein 0.27 ≥ 0.1 and > noise 0.086"
    assert drift.drifted_by_test(real) and not drift.drifted_by_test(noise) and drift.drifted_by_test(ks)
    rose = drift.ColumnDrift(
        **{**base, "reason": drift.NO_VALUES},
        test="wasserstein",
        statistic=None,
        drift_score=None,
        threshold=0.1,
        drifted=True,
        null_share_reference=0.01,
        null_share_current=1.0,
        null_share_p_value=1e-9,
        null_share_rise=True,
    )
    assert decided_by(rose, 0.05) == "failed closed: no values; missing share 1.0% → 100.0% (rise > 5 points, p 1e-09)"
    both_empty = drift.ColumnDrift(
        **{**base, "reason": drift.NO_VALUES_EITHER_SIDE},
        test="wasserstein",
        statistic=None,
        drift_score=None,
        threshold=0.1,
        drifted=False,
    )
    assert decided_by(both_empty, 0.05) == "unchanged: no values on either side"


def test_decided_by_agrees_with_the_decision_on_real_reports() -> None:
    small = (_report(n_ref=500, n_cur=500), _report(n_ref=500, n_cur=500, shift=0.3))
    reports = (_report(), _report(shift=0.6), *small, _report(nulls=0.4))
    seen = set()
    for report in reports:
        for col in report.columns:
            # The engine's decision is the test's verdict, the missing-share rule or failing closed: nothing else.
            failed_closed = col.reason is not None and col.reason != drift.NO_VALUES_EITHER_SIDE
            assert (drift.drifted_by_test(col) or col.null_share_rise or failed_closed) == col.drifted
            text = decided_by(col, report.options.max_null_share_increase)
            assert text.startswith(col.test) or failed_closed
            assert ((" < " in text and "p_adj" in text) or " and > noise " in text) == drift.drifted_by_test(col), text
            assert ("missing share" in text) == col.null_share_rise
            seen.add((col.test, col.drifted))
    assert {("ks", True), ("ks", False), ("wasserstein", True), ("wasserstein", False)} <= seen


def test_psi_bands_carry_their_bounds() -> None:
    bands = (0.1, 0.25)
    assert psi_band_bounds(drift.PSI_STABLE, bands) == "stable (< 0.1)"
    assert psi_band_bounds(drift.PSI_MODERATE, bands) == "moderate (0.1–0.25)"
    assert psi_band_bounds(drift.PSI_SIGNIFICANT, bands) == "significant (≥ 0.25)"
    assert psi_band_bounds(None, bands) is None


# --------------------------------------------------------------------------------------------------
# Data quality: a table, and the findings the non-blocking check warns about
# --------------------------------------------------------------------------------------------------


def test_new_categories_null_rises_and_out_of_range_values_are_findings_naming_their_columns() -> None:
    rng = np.random.default_rng(3)
    reference = build_reference(_frame(rng, 3000), KINDS, ranges={"x": (-3.0, 3.0)})
    current = _frame(rng, 1000, new=30, nulls=0.3)
    current["x"] = current["x"].clip(-2.9, 2.9)
    current.loc[990:, "x"] = 50.0  # ten values above the spec's max
    report = drift_report(reference, current)
    findings = data_quality_findings(report, 0.0)
    assert [(f.column, f.finding) for f in findings] == [
        ("x", NULL_SHARE_ROSE),
        ("x", OUT_OF_RANGE),
        ("c", NEW_CATEGORIES),
    ]
    new = next(f for f in findings if f.finding == NEW_CATEGORIES)
    assert new.detail == "3 new categories in 3.00% of rows: new0 (10), new1 (10), new2 (10)"
    assert (
        next(f for f in findings if f.finding == OUT_OF_RANGE).detail
        == "1.00% of rows outside [-3, 3] (0 below, 10 above)"
    )
    # The policy's limit is a share of rows: 3 % of rows with new categories pass a 5 % limit.
    assert [f.finding for f in data_quality_findings(report, 0.05)] == [NULL_SHARE_ROSE, OUT_OF_RANGE]

    rows = {r["column"]: r for r in data_quality_rows(report, 0.0)}
    assert list(rows) == list(KINDS)
    assert rows["c"]["flagged"] and rows["c"]["new_categories"] == 3
    assert rows["c"]["new_category_share"] == pytest.approx(0.03)
    assert rows["c"]["new_category_examples"] == "new0 (10), new1 (10), new2 (10)"
    assert (
        rows["x"]["flagged"] and rows["x"]["null_share_rise"] and rows["x"]["out_of_range_share"] == pytest.approx(0.01)
    )
    assert rows["x"]["allowed_range"] == "[-3, 3]" and "missing share 0.0% → 30.0%" in rows["x"]["finding"]
    assert not rows["flag"]["flagged"] and rows["flag"]["finding"] == "ok" and rows["flag"]["new_categories"] is None
    assert not data_quality_rows(report, 0.05)[1]["flagged"]  # c: within the looser limit
    assert drift.DATA_QUALITY_TABLE_ORDER[:3] == ("column", "flagged", "finding")
    assert set(drift.data_quality_descriptions(report.options, 0.0)) == set(drift.DATA_QUALITY_TABLE_ORDER)


def test_a_clean_batch_has_no_findings_and_a_pooled_reference_does_not_warn() -> None:
    assert data_quality_findings(_report(), 0.0) == ()
    assert all(r["finding"] == "ok" and not r["flagged"] for r in data_quality_rows(_report(), 0.0))
    rng = np.random.default_rng(5)
    wide = pd.DataFrame({"c": [f"k{i}" for i in rng.integers(0, 50, 2000)]})
    reference = build_reference(wide, {"c": "categorical"}, max_categories=10)  # 40 categories pooled
    report = drift_report(reference, pd.DataFrame({"c": ["k1"] * 90 + ["brand_new"] * 10}))
    assert data_quality_findings(report, 0.0) == ()
    (row,) = data_quality_rows(report, 0.0)
    assert not row["flagged"] and "pooled its rare categories" in row["finding"]


def test_the_policy_carries_the_new_category_limit() -> None:
    assert MonitoringPolicy().max_new_category_share == 0.0
    assert SECTION_OF["max_new_category_share"] == "monitoring"
    assert policy_from_dict({"monitoring": {"max_new_category_share": 0.01}}).monitoring.max_new_category_share == 0.01
    assert Policy().to_dict()["monitoring"]["max_new_category_share"] == 0.0
    with pytest.raises(PolicyError, match="max_new_category_share must be <= 1"):
        policy_from_dict({"max_new_category_share": 1.5})


# --------------------------------------------------------------------------------------------------
# Histograms: reference vs current, short enough for the UI to show inline
# --------------------------------------------------------------------------------------------------


def test_histograms_are_drawn_for_the_drifted_columns_topped_up_by_psi() -> None:
    report = _report(shift=1.0)
    assert report.column("x").drifted and not report.column("c").drifted
    chosen = histogram_columns(report)
    assert chosen[0] == "x" and len(chosen) == 3 and set(chosen) == set(KINDS)
    assert histogram_columns(report, most=5, least=1) == [c.column for c in report.columns if c.drifted]


def test_a_numeric_histogram_uses_the_reference_deciles_and_counts_missing_values() -> None:
    rng = np.random.default_rng(9)
    reference = build_reference(pd.DataFrame({"x": rng.normal(0, 1, 5000)}), {"x": "numeric"})
    current = pd.Series(np.concatenate([rng.normal(1.0, 1, 900), [np.nan] * 100]))
    hist = column_histogram(reference.column("x"), current)
    assert hist.unit == "reference decile bin" and len(hist.labels) == 11 and hist.labels[-1] == "missing"
    assert hist.labels[0].startswith("≤ ") and hist.labels[-2].startswith("> ")
    assert hist.reference[:10] == pytest.approx([0.1] * 10, abs=0.002) and hist.reference[-1] == 0.0
    assert sum(hist.current) == pytest.approx(1.0) and hist.current[-1] == pytest.approx(0.1)
    assert hist.current[-2] > hist.reference[-2]  # the shift moves mass into the top decile


def test_a_categorical_histogram_keeps_the_largest_categories_and_pools_the_rest() -> None:
    rng = np.random.default_rng(2)
    names = np.array([f"category_with_a_long_name_{i:03d}" for i in range(200)])
    weights = 1.0 / np.arange(1, 201)
    weights /= weights.sum()
    reference = build_reference(pd.DataFrame({"c": names[rng.choice(200, 20_000, p=weights)]}), {"c": "categorical"})
    cur = np.concatenate([names[rng.choice(200, 1900, p=weights[::-1])], ["never_seen"] * 100])
    hist = column_histogram(reference.column("c"), pd.Series(cur))
    assert len(hist.labels) == drift.HISTOGRAM_CATEGORIES + 2 and hist.labels[-2:] == ("other", "new (1)")
    assert sum(hist.reference) == pytest.approx(1.0) and sum(hist.current) == pytest.approx(1.0)
    assert hist.current[-1] == pytest.approx(0.05) and hist.reference[-1] == 0.0
    text = histogram_markdown(hist)
    assert len(text) < MARKDOWN_INLINE_LIMIT and "category_with…" in text and "new (1)" in text


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_histogram_markdown_stays_inline_and_draws_both_sides(shift: float) -> None:
    report = _report(shift=shift, nulls=0.2)
    rng = np.random.default_rng(1)
    reference = build_reference(_frame(rng, 3000), KINDS)
    current = _frame(rng, 1500, shift=shift, nulls=0.2)
    for name in KINDS:
        col = report.column(name)
        text = histogram_markdown(
            column_histogram(reference.column(name), current[name]), col, decided_by(col, 0.05) + "; x" * 30
        )
        assert len(text) < MARKDOWN_INLINE_LIMIT, len(text)
        assert text.startswith(f"**`{name}`**: ") and "reference" in text and "current" in text and "█" in text
        # No line longer than the UI shows without clipping (it does not wrap markdown in its metadata table).
        assert max(len(line) for line in text.splitlines()) <= 60


def test_bars_share_one_scale_and_clip_the_pooled_bucket() -> None:
    hist = drift.ColumnHistogram("c", "category", ("a", "other"), (0.2, 0.8), (0.1, 0.9))
    lines = histogram_markdown(hist).splitlines()
    a, other = next(x for x in lines if x.startswith("a ")), next(x for x in lines if x.startswith("other"))
    assert a.count("█") == 10 + 5  # 0.2 is the scale (10 blocks); 0.1 is half of it
    assert other.count("»") == 2


# --------------------------------------------------------------------------------------------------
# The A/B test, labelled
# --------------------------------------------------------------------------------------------------

PER_VERSION = {
    "2024-08": {CHAMPION_ARM: (1500, 2000), CHALLENGER_ARM: (1700, 2000)},
    "2024-07": {CHAMPION_ARM: (2400, 3000), CHALLENGER_ARM: (820, 1000)},
    "2024-06": {CHAMPION_ARM: (900, 1000), CHALLENGER_ARM: (0, 0)},
}


def test_ab_metadata_labels_pooled_and_stratified_numbers_and_carries_the_interval() -> None:
    pooled = abtest.ab_test_by_stratum(abtest.plan_ab_test(0.8, 0.02), PER_VERSION)
    metadata = pooled.to_metadata()
    test = pooled.result.test
    assert test is not None
    assert metadata["champion_accuracy_pooled"] == pytest.approx(3900 / 5000)
    assert metadata["challenger_accuracy_pooled"] == pytest.approx(2520 / 3000)
    assert metadata["difference"] == pytest.approx(test.difference)  # stratified, challenger − champion
    assert metadata["difference_ci_low"] < metadata["difference"] < metadata["difference_ci_high"]
    assert metadata["confidence_level"] == pytest.approx(0.95)
    assert "champion_accuracy" not in metadata and "challenger_accuracy" not in metadata
    assert all(isinstance(v, float) for k, v in metadata.items() if k.startswith(("difference", "champion_acc")))
    text = pooled.reading()
    assert len(text) < MARKDOWN_INLINE_LIMIT
    assert (
        "served accuracy, pooled" in text and "challenger − champion" in text and "stratified by data version" in text
    )
    assert f"{test.difference:+.4f}" in text and f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}]" in text
    assert f"({2520 / 3000 - 3900 / 5000:+.4f})" in text  # the pooled gap, shown as what it is
    assert "Passes" in text and "p < 0.05" in text and "2 of 3 data version(s)" in text


def test_ab_reading_without_a_comparison_says_so() -> None:
    pooled = abtest.ab_test_by_stratum(abtest.plan_ab_test(0.8, 0.02), {"2024-06": PER_VERSION["2024-06"]})
    assert "no test" in pooled.reading() and "difference" not in pooled.to_metadata()


# --------------------------------------------------------------------------------------------------
# Wiring: the assets and checks of the synthetic model, and the UI's reading of a table
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def synthetic_drift(tmp_path: Path) -> Any:
    """The synthetic model's drift_report asset and checks, with a production model carrying a drift reference."""
    from mlops_assets.demo_data.synthetic import generate
    from mlops_assets.resources import ArtifactStoreResource, ModelRegistryResource
    from mlops_assets.storage.registry import Lineage
    from mlops_assets_tests.support import model_graph

    g = model_graph("synthetic")
    asset = next(a for a in g.assets if g.key("drift_report") in a.keys)

    def check(name: str) -> Any:
        return next(c for c in g.checks if dg.AssetCheckKey(g.key("drift_report"), name) in c.check_keys)

    spec = g.model.spec()
    artifacts = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    registry = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}")
    reference = build_reference(generate(3000, seed=1), drift.spec_columns(spec))
    stored = artifacts.open().put_bytes(reference.to_json().encode(), ".json")
    model = artifacts.open().put_bytes(b"model", ".skops")
    with registry.open() as reg:
        reg.register_version(
            spec.name, model, Lineage(("v1",), "run-1", "1", "abc", "fp"), {"drift_reference": stored.to_dict()}, {}
        )
        for stage in ("Staging", "Production"):
            reg.transition(spec.name, 1, stage, actor="test", reason="test", evidence={})

    def run(current: pd.DataFrame) -> tuple[dg.MaterializeResult, Any, Any]:
        result = asset(features=current, artifacts=artifacts, registry=registry)
        return result, check("no_drift")(result.value), check("data_quality")(result.value)

    return generate, run


@pytest.mark.wiring
def test_new_categories_warn_in_data_quality_while_no_drift_stays_green(synthetic_drift: Any) -> None:
    generate, run = synthetic_drift
    current = generate(800, seed=2)
    current["region"] = current["region"].astype(object)
    current.loc[:39, "region"] = "central"  # 5 % of rows in a region the training data never had
    result, no_drift, quality = run(current)
    assert no_drift.passed
    assert not quality.passed and quality.severity == dg.AssetCheckSeverity.WARN
    assert quality.description == "1 of 6 columns: region: 1 new category in 5.00% of rows: central (40)"
    assert quality.metadata["flagged_columns"].value == "region"
    assert quality.metadata["new_category_share_max"].value == pytest.approx(0.05)
    assert quality.metadata["n_flagged"].value == 1.0
    table = result.metadata["data_quality"]
    rows = {r.data["column"]: r.data for r in table.records}
    assert rows["region"]["flagged"] is True and rows["region"]["new_category_examples"] == "central (40)"
    assert [c.name for c in table.schema.columns][:3] == ["column", "flagged", "finding"]
    assert result.metadata["data_quality_flagged"] == "region"
    # Clean data: both pass.
    _, no_drift, quality = run(generate(800, seed=3))
    assert no_drift.passed and quality.passed and quality.metadata["flagged_columns"].value == "none"


@pytest.mark.wiring
def test_drift_report_metadata_is_readable(synthetic_drift: Any) -> None:
    generate, run = synthetic_drift
    result, _, _ = run(generate(800, seed=2, shift=1.5))
    metadata = result.metadata
    columns = metadata["columns"]
    names = [c.name for c in columns.schema.columns]
    assert names[:3] == ["column", "drifted", "decided_by"] and "psi_drifted" not in names
    assert all(c.description for c in columns.schema.columns)
    # Columns empty in every row are left out (p-values: this reference is large, every test is a distance).
    assert all(any(r.data.get(n) is not None for r in columns.records) for n in names)
    histograms = {k: v for k, v in metadata.items() if k.startswith("histogram_")}
    drifted = metadata["drifted_columns"].split(", ")
    assert drifted != ["none"] and 3 <= len(histograms) <= 5
    assert {f"histogram_{c}" for c in drifted[:5]} <= set(histograms)
    assert all(
        isinstance(v, dg.MarkdownMetadataValue) and len(v.value) < MARKDOWN_INLINE_LIMIT for v in histograms.values()
    )
    assert isinstance(metadata["drifted_share"], float)
    assert metadata["drifted_share"] == float(f"{metadata['drifted_share']:.4g}")
    assert "data_quality" in metadata and isinstance(metadata["data_quality"], dg.TableMetadataValue)


@pytest.mark.wiring
def test_the_ui_reads_a_name_in_every_row_of_a_materialized_drift_table(synthetic_drift: Any) -> None:
    """Through the instance and the webserver's serialization, parsed as the UI's TableMetadataEntry does:
    ``JSON.parse(record)[column.name]`` for each schema column."""
    from dagster_graphql.implementation.events import iterate_metadata_entries

    generate, run = synthetic_drift
    result, _, _ = run(generate(800, seed=2, shift=1.5))

    @dg.asset(name="drift_report")
    def replay() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=result.metadata)

    with dg.instance_for_test() as instance:
        assert dg.materialize([replay], instance=instance).success
        event = instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1).records[0]
        stored = event.asset_materialization
        assert stored is not None
        entries = {e.label: e for e in iterate_metadata_entries(stored.metadata)}
    for label in ("columns", "data_quality"):
        table = entries[label].table
        records = [json.loads(r) for r in table.records]
        header = [c.name for c in table.schema.columns]
        assert header[0] == "column" and len(records) == 6
        cells = [[record.get(name) for name in header] for record in records]
        assert all(isinstance(row[0], str) and row[0] for row in cells), cells
    markdown = [e.md_str for label, e in entries.items() if label.startswith("histogram_")]
    assert markdown and all(text.startswith("**`") and len(text) < MARKDOWN_INLINE_LIMIT for text in markdown)


@pytest.mark.wiring
def test_performance_reading_states_the_direction_and_the_floor() -> None:
    from mlops_assets.assets.monitoring import sla_reading

    sla = {"metric": "roc_auc", "realised": 0.668012345, "holdout": 0.6830001, "floor": 0.6330001, "breached": False}
    sla["labelled_rows"] = 27000
    text = sla_reading(sla, 0.6, 0.05)
    assert text.split("  \n") == [
        "realised roc_auc 0.6680 ≥ floor 0.6330: within the SLA",
        "on 27000 labelled rows; passes when realised ≥ floor",
        "floor = max(metric_floor 0.6, holdout 0.6830 − 0.05)",
        "(0.05: policy max_realised_metric_drop)",
    ]
    breached = sla_reading({**sla, "realised": 0.61, "breached": True, "holdout": None, "floor": 0.6}, 0.6, 0.05)
    assert breached.startswith("realised roc_auc 0.6100 < floor 0.6000: **BREACHED**")
    assert breached.endswith("floor = metric_floor 0.6 (holdout unknown)")
    undefined = sla_reading({**sla, "realised": None}, 0.6, 0.05)
    assert "undefined" in undefined and "no verdict" in undefined
    # Short lines: the UI clips a value wider than its column.
    assert max(len(line) for t in (text, breached, undefined) for line in t.split("  \n")) <= 60


@pytest.mark.wiring
def test_readable_floats_stay_floats() -> None:
    from mlops_assets.assets.monitoring import _readable_floats

    out = _readable_floats({"a": 0.1111111111111111, "b": 3, "c": True, "d": "x", "e": math.inf, "f": 123456.789})
    assert out == {"a": 0.1111, "b": 3, "c": True, "d": "x", "e": math.inf, "f": 123457.0}
    assert type(out["a"]) is float and type(out["f"]) is float
