"""Typed monitoring summaries: they own the metadata keys between the monitoring assets and the retrain sensors."""

import json
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ml.summaries import DriftSummary, PerformanceSummary
from mlops_assets.resources import ModelRegistryResource
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.test_lifecycle import ROWS, promoted  # noqa: F401 (the fixture)

pytestmark = pytest.mark.wiring

#: The synthetic model's graph, as the lifecycle fixture runs it: assets ``synthetic/<asset>``.
G = model_graph("synthetic")

_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: ", " not in s and s != "none"
)
_text = st.none() | st.text(min_size=1, max_size=20)
_version = st.none() | st.integers(min_value=1, max_value=10**6)
_share = st.none() | st.floats(min_value=0, max_value=1)
_number = st.none() | st.floats(allow_nan=False, allow_infinity=False)

drift_summaries = st.builds(
    DriftSummary,
    compared_with_model=_text,
    compared_with_version=_version,
    dataset_drift=st.none() | st.booleans(),
    drifted_share=_share,
    n_drifted=st.none() | st.integers(min_value=0, max_value=500),
    drifted_columns=st.lists(_names, max_size=5).map(tuple),
    null_share_increases=st.lists(_names, max_size=5).map(tuple),
    reason=_text,
)
performance_summaries = st.builds(
    PerformanceSummary,
    model=_text,
    production_version=_version,
    metric=_text,
    realised_metric=_number,
    sla_floor=_number,
    sla_breached=st.none() | st.booleans(),
    labelled_rows=st.none() | st.integers(min_value=0, max_value=10**9),
    holdout_metric=_number,
    reason=_text,
)


def _through_dagster(metadata: dict) -> dict:
    """What a sensor reads back from an event: the values of the normalized metadata."""
    event = dg.AssetMaterialization(asset_key="report", metadata=metadata)
    return {k: v.value for k, v in event.metadata.items()}


@settings(max_examples=200, deadline=None)
@given(drift_summaries)
def test_drift_summary_round_trips_through_metadata(summary: DriftSummary) -> None:
    assert DriftSummary.from_metadata(summary.to_metadata()) == summary
    assert DriftSummary.from_metadata(_through_dagster(summary.to_metadata())) == summary


@settings(max_examples=200, deadline=None)
@given(performance_summaries)
def test_performance_summary_round_trips_through_metadata(summary: PerformanceSummary) -> None:
    assert PerformanceSummary.from_metadata(summary.to_metadata()) == summary
    assert PerformanceSummary.from_metadata(_through_dagster(summary.to_metadata())) == summary


def test_drift_metadata_keeps_the_keys_the_ui_shows() -> None:
    metadata = DriftSummary(
        compared_with_model="flights",
        compared_with_version=3,
        dataset_drift=True,
        drifted_share=0.625,
        n_drifted=5,
        drifted_columns=("age", "income"),
    ).to_metadata()
    assert metadata["compared_with"] == "flights v3"  # display, for people
    assert (metadata["compared_with_model"], metadata["compared_with_version"]) == ("flights", 3)  # identity
    assert metadata["drifted_columns"] == "age, income" and metadata["null_share_increases"] == "none"
    assert DriftSummary(reason="no model in production").to_metadata() == {
        "compared_with": "none",
        "drifted_columns": "none",
        "null_share_increases": "none",
        "reason": "no model in production",
    }


def test_old_drift_record_with_only_the_display_string_has_unknown_identity() -> None:
    old = {"compared_with": "flights v3", "dataset_drift": True, "drifted_share": 0.6, "drifted_columns": "a, b"}
    summary = DriftSummary.from_metadata(old)
    assert summary.dataset_drift is True and summary.drifted_columns == ("a", "b")
    assert summary.compared_with_model is None and summary.compared_with_version is None
    assert not summary.identity_known
    assert not summary.measured_against("flights", 3)  # fails closed: the display string is never parsed


def test_drift_identity_is_model_and_version_not_the_display_label() -> None:
    summary = DriftSummary(compared_with_model="flights", compared_with_version=3, dataset_drift=True)
    assert summary.measured_against("flights", 3)
    assert not summary.measured_against("flights", 4)
    assert not summary.measured_against("churn", 3)
    assert not summary.measured_against("flights", None)
    # A reworded display label in the record changes nothing: identity comes from the typed keys.
    relabelled = {**summary.to_metadata(), "compared_with": "Flights delay model, version three"}
    assert DriftSummary.from_metadata(relabelled).measured_against("flights", 3)


def test_old_performance_record_without_model_name_has_unknown_identity() -> None:
    old = {"metric": "roc_auc", "production_version": 2, "sla_breached": True, "realised_metric": 0.5}
    summary = PerformanceSummary.from_metadata(old)
    assert summary.production_version == 2 and summary.sla_breached is True and summary.model is None
    assert not summary.identity_known and not summary.measured("flights", 2)


def test_malformed_metadata_reads_as_unknown_never_raises() -> None:
    bad = {
        "compared_with_version": "three",
        "compared_with_model": 7,
        "dataset_drift": "yes",
        "drifted_share": float("nan"),
        "n_drifted": True,
        "drifted_columns": 3,
        "production_version": [2],
        "sla_breached": 1,
        "realised_metric": "high",
        "labelled_rows": None,
    }
    assert DriftSummary.from_metadata(bad) == DriftSummary()
    assert PerformanceSummary.from_metadata(bad) == PerformanceSummary()
    assert (
        DriftSummary.from_metadata({}) == DriftSummary()
        and PerformanceSummary.from_metadata({}) == PerformanceSummary()
    )


# -- the real writer: drift_report's metadata, read back by the model's drift sensor -----------------------------------


@pytest.mark.e2e
def test_drift_report_writes_the_typed_identity_the_drift_sensor_compares(promoted, tmp_path: Path) -> None:  # noqa: F811
    land, run, _registry, instance, _v1 = promoted  # the first model is in production
    shifted = land("synthetic_v002.csv", seed=2, start_id=ROWS, shift=2.0)
    result = run(shifted)
    event = next(
        e.materialization for e in result.get_asset_materialization_events() if e.asset_key == G.key("drift_report")
    )
    metadata = {k: v.value for k, v in event.metadata.items()}
    summary = DriftSummary.from_metadata(metadata)
    assert (summary.compared_with_model, summary.compared_with_version) == ("synthetic", 1)
    assert summary.dataset_drift is True and summary.identity_known
    assert metadata["compared_with"] == "synthetic v1"  # the display string the UI shows is kept
    assert {"age", "income"} <= set(summary.drifted_columns)
    assert summary.n_drifted == len(summary.drifted_columns)
    # The sensor reads that record: measured against the model now in production, so it is kept (until labels
    # arrive, a rollout ends, or a retrain is requested) — never dropped as measured against another model.
    resources = {"registry": ModelRegistryResource(url=f"sqlite:///{tmp_path / 'data' / 'registry.db'}")}
    drift_sensor = next(s for s in G.defs.sensors or [] if s.name == G.name("drift_sensor"))
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        tick = drift_sensor(context)
    assert isinstance(tick, dg.SensorResult)
    requested = [r.partition_key for r in tick.run_requests or []]
    assert requested == [shifted] or shifted in json.loads(tick.cursor or "{}")["pending"], tick.skip_reason
    assert "no drift against the production model" not in str(tick.skip_reason)
