"""Retraining sensors and schedules of one model, invoked with dg.build_sensor_context on a real temporary instance.

The model is ``synthetic`` declared by a spec file the tests edit (its sensors ``synthetic__drift_sensor`` etc.,
assets ``synthetic/<asset>``, partitions ``synthetic__data_versions``, retrain job ``synthetic__retrain_job``).
Monitoring results are reported as runless materializations (metadata only, as the monitoring assets write
them); the production model lives in a real SQLite registry. Run requests are turned into runs with the
request's tags, as the daemon would, so the hygiene rules see them.
"""

import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_assets import retrain_sensors as rs
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.summaries import DriftSummary, PerformanceSummary
from mlops_assets.provenance import package_version
from mlops_assets.resources import ModelRegistryResource
from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import Lineage, ModelRegistry
from mlops_assets.tags import DATA_VERSION_TAG, EVIDENCE_TAG, MODEL_TAG, PACKAGE_VERSION_TAG, REASON_TAG
from mlops_assets_tests.support import ModelGraph, model_graph

pytestmark = pytest.mark.wiring

MODEL = "synthetic"
VERSIONS = [f"synthetic_v{i:03d}__{hashlib.sha256(str(i).encode()).hexdigest()[:12]}" for i in range(1, 8)]
V1, V2, V3, V4, V5, V6, V7 = VERSIONS
#: The retrain sensors of a model (``<model>__<name>``) and its schedules.
RETRAIN_SENSORS = ("drift_sensor", "performance_sensor", "estimated_performance_sensor", "freshness_sensor")
SCHEDULES = ("retrain_schedule", "monitoring_schedule")


class World:
    """A temporary instance, a spec file, the graph of the model it declares and a registry, with helpers."""

    def __init__(self, instance: dg.DagsterInstance, tmp_path: Path) -> None:
        self.instance = instance
        self.spec_path = tmp_path / "spec.yaml"
        self._mtime_ns = time.time_ns()
        self.url = f"sqlite:///{tmp_path / 'registry.db'}"
        self.registry = ModelRegistry(self.url)
        self.cursors: dict[str, str | None] = {}
        self.set_retraining()
        #: The model declared by the spec file (named after the spec: ``synthetic``), built once: an edit of the
        #: file applies to the next tick without rebuilding, as in a running code location.
        self.g: ModelGraph = model_graph(str(self.spec_path))
        assert self.g.model.name == MODEL
        instance.add_dynamic_partitions(self.g.partitions_name, VERSIONS)

    def set_retraining(self, **retraining: Any) -> None:
        raw = yaml.safe_load(packaged_spec_path("synthetic").read_text())
        if retraining:
            raw["retraining"] = retraining
        # The same file, edited: the model re-reads its spec when the file's mtime moves, which it may not do
        # by itself within a tick (coarse file-system clocks), so each edit sets a new one.
        self.spec_path.write_text(yaml.safe_dump(raw))
        self._mtime_ns += 1_000_000
        os.utime(self.spec_path, ns=(self._mtime_ns, self._mtime_ns))

    @property
    def resources(self) -> dict[str, Any]:
        return {"registry": ModelRegistryResource(url=self.url)}

    def sensor(self, base: str) -> dg.SensorDefinition:
        """The model's sensor ``<model>__<base>``."""
        return next(s for s in self.g.defs.sensors or [] if s.name == self.g.name(base))

    def schedule(self, base: str) -> dg.ScheduleDefinition:
        """The model's schedule ``<model>__<base>``."""
        schedule = next(s for s in self.g.defs.schedules or [] if s.name == self.g.name(base))
        assert isinstance(schedule, dg.ScheduleDefinition)
        return schedule

    def production(self, *data_versions: str, key: str = "m1") -> int:
        sha = hashlib.sha256(key.encode()).hexdigest()
        version = self.registry.register_version(
            MODEL,
            ArtifactRef(uri=f"file:///a/{sha}.skops", sha256=sha, size=1),
            Lineage(data_versions=data_versions, run_id="r", package_version="c", git_sha="g", spec_fingerprint="f"),
            {},
            {},
        ).version
        for stage in ("Staging", "Production"):
            self.registry.transition(MODEL, version, stage, actor="test", reason="test", evidence={})
        return version

    def report(self, asset: str, version: str, **metadata: Any) -> None:
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=self.g.key(asset), partition=version, metadata=metadata)
        )

    def labels(self, *versions: str, labelled: bool = True) -> None:
        """A labels materialization as the ``labels`` asset writes it: labelled (share 1.0) or not (share 0.5)."""
        for v in versions:
            share = 1.0 if labelled else 0.5
            self.report(
                "labels", v, labelled=labelled, labelled_rows=int(1000 * share), rows=1000, labelled_share=share
            )

    def drift(self, version: str, production: int = 1, drifted: bool = True, model: str = MODEL) -> None:
        """A drift report as ``drift_report`` writes it (through :meth:`DriftSummary.to_metadata`)."""
        summary = DriftSummary(
            compared_with_model=model,
            compared_with_version=production,
            dataset_drift=drifted,
            drifted_share=0.625 if drifted else 0.1,
            n_drifted=5 if drifted else 1,
            drifted_columns=("age", "income", "plan") if drifted else (),
        )
        self.report("drift_report", version, **summary.to_metadata())

    def performance(self, version: str, production: int = 1, breached: bool = True, model: str = MODEL) -> None:
        """A performance report as ``performance_report`` writes it (through :meth:`PerformanceSummary.to_metadata`)."""
        summary = PerformanceSummary(
            model=model,
            production_version=production,
            metric="roc_auc",
            realised_metric=0.52 if breached else 0.71,
            sla_floor=0.6,
            sla_breached=breached,
            labelled_rows=1000,
        )
        self.report("performance_report", version, **summary.to_metadata())

    def tick(self, base: str) -> dg.SensorResult:
        """One tick of the model's sensor ``<model>__<base>``, with its cursor from the last tick."""
        sensor = self.sensor(base)
        # Entered: the registry resource is opened for the tick and closed by its teardown when the context exits.
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(sensor.name), resources=self.resources
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursors[sensor.name] = result.cursor
        return result

    def launch(self, request: dg.RunRequest, status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS) -> None:
        """What the daemon does with a request (a run of the model's retrain job is recorded; whether it succeeded
        is up to the test)."""
        self.instance.add_run(
            dg.DagsterRun(job_name=self.g.name("retrain_job"), tags=dict(request.tags), status=status)
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with dg.DagsterInstance.ephemeral() as instance:
        w = World(instance, tmp_path)
        yield w
        w.registry.close()


@pytest.fixture
def stored_world(tmp_path: Path) -> Iterator[World]:
    """A world on a temporary on-disk instance (schedule contexts need an instance reference)."""
    with dg.instance_for_test() as instance:
        w = World(instance, tmp_path)
        yield w
        w.registry.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """Move the sensors' clock: ``clock(hours=7)`` puts "now" 7 h ahead of the real time."""

    def move(**delta: float) -> None:
        monkeypatch.setattr(rs, "_now", lambda: datetime.now(UTC) + timedelta(**delta))

    return move


def only_request(result: dg.SensorResult) -> dg.RunRequest:
    assert len(result.run_requests or []) == 1, result.skip_reason
    return (result.run_requests or [])[0]


def no_request(result: dg.SensorResult) -> str:
    assert not result.run_requests, [r.run_key for r in result.run_requests or []]
    assert result.skip_reason is not None
    return str(result.skip_reason.skip_message if isinstance(result.skip_reason, dg.SkipReason) else result.skip_reason)


# -- drift ------------------------------------------------------------------------------------------------------------


def test_drift_on_a_labelled_version_requests_exactly_one_retrain(world: World) -> None:
    world.production(V1)
    world.labels(V1, V2)
    world.drift(V2)
    request = only_request(world.tick("drift_sensor"))
    assert request.partition_key == V2
    assert request.run_key == f"retrain:drift:{V2}:{package_version()}"
    assert request.tags[REASON_TAG] == "drift" and request.tags[DATA_VERSION_TAG] == V2
    assert request.tags[PACKAGE_VERSION_TAG] == package_version() and "mlops/code_version" not in request.tags
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert evidence["drifted_share"] == 0.625 and evidence["drifted_columns"] == "age, income, plan"
    assert evidence["compared_with"] == f"{MODEL} v1"
    # Same state on the next tick: nothing new, nothing requested.
    assert "no drifted data version" in no_request(world.tick("drift_sensor"))


def test_runs_tagged_before_the_package_version_rename_keep_their_version(world: World) -> None:
    # Runs requested before the tag was renamed carry mlops/code_version: the hygiene rules still see their version.
    old = {REASON_TAG: "drift", DATA_VERSION_TAG: V2, MODEL_TAG: MODEL, "mlops/code_version": "1.0"}
    world.instance.add_run(dg.DagsterRun(job_name=world.g.name("retrain_job"), tags=old))
    world.instance.add_run(
        dg.DagsterRun(job_name=world.g.name("retrain_job"), tags={**old, PACKAGE_VERSION_TAG: "2.0"})
    )
    records = sorted(rs._record(r).package_version for r in world.instance.get_run_records())
    assert records == ["1.0", "2.0"]


def test_drift_waits_for_labels_then_requests_once(world: World) -> None:
    world.production(V1)
    world.labels(V1)
    world.drift(V2)
    assert "wait for labels" in no_request(world.tick("drift_sensor"))
    assert "wait for labels" in no_request(world.tick("drift_sensor"))
    world.labels(V2)
    assert only_request(world.tick("drift_sensor")).partition_key == V2
    no_request(world.tick("drift_sensor"))


def test_a_labels_materialization_below_the_labelled_share_does_not_release_a_drift_retrain(world: World) -> None:
    world.production(V1)
    world.drift(V2)
    world.labels(V2, labelled=False)  # partial labels: labelled share 0.5 < min_labelled_share 0.8
    assert "wait for labels" in no_request(world.tick("drift_sensor"))
    assert rs._labelled(world.g.model, world.instance) == set()
    world.labels(V2)  # the rest of the labels landed: the latest materialization says labelled
    assert rs._labelled(world.g.model, world.instance) == {V2}
    assert only_request(world.tick("drift_sensor")).partition_key == V2


def test_the_latest_labels_materialization_of_a_version_decides_whether_it_is_labelled(world: World) -> None:
    world.labels(V1, V2)
    world.labels(V2, labelled=False)  # e.g. relabelled to a share below the threshold
    assert rs._labelled(world.g.model, world.instance) == {V1}
    assert rs._is_labelled(world.g.model, world.instance, V1)
    assert not rs._is_labelled(world.g.model, world.instance, V2)
    assert not rs._is_labelled(world.g.model, world.instance, V3)  # never materialized


def test_labels_before_drift_report_count(world: World) -> None:
    world.production(V1)
    world.labels(V2)
    world.tick("drift_sensor")  # the labels event is consumed before the drift arrives
    world.drift(V2)
    assert only_request(world.tick("drift_sensor")).partition_key == V2


def test_no_drift_requests_nothing_and_a_later_clean_report_clears_a_waiting_one(world: World) -> None:
    world.production(V1)
    world.drift(V2, drifted=False)
    no_request(world.tick("drift_sensor"))
    world.drift(V3)
    no_request(world.tick("drift_sensor"))  # waits for labels
    world.drift(V3, drifted=False)  # re-measured: no drift any more
    world.labels(V3)
    assert "no drifted data version" in no_request(world.tick("drift_sensor"))


def test_second_drift_within_cooldown_is_skipped_with_the_reason_then_allowed(world: World, clock) -> None:
    world.production(V1)
    world.labels(V1, V2, V3)
    world.drift(V2)
    world.launch(only_request(world.tick("drift_sensor")))
    world.drift(V3)
    reason = no_request(world.tick("drift_sensor"))
    assert "cooldown" in reason and "6 h" in reason
    assert "cooldown" in no_request(world.tick("drift_sensor"))  # still waiting, still says why
    clock(hours=7)
    assert only_request(world.tick("drift_sensor")).partition_key == V3


def test_daily_cap_is_respected(world: World, clock) -> None:
    world.production(V1)
    world.set_retraining(cooldown_hours=0, max_retrains_per_day=2)
    world.labels(*VERSIONS)
    for v in (V2, V3):
        world.drift(v)
        world.launch(only_request(world.tick("drift_sensor")))
    world.drift(V4)
    reason = no_request(world.tick("drift_sensor"))
    assert "cap is 2" in reason
    clock(hours=25)
    assert only_request(world.tick("drift_sensor")).partition_key == V4


def test_a_retrain_in_flight_blocks_another(world: World) -> None:
    world.production(V1)
    world.set_retraining(cooldown_hours=0)
    world.labels(V2, V3)
    world.drift(V2)
    world.launch(only_request(world.tick("drift_sensor")), status=dg.DagsterRunStatus.STARTED)
    world.drift(V3)
    assert "already started" in no_request(world.tick("drift_sensor"))


def test_a_failed_retrain_does_not_start_the_cooldown_but_counts_for_the_cap(world: World) -> None:
    world.production(V1)
    world.set_retraining(max_retrains_per_day=2)
    world.labels(V2, V3, V4)
    world.drift(V2)
    world.launch(only_request(world.tick("drift_sensor")), status=dg.DagsterRunStatus.FAILURE)
    world.drift(V3)
    world.launch(only_request(world.tick("drift_sensor")), status=dg.DagsterRunStatus.FAILURE)
    world.drift(V4)
    assert "cap is 2" in no_request(world.tick("drift_sensor"))


def test_a_lost_cursor_does_not_request_the_same_retrain_twice(world: World) -> None:
    world.production(V1)
    world.set_retraining(cooldown_hours=0)
    world.labels(V2, V3)
    world.drift(V2)
    world.drift(V3)
    world.launch(only_request(world.tick("drift_sensor")))
    world.cursors.clear()
    assert "already requested" in no_request(world.tick("drift_sensor"))
    # The duplicate on V3 also drops the older V2 signal: no retrain on older data afterwards.
    assert "no drifted data version" in no_request(world.tick("drift_sensor"))


def test_newest_drifted_version_wins_and_supersedes_older_ones(world: World) -> None:
    world.production(V1)
    world.labels(V2, V3)
    world.drift(V3)
    world.drift(V2)  # reported later, but V2 is the older data version
    assert only_request(world.tick("drift_sensor")).partition_key == V3
    assert "no drifted data version" in no_request(world.tick("drift_sensor"))


def test_drift_measured_against_an_older_production_model_is_dropped(world: World) -> None:
    world.production(V1)
    world.production(V1, V2, key="m2")  # v2 replaced v1 in production
    world.labels(V3)
    world.drift(V3, production=1)
    assert "no drift against the production model" in no_request(world.tick("drift_sensor"))


def test_drift_decision_does_not_depend_on_the_display_label(world: World) -> None:
    """Rewording ``compared_with`` (display) must not switch drift retraining off: identity is (model, version)."""
    world.production(V1)
    world.labels(V2)
    summary = DriftSummary(compared_with_model=MODEL, compared_with_version=1, dataset_drift=True, drifted_share=0.6)
    world.report("drift_report", V2, **{**summary.to_metadata(), "compared_with": "Synthetic model, release one"})
    request = only_request(world.tick("drift_sensor"))
    assert request.partition_key == V2
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert (evidence["compared_with_model"], evidence["compared_with_version"]) == (MODEL, 1)


def test_drift_with_the_production_label_but_another_identity_is_dropped(world: World) -> None:
    world.production(V1)
    world.labels(V2, V3)
    stale = DriftSummary(compared_with_model=MODEL, compared_with_version=2, dataset_drift=True)
    world.report("drift_report", V2, **{**stale.to_metadata(), "compared_with": f"{MODEL} v1"})
    world.drift(V3, model="another_model")  # same version number, another model
    assert "no drift against the production model" in no_request(world.tick("drift_sensor"))


def test_old_drift_record_with_only_the_display_string_is_dropped_fail_closed(world: World) -> None:
    """A report written before the typed keys cannot be tied to the production model: no retrain on it."""
    world.production(V1)
    world.labels(V2)
    world.report(
        "drift_report",
        V2,
        compared_with=f"{MODEL} v1",
        dataset_drift=True,
        drifted_share=0.625,
        drifted_columns="age, income, plan",
    )
    assert "no drift against the production model" in no_request(world.tick("drift_sensor"))
    assert "no drifted data version" in no_request(world.tick("drift_sensor"))


def test_pending_drift_kept_in_an_old_cursor_without_identity_is_dropped_fail_closed(world: World) -> None:
    world.production(V1)
    world.labels(V2)
    world.tick("drift_sensor")
    state = json.loads(world.cursors[world.g.name("drift_sensor")] or "{}")
    old_evidence = {"trigger": "drift_report", "data_version": V2, "compared_with": f"{MODEL} v1"}
    state["pending"] = {V2: {"sid": 1, "labelled": True, "evidence": old_evidence}}
    world.cursors[world.g.name("drift_sensor")] = json.dumps(state)
    assert "no drift against the production model" in no_request(world.tick("drift_sensor"))


def test_drift_disabled_in_the_spec_requests_nothing(world: World) -> None:
    world.production(V1)
    world.set_retraining(triggers=["stale", "manual"])
    world.labels(V2)
    world.drift(V2)
    assert "'drift' is not enabled" in no_request(world.tick("drift_sensor"))


def test_an_active_rollout_holds_retraining(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_assets.ml.rollout import Phase, RolloutState

    world.production(V1)
    world.labels(V2)
    world.drift(V2)
    state = RolloutState(model_name=MODEL, champion_version=1, challenger_version=2, phase=Phase.SHADOW)
    monkeypatch.setattr(ModelRegistry, "active_rollout", lambda self, name: state, raising=False)
    assert "rollout of synthetic v2 is in shadow" in no_request(world.tick("drift_sensor"))
    monkeypatch.setattr(ModelRegistry, "active_rollout", lambda self, name: None, raising=False)
    assert only_request(world.tick("drift_sensor")).partition_key == V2


# -- performance ------------------------------------------------------------------------------------------------------


def test_sla_breach_requests_one_retrain_on_the_newest_labelled_version(world: World) -> None:
    world.production(V1)
    world.labels(V1, V2, V3)
    world.performance(V2)
    request = only_request(world.tick("performance_sensor"))
    assert request.partition_key == V3
    assert request.run_key == f"retrain:performance:{V3}:{package_version()}"
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert (evidence["realised"], evidence["floor"], evidence["metric"]) == (0.52, 0.6, "roc_auc")
    assert evidence["data_version"] == V2
    no_request(world.tick("performance_sensor"))


def test_a_report_without_a_production_model_does_not_clear_a_breach(world: World, clock) -> None:
    world.production(V1)
    world.labels(V1, V2)
    world.drift(V1)
    world.launch(only_request(world.tick("drift_sensor")))
    world.performance(V1)
    assert "cooldown" in no_request(world.tick("performance_sensor"))
    world.report("performance_report", V2, reason="nothing was scored", sla_breached=False, metric="roc_auc")
    clock(hours=7)
    assert only_request(world.tick("performance_sensor")).partition_key == V2


def test_performance_within_sla_requests_nothing(world: World) -> None:
    world.production(V1)
    world.labels(V1, V2)
    world.performance(V2, breached=False)
    assert "no SLA breach" in no_request(world.tick("performance_sensor"))


def test_breach_of_a_model_no_longer_in_production_is_dropped(world: World) -> None:
    world.production(V1)
    world.production(V1, V2, key="m2")
    world.labels(V2)
    world.performance(V2, production=1)
    assert "production is synthetic v2" in no_request(world.tick("performance_sensor"))
    assert "no SLA breach" in no_request(world.tick("performance_sensor"))


def test_breach_of_another_model_with_the_production_version_is_dropped(world: World) -> None:
    world.production(V1)
    world.labels(V2)
    world.performance(V2, production=1, model="another_model")
    assert "production is synthetic v1" in no_request(world.tick("performance_sensor"))
    assert "no SLA breach" in no_request(world.tick("performance_sensor"))


def test_old_breach_record_without_the_model_name_is_dropped_fail_closed(world: World) -> None:
    """A report written before ``production_model`` cannot be tied to the production model: no retrain on it."""
    world.production(V1)
    world.labels(V2)
    world.report(
        "performance_report",
        V2,
        metric="roc_auc",
        realised_metric=0.52,
        sla_floor=0.6,
        sla_breached=True,
        production_version=1,
        labelled_rows=1000,
    )
    skip = no_request(world.tick("performance_sensor"))
    assert "unknown model" in skip and "dropped" in skip
    assert "no SLA breach" in no_request(world.tick("performance_sensor"))


def test_breach_in_cooldown_waits_then_fires(world: World, clock) -> None:
    world.production(V1)
    world.labels(V1, V2)
    world.drift(V2)
    world.launch(only_request(world.tick("drift_sensor")))
    world.labels(V3)  # the breach retrains the newest labelled version (V2 was just retrained: a duplicate)
    world.performance(V3)
    assert "cooldown" in no_request(world.tick("performance_sensor"))
    clock(hours=7)
    assert only_request(world.tick("performance_sensor")).tags[REASON_TAG] == "performance"


# -- staleness --------------------------------------------------------------------------------------------------------


def test_model_too_many_versions_behind_requests_one_retrain(world: World) -> None:
    world.production(V1)
    world.labels(V1, V2, V3, V4)
    assert "fresh" in no_request(world.tick("freshness_sensor"))  # 3 behind: not more than 3
    world.labels(V5)
    request = only_request(world.tick("freshness_sensor"))
    assert request.partition_key == V5 and request.tags[REASON_TAG] == "stale"
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert evidence["versions_behind"] == 4 and evidence["trained_on"] == V1
    assert "already requested" in no_request(world.tick("freshness_sensor"))


def test_model_too_old_requests_a_retrain_only_when_there_is_newer_labelled_data(world: World, clock) -> None:
    world.production(V1)
    world.labels(V1)
    clock(days=31)
    assert "no labelled data version newer" in no_request(world.tick("freshness_sensor"))
    world.labels(V2)
    request = only_request(world.tick("freshness_sensor"))
    assert request.partition_key == V2
    assert json.loads(request.tags[EVIDENCE_TAG])["age_days"] > 30


def test_a_promotion_between_the_evidence_and_the_decision_waits_for_the_next_tick(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in the flights demo: the labels run's rollout_step promoted a fresh challenger while the freshness sensor's
    # tick was between reading production (v2, 6 versions behind) and checking for an active rollout (none left):
    # it asked for a retrain on evidence about a model no longer in production. The promotion lands exactly there.
    world.production(V1)
    world.labels(V1, V2, V3, V4, V5)
    original = rs._active_rollout

    def promoted_meanwhile(registry: Any, model: str) -> str | None:
        monkeypatch.setattr(rs, "_active_rollout", original)
        world.production(V5, key="m2")  # the rollout's blue/green switch commits now
        return original(registry, model)

    monkeypatch.setattr(rs, "_active_rollout", promoted_meanwhile)
    assert "production changed from v1 to v2" in no_request(world.tick("freshness_sensor"))
    assert "fresh" in no_request(world.tick("freshness_sensor"))  # judged against v2, trained on V5


def test_a_breach_of_a_model_replaced_meanwhile_retrains_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.production(V1)
    world.labels(V2)
    world.performance(V2, production=1)
    original = rs._active_rollout

    def promoted_meanwhile(registry: Any, model: str) -> str | None:
        monkeypatch.setattr(rs, "_active_rollout", original)
        world.production(V2, key="m2")
        return original(registry, model)

    monkeypatch.setattr(rs, "_active_rollout", promoted_meanwhile)
    assert "production changed from v1 to v2" in no_request(world.tick("performance_sensor"))
    assert not world.tick("performance_sensor").run_requests  # v1's breach no longer concerns production


def test_no_production_model_is_not_stale(world: World) -> None:
    world.labels(V1, V2, V3, V4, V5)
    assert "no synthetic model in production" in no_request(world.tick("freshness_sensor"))


# -- schedules --------------------------------------------------------------------------------------------------------


def test_retrain_schedule_requests_the_newest_labelled_version_under_the_hygiene_rules(stored_world: World) -> None:
    world = stored_world
    world.production(V1)
    world.labels(V1, V2)
    # Contexts are entered: a context left open keeps a disposed instance as the process's current one.
    with dg.build_schedule_context(
        instance=world.instance, resources=world.resources, scheduled_execution_time=datetime.now(UTC)
    ) as context:
        request = world.schedule("retrain_schedule")(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == V2 and request.tags[REASON_TAG] == "schedule"
    world.launch(request)
    with dg.build_schedule_context(
        instance=world.instance, resources=world.resources, scheduled_execution_time=datetime.now(UTC)
    ) as context:
        again = world.schedule("retrain_schedule")(context)
    assert isinstance(again, dg.SkipReason) and "already requested" in str(again.skip_message)


def test_monitoring_schedule_remeasures_the_newest_versions(stored_world: World) -> None:
    world = stored_world
    world.labels(V3)
    with dg.build_schedule_context(
        instance=world.instance, scheduled_execution_time=datetime(2024, 5, 1, 2, tzinfo=UTC)
    ) as context:
        requests = world.schedule("monitoring_schedule")(context)
    assert isinstance(requests, list)
    assert [(r.partition_key, r.asset_selection) for r in requests] == [
        (V7, [world.g.key("drift_report")]),
        (V3, [world.g.key("performance_report")]),
    ]
    assert requests[0].run_key == f"monitoring:drift:{V7}:2024-05-01"
    assert all(r.tags[MODEL_TAG] == MODEL for r in requests)


def test_sensors_and_schedules_load_in_definitions(tmp_path: Path) -> None:
    """Wiring: targets resolve against assets with the lead's keys (stubs here, not mlops_assets.definitions)."""
    from mlops_assets.jobs import RETRAIN, build_jobs
    from mlops_assets.model import MLModel

    model = MLModel.from_spec("synthetic")
    model_jobs = build_jobs(model)

    def stub(name: str, partitioned: bool) -> dg.AssetsDefinition:
        @dg.asset(key=model.key(name), partitions_def=model.partitions if partitioned else None)
        def _stub() -> None:
            return None

        return _stub

    pointers = {"staging_deployment", "production_deployment", "rollout_state"}
    names = {*RETRAIN, "drift_report", "performance_report", "labels"}
    retrain = rs.build(model, model_jobs)
    defs = dg.Definitions.merge(
        retrain,
        dg.Definitions(
            assets=[stub(n, n not in pointers) for n in sorted(names)],
            jobs=[model_jobs.retrain],
            resources={"registry": ModelRegistryResource(url=f"sqlite:///{tmp_path / 'r.db'}")},
        ),
    )
    with dg.instance_for_test():  # loading definitions reads the current instance
        dg.Definitions.validate_loadable(defs)
        repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} >= {model.job_name(n) for n in RETRAIN_SENSORS}
    assert {s.name for s in repo.schedule_defs} >= {model.job_name(n) for n in SCHEDULES}
    assert len(list(retrain.sensors or [])) == len(RETRAIN_SENSORS)
    for sensor in retrain.sensors or []:
        assert isinstance(sensor, dg.SensorDefinition)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    for schedule in retrain.schedules or []:
        assert isinstance(schedule, dg.ScheduleDefinition)
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


# -- speed ------------------------------------------------------------------------------------------------------------


def test_ticks_with_many_data_versions_decide_once(world: World) -> None:
    many = [f"bulk_{i:05d}__{i:012x}" for i in range(600)]
    world.instance.add_dynamic_partitions(world.g.partitions_name, many)
    world.production(V1)
    for v in many:
        world.drift(v, drifted=False)
    world.labels(*many[:300])
    first = world.tick("drift_sensor")
    perf = world.tick("performance_sensor")
    fresh = world.tick("freshness_sensor")
    again = world.tick("drift_sensor")
    assert not first.run_requests and not perf.run_requests and not again.run_requests
    assert len(fresh.run_requests or []) == 1  # 300 labelled versions behind
    # No timing assertion (tests never depend on machine speed): `measure` below times the ticks.


def measure(n: int = 2000) -> dict[str, str]:
    """Tick times (seconds) with ``n`` data versions, ``n`` drift reports, ``n`` labels and ``n`` performance
    reports on a temporary on-disk SQLite instance. ``python -m mlops_assets_tests.test_retrain_sensors [n]``."""
    import tempfile

    timings: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        w = World(instance, Path(tmp))
        many = [f"bulk_{i:05d}__{i:012x}" for i in range(n)]
        instance.add_dynamic_partitions(w.g.partitions_name, many)
        w.production(V1)
        for i, v in enumerate(many):
            w.drift(v, drifted=i % 10 == 0)
            w.labels(v)
            w.performance(v, breached=False)

        def timed(name: str, sensor: str) -> None:
            start = time.perf_counter()
            result = w.tick(sensor)
            seconds = time.perf_counter() - start
            outcome = f"{len(result.run_requests or [])} request(s)" if result.run_requests else "skip"
            timings[name] = f"{seconds:7.3f} s  {outcome}"

        for sensor in RETRAIN_SENSORS:
            timed(f"{w.g.name(sensor)} first tick (reads all history)", sensor)
            timed(f"{w.g.name(sensor)} next tick (nothing new)", sensor)
        w.drift(many[-1])
        timed(f"{w.g.name('drift_sensor')} tick with one new drifted, labelled version", "drift_sensor")
        w.registry.close()
    return timings


if __name__ == "__main__":
    import sys

    for name, line in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000).items():
        print(f"{line}  {name}")
