"""The promote / approve / rollback jobs, run against a real lifecycle on synthetic data."""

import dagster as dg
import pytest

from mlops_assets.definitions import build_defs
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.worlds import ROWS, World

pytestmark = pytest.mark.e2e
#: The synthetic model's graph: keys ``synthetic/<asset>``, jobs ``synthetic__promote_job`` and so on.
G = model_graph("synthetic")


@pytest.fixture
def world(promoted_world: tuple[World, str]):
    """A copy of the session's promoted world: synthetic v1 (seed 1) is in Production; later versions land and run."""
    w, _first = promoted_world
    defs = build_defs(w.env, [G.model])

    def land_and_run(i: int, seed: int, **defects) -> str:
        key = w.land(f"synthetic_v00{i}.csv", seed=seed, start_id=(i - 1) * ROWS, **defects)
        w.run(key)
        return key

    def launch(job: str, op: str, config: dict) -> dg.ExecuteInProcessResult:
        # Job and op names of the model: synthetic__promote_job, synthetic__promote_model, ...
        return defs.resolve_job_def(G.name(job)).execute_in_process(
            run_config={"ops": {G.name(op): {"config": config}}}, instance=w.instance, raise_on_error=False
        )

    land_and_run.stored = w.env.resources["io_manager"]  # type: ignore[attr-defined]
    registry = w.registry()
    yield land_and_run, launch, registry
    registry.engine.dispose()


def test_rollback_drill_restores_the_previous_production_model(world):
    land_and_run, launch, registry = world
    land_and_run(2, seed=4)
    # v2 passed its gates: staged and rolled out against v1 (shadow), not promoted yet.
    rollout = registry.active_rollout("synthetic")
    assert rollout is not None and (rollout.champion_version, rollout.challenger_version) == (1, 2)
    assert registry.production_version("synthetic").version == 1
    # An operator promotes it by hand: the rollout ends as promoted, in the same transaction.
    promoted = launch("promote_job", "promote_model", {"version": 2, "actor": "carol", "reason": "ship it"})
    assert promoted.success
    assert registry.active_rollout("synthetic") is None
    assert registry.get_rollout("synthetic").phase.value == "promoted"
    before = registry.production_version("synthetic")
    assert before is not None and before.version == 2
    result = launch("rollback_job", "rollback_model", {"actor": "alice", "reason": "drill"})
    assert result.success
    after = registry.production_version("synthetic")
    assert after is not None and after.version == 1
    assert registry.aliases("synthetic")["champion"] == 1
    log = registry.transitions("synthetic")
    assert (log[-2].version, log[-2].to_stage, log[-2].actor) == (2, "Archived", "alice")
    assert (log[-1].version, log[-1].to_stage) == (1, "Production")
    assert "drill" in log[-1].reason
    shown = [e for e in result.get_asset_materialization_events() if e.asset_key == G.key("production_deployment")]
    assert shown and "v1" in shown[0].materialization.metadata["model"].value
    # Scoring uses v1 again: the next data version is scored by the champion v1 only.
    third = land_and_run(3, seed=5)
    scored = land_and_run.stored.load_value(G.key("predictions"), third)
    assert set(scored["model_version"]) == {1} and scored["served"].all()
    # Nothing earlier than v1 to roll back to: a clear failure, nothing changes.
    again = launch("rollback_job", "rollback_model", {"actor": "alice", "reason": "again"})
    assert not again.success
    assert registry.production_version("synthetic").version == 1
    # v2 was marked bad by the rollback: promoting it again is refused until an operator clears the mark (logged).
    refused = launch(
        "promote_job", "promote_model", {"version": 2, "stage": "Production", "actor": "carol", "reason": "again"}
    )
    assert not refused.success and registry.production_version("synthetic").version == 1
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "marked bad" in failure.message
    cleared = launch("clear_bad_job", "clear_bad_model", {"version": 2, "actor": "carol", "reason": "drill over"})
    assert cleared.success and 2 not in registry.bad_versions("synthetic")


def test_promote_job_refuses_a_version_whose_gates_failed(world):
    land_and_run, launch, registry = world
    bad = land_and_run(2, seed=2, label_noise=0.5)  # metric floor fails: the candidate stays in stage None
    (candidate,) = registry.versions_for_data_version("synthetic", bad)
    result = launch("promote_job", "promote_model", {"version": candidate.version, "actor": "bob", "reason": "try"})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "metric_above_floor is failed" in failure.step_failure_data.error.message
    assert registry.production_version("synthetic").version == 1


def test_approval_required_stages_the_candidate_until_approved(world):
    land_and_run, launch, registry = world
    registry.set_policy("synthetic", require_approval_for_production=True, actor="admin", reason="regulated")
    v2 = land_and_run(2, seed=4)
    (candidate,) = registry.versions_for_data_version("synthetic", v2)
    assert registry.get_version("synthetic", candidate.version).stage == "Staging"
    assert registry.production_version("synthetic").version == 1
    promote = {"version": candidate.version, "actor": "bob", "reason": "release"}
    refused = launch("promote_job", "promote_model", promote)
    assert not refused.success
    assert launch(
        "approve_job",
        "approve_model",
        {"version": candidate.version, "approver": "carol", "comment": "reviewed the gate evidence"},
    ).success
    assert launch("promote_job", "promote_model", promote).success
    assert registry.production_version("synthetic").version == candidate.version
