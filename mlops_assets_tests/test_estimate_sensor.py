"""The estimated-performance retrain sensor (``<model>__estimated_performance_sensor``), ticked on a real instance,
and (e2e) the ``performance_estimate`` asset of a promoted model, its check and ``performance_report``'s comparison.

Estimates are reported as ``performance_estimate`` writes them (runless materializations whose metadata comes from
:meth:`~mlops_assets.ml.summaries.EstimateSummary.to_metadata`); the production model lives in a real SQLite
registry (``World`` of ``test_retrain_sensors``); requests become runs as the daemon would make them.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_assets.ml.summaries import EstimateSummary
from mlops_assets.provenance import package_version
from mlops_assets.tags import DATA_VERSION_TAG, EVIDENCE_TAG, REASON_TAG
from mlops_assets_tests.test_retrain_sensors import MODEL, V1, V2, V3, V4, V5, World, no_request, only_request
from mlops_assets_tests.worlds import World as WorldOfLifecycle

pytestmark = pytest.mark.wiring

SENSOR = "estimated_performance_sensor"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(instance, tmp_path)
        yield w
        w.registry.close()


def labelled(world: World, *versions: str) -> None:
    """Labels that make a version labelled, as the labels asset writes them (flag and coverage)."""
    for version in versions:
        world.report("labels", version, labelled=True, coverage=1.0, labelled_rows=1000, rows=1000)


def estimate(world: World, version: str, *, below: bool, production: int = 1, model: str = MODEL) -> None:
    """A ``performance_estimate`` of ``version`` as the asset writes it."""
    value = 0.55 if below else 0.71
    summary = EstimateSummary(
        model=model,
        model_version=production,
        metric="roc_auc",
        estimated_metric=value,
        lower=value - 0.02,
        upper=value + 0.02,
        sla_floor=0.6,
        estimated_below_floor=below,
        rows=1000,
    )
    world.report("performance_estimate", version, **summary.to_metadata())


def test_an_estimated_breach_retrains_once_on_the_newest_labelled_version_before_its_own_labels(world: World) -> None:
    world.production(V1)
    labelled(world, V1, V2)
    estimate(world, V3, below=True)  # V3 has no labels: the estimate is all there is
    request = only_request(world.tick(SENSOR))
    assert request.partition_key == V2
    assert request.run_key == f"retrain:estimated_performance:{V2}:{package_version()}"
    assert request.tags[REASON_TAG] == "estimated_performance" and request.tags[DATA_VERSION_TAG] == V2
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert evidence["trigger"] == "performance_estimate" and evidence["data_version"] == V3
    assert (evidence["model"], evidence["production_version"]) == (MODEL, 1)
    assert evidence["estimated"] == 0.55 and evidence["floor"] == 0.6
    world.launch(request)
    # The same evidence again: nothing new on the next tick, and a re-materialized estimate does not fire again.
    no_request(world.tick(SENSOR))
    estimate(world, V3, below=True)
    assert "no estimated SLA breach" in no_request(world.tick(SENSOR))
    assert len(world.instance.get_run_records(dg.RunsFilter(job_name=world.g.name("retrain_job")))) == 1


def test_an_estimate_within_the_sla_requests_nothing_and_clears_a_waiting_breach(world: World) -> None:
    world.production(V1)
    labelled(world, V1, V2)
    estimate(world, V3, below=False)
    assert "no estimated SLA breach" in no_request(world.tick(SENSOR))
    # A breach held by the cooldown waits; a later estimate within the SLA clears it.
    world.launch(dg.RunRequest(run_key="x", tags={REASON_TAG: "manual", DATA_VERSION_TAG: V1}))
    estimate(world, V4, below=True)
    assert "cooldown" in no_request(world.tick(SENSOR))
    estimate(world, V5, below=False)
    assert "no estimated SLA breach" in no_request(world.tick(SENSOR))


def test_no_labelled_data_newer_than_the_production_model_waits_for_labels(world: World) -> None:
    world.production(V1, V2)  # trained on V1 and V2
    labelled(world, V1, V2)
    estimate(world, V3, below=True)
    reason = no_request(world.tick(SENSOR))
    assert "already in" in reason and "waiting for newer labels" in reason
    labelled(world, V3)  # the labels of V3 land: now there is something new to train on
    assert only_request(world.tick(SENSOR)).partition_key == V3


def test_an_estimate_of_another_model_version_is_dropped(world: World) -> None:
    world.production(V1)
    labelled(world, V1, V2)
    estimate(world, V3, below=True, production=7)
    assert "production is synthetic v1: dropped" in no_request(world.tick(SENSOR))


def test_the_trigger_can_be_switched_off(world: World) -> None:
    world.production(V1)
    labelled(world, V1, V2)
    world.set_retraining(triggers=["drift", "performance", "manual"])
    estimate(world, V3, below=True)
    assert "'estimated_performance' is not enabled" in no_request(world.tick(SENSOR))


def test_an_estimate_that_could_not_be_made_says_nothing(world: World) -> None:
    world.production(V1)
    labelled(world, V1, V2)
    summary = EstimateSummary(model=MODEL, model_version=1, metric="roc_auc", reason="no calibration map")
    world.report("performance_estimate", V3, **summary.to_metadata())
    assert "no estimated SLA breach" in no_request(world.tick(SENSOR))


# -- the asset, end to end ---------------------------------------------------------------------------------------------


def _materialized(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    assert len(events) == 1, key
    materialization = events[0].event_specific_data.materialization  # type: ignore[union-attr]
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.mark.e2e
def test_the_production_models_estimate_is_stored_checked_and_compared_with_the_labels(
    promoted_world: tuple[WorldOfLifecycle, str],
) -> None:
    world, _ = promoted_world
    registry = world.registry()
    try:
        production = registry.production_version(world.graph.model.name)
        assert production is not None and production.params.get("calibration_map"), "the promoted model has a map"
    finally:
        registry.close()
    key = world.land("synthetic_v002.csv", seed=2, start_id=50_000)
    selection = world.graph.keys("raw_data", "features", "predictions", "performance_estimate")
    result = world.run(key, selection=selection)
    assert result.success
    estimate = _materialized(result, world.graph.key("performance_estimate"))
    assert estimate["model_version"] == production.version and estimate["metric"] == "roc_auc"
    for m in ("roc_auc", "accuracy", "precision", "recall", "f1"):
        if f"estimated_{m}" in estimate:
            assert estimate[f"estimated_{m}_lower"] <= estimate[f"estimated_{m}"] <= estimate[f"estimated_{m}_upper"]
    assert isinstance(estimate["estimated_below_floor"], bool) and estimate["rows"] > 0
    assert estimate["estimated_below_floor"] == (estimate["estimated_roc_auc"] < estimate["sla_floor"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = checks["estimated_performance_within_sla"]
    assert check.passed == (not estimate["estimated_below_floor"])
    assert check.metadata["passes_when"].value == "observed >= threshold"
    # The labels land (here: the data file's own label column): the report holds realised against the estimate.
    labelled = world.run(key, selection=world.graph.keys("labels", "performance_report"))
    assert labelled.success
    report = _materialized(labelled, world.graph.key("performance_report"))
    print(
        f"estimated roc_auc {estimate['estimated_roc_auc']} [{estimate['estimated_roc_auc_lower']}, "
        f"{estimate['estimated_roc_auc_upper']}], realised {report['realised_metric']}, "
        f"error {report['estimate_error']}"
    )
    assert report["estimated_roc_auc"] == estimate["estimated_roc_auc"]
    assert report["estimate_error"] == pytest.approx(report["realised_metric"] - report["estimated_roc_auc"], abs=1e-3)
    assert report["realised_in_band"] == (
        estimate["estimated_roc_auc_lower"] <= report["realised_metric"] <= estimate["estimated_roc_auc_upper"]
    )
