"""A lifecycle run's profile: every step measured, and the profile sensor records it for the data version."""

import dagster as dg
import pytest

from mlops_assets import profiling
from mlops_assets.ml.profile import NOT_EXECUTED, STEP_THREADS_KEY
from mlops_assets.model import MLModel
from mlops_assets_tests.worlds import World

pytestmark = pytest.mark.e2e


def test_a_lifecycle_run_is_profiled_and_recorded_for_its_data_version(
    promoted_world: tuple[World, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, _ = promoted_world
    monkeypatch.setenv(profiling.THREADS_ENV, "1")
    key = world.land("synthetic_v002.csv", seed=2, start_id=10_000)
    result = world.run(key)  # a gate may stop it: a stopped run is profiled too

    profile = profiling.read_run_profile(world.instance, result.run_id)
    steps = {s.step_key: s for s in profile.steps}
    assert "synthetic__candidate_model" in steps and "synthetic__file_gates" in steps
    ran = [s for s in profile.steps if s.status not in (NOT_EXECUTED, "STEP_SKIPPED")]
    assert [s.step_key for s in ran if not s.measured] == []
    assert {s.threads for s in ran} == {1}  # MLOPS_THREADS_PER_STEP
    training = steps["synthetic__candidate_model"]
    assert 0 < training.compute <= training.wall and training.cpu > 0
    assert 0 < profile.compute < profile.wall and 0 < profile.orchestration_share < 1
    materialized = result.asset_materializations_for_node("synthetic__candidate_model")[0]
    assert materialized.metadata[STEP_THREADS_KEY].value == 1

    model = MLModel(name="synthetic", spec_source="synthetic")
    status = "success" if result.success else "failure"
    sensor = next(s for s in profiling.build(model).sensors if s.name == f"synthetic__run_profile_{status}_sensor")
    run = world.instance.get_run_by_id(result.run_id)
    end = dg.DagsterEventType.RUN_SUCCESS if result.success else dg.DagsterEventType.RUN_FAILURE
    ended = world.instance.get_records_for_run(result.run_id, of_type=end).records
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=ended[0].event_log_entry.dagster_event,
        dagster_instance=world.instance,
        dagster_run=run,
    ) as context:
        sensor(context)
    recorded = world.instance.get_latest_materialization_event(model.key("run_profile"))
    assert recorded is not None
    materialization = recorded.asset_materialization
    assert materialization.partition == key
    assert materialization.metadata["run_id"].value == result.run_id
    assert materialization.metadata["steps"].value == len(profile.steps)
    table = materialization.metadata["steps_table"].value
    assert {r.data["step"] for r in table.records} == set(steps)
    tags = world.instance.get_run_by_id(result.run_id).tags
    assert float(tags["mlops/profile.orchestration_share"]) == materialization.metadata["orchestration_share"].value


@pytest.mark.parametrize(("configured", "expected_concurrent_runs"), [(True, 2), (False, 1)])
def test_the_thread_budget_divides_the_cores_among_the_runs_the_instance_can_run_at_once(
    tmp_path, monkeypatch: pytest.MonkeyPatch, configured: bool, expected_concurrent_runs: int
) -> None:
    """dagster.yaml (local run processes, a run queue of 2) halves the budget; an instance without a queue does not."""
    import shutil

    from mlops_assets.definitions import PROJECT_ROOT

    monkeypatch.delenv(profiling.THREADS_ENV, raising=False)
    monkeypatch.setattr(profiling, "cpu_count", lambda: 4)
    seen: list[profiling.ThreadBudget] = []

    @dg.asset
    @profiling.measured_step
    def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        seen.append(profiling.thread_budget(context.op_execution_context))
        return dg.MaterializeResult()

    if configured:
        shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
        instance = dg.DagsterInstance.from_config(str(tmp_path))
    else:
        instance = dg.DagsterInstance.ephemeral()
    with instance:
        result = dg.materialize([probe], instance=instance)
    assert result.success
    assert seen[0].concurrent_steps == expected_concurrent_runs
    assert seen[0].threads == 4 // expected_concurrent_runs
    recorded = result.asset_materializations_for_node("probe")[0].metadata[STEP_THREADS_KEY].value
    assert recorded == seen[0].threads
