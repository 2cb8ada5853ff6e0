"""Issue 10, faults 1-3: promotion evidence is bound to the exact model version and artifact.

1. Gate results are registry facts per (model, version, artifact digest), not a lookup by data version:
   a re-trained candidate of the same data version cannot borrow the evaluation of another version.
2. Every move to Staging or Production reads the stored artifact and verifies its digest first.
3. Archiving or marking bad a rollout's challenger ends the rollout in the same transaction.

The end-to-end tests materialize the real assets on the small synthetic spec; the registry tests drive
:class:`ModelRegistry` directly.
"""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import dagster as dg
import pytest
import sqlalchemy as sa

from mlops_assets.definitions import build_defs
from mlops_assets.environments import local_environment
from mlops_assets.ml import rollout, training
from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence
from mlops_assets.ml.promotion import GateStatus, decide
from mlops_assets.ml.rollout import Phase
from mlops_assets.storage.artifacts.skops_codec import store_model
from mlops_assets.storage.artifacts.store import ArtifactRef, LocalArtifactStore
from mlops_assets.storage.registry import (
    CHALLENGER,
    GateEvidenceMissing,
    Lineage,
    ModelRegistry,
    RegistryConflict,
    VersionMarkedBad,
)
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.worlds import World

pytestmark = pytest.mark.wiring

ROWS = 2500
GATES = ("candidate_model:model_reproduces_holdout_scores", "model_evaluation:metric_above_floor")
#: The synthetic model's graph: keys ``synthetic/<asset>``, partitions ``synthetic__data_versions``.
G = model_graph("synthetic")

# -- pure core --------------------------------------------------------------------------------------


def _outcome(gate: str, version: int, sha: str, passed: bool = True) -> GateOutcome:
    return GateOutcome(
        model_name="m",
        version=version,
        artifact_sha256=sha,
        gate=gate,
        passed=passed,
        data_version="d1",
        run_id=f"run-v{version}",
        summary="",
        at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_evidence_of_another_artifact_is_not_evidence():
    outcomes = {g: _outcome(g, 2, "b" * 64) for g in GATES}
    statuses = judge_evidence(GATES, outcomes, version=2, artifact_sha256="c" * 64)
    assert [s.status for s in statuses] == ["wrong_artifact", "wrong_artifact"]
    assert "bbbbbbbbbbbb" in statuses[0].detail and "cccccccccccc" in statuses[0].detail


def test_evidence_names_missing_and_failed_gates_with_their_run():
    outcomes = {GATES[1]: _outcome(GATES[1], 2, "b" * 64, passed=False)}
    statuses = judge_evidence(GATES, outcomes, version=2, artifact_sha256="b" * 64)
    assert [s.status for s in statuses] == ["missing", "failed"]
    assert "run-v2" in statuses[1].detail


def test_decision_refuses_evaluation_of_another_version():
    d = decide(
        [GateStatus("g", "passed")],
        compared_with_production=None,
        production_now=None,
        candidate_version=2,
        evaluated_version=1,
    )
    assert not d.promote
    assert d.reasons[0] == "evaluation is of v1, not v2"


# -- registry ---------------------------------------------------------------------------------------


def _ref(i: int) -> ArtifactRef:
    sha = hashlib.sha256(f"model {i}".encode()).hexdigest()
    return ArtifactRef(uri=f"file:///artifacts/{sha[:2]}/{sha}.skops", sha256=sha, size=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_registry_url")


def _registry(where: Path | str, n: int = 2, name: str = "m") -> ModelRegistry:
    reg = ModelRegistry(where if isinstance(where, str) else f"sqlite:///{where / 'registry.db'}")
    for i in range(1, n + 1):
        lineage = Lineage(
            data_versions=(f"d{i}",), run_id=f"train-{i}", package_version="c", git_sha="g", spec_fingerprint="s"
        )
        reg.register_version(name, _ref(i), lineage, {}, {})
    return reg


def _record(reg: ModelRegistry, version: int, *, passed: bool = True, sha: str | None = None, name: str = "m") -> None:
    mv = reg.get_version(name, version)
    for gate in GATES:
        reg.record_gate_result(
            name,
            version,
            artifact_sha256=sha or mv.artifact_sha256,
            gate=gate,
            passed=passed if gate == GATES[1] else True,
            data_version=mv.data_versions[-1],
            run_id=f"eval-v{version}",
            summary="",
        )


def _move(reg: ModelRegistry, version: int, stage: str, name: str = "m") -> None:
    reg.transition(name, version, stage, actor="t", reason="test", evidence={}, required_gates=GATES)


def test_registry_refuses_promotion_without_evidence_of_that_version(tmp_path):
    reg = _registry(tmp_path)
    _record(reg, 1)  # only v1 was evaluated
    with pytest.raises(GateEvidenceMissing, match="v2") as info:
        _move(reg, 2, "Staging")
    assert "model_evaluation:metric_above_floor is missing" in str(info.value)
    assert reg.get_version("m", 2).stage == "None"


def test_registry_refuses_evidence_recorded_for_another_artifact(tmp_path):
    reg = _registry(tmp_path)
    _record(reg, 2, sha=_ref(1).sha256)
    with pytest.raises(GateEvidenceMissing, match="wrong_artifact"):
        _move(reg, 2, "Staging")


def test_rejected_version_needs_a_new_passing_evaluation(registry_url):
    reg = _registry(registry_url)
    _record(reg, 1, passed=False)
    with pytest.raises(GateEvidenceMissing, match="metric_above_floor is failed"):
        _move(reg, 1, "Staging")
    _record(reg, 1, passed=True)  # a new evaluation of the same version replaces the outcome
    _move(reg, 1, "Staging")
    _move(reg, 1, "Production")
    assert reg.production_version("m").version == 1
    outcomes = reg.gate_outcomes("m", 1)
    assert outcomes[GATES[1]].passed and len(reg.gate_history("m", 1)) == 4  # append-only: both evaluations kept


def test_a_failed_gate_is_recorded_as_the_versions_rejection_in_the_audit_log(tmp_path):
    reg = _registry(tmp_path)
    _record(reg, 1, passed=False)
    rejections = [e for e in reg.audit_log("m") if e["kind"] == "gate"]
    assert rejections and all(e["version"] == 1 and e["change"].startswith("rejected by ") for e in rejections)
    assert {e["evidence"]["gate"] for e in rejections} == {GATES[1]}  # only the gate that failed
    _record(reg, 2, passed=True)
    assert not [e for e in reg.audit_log("m") if e["kind"] == "gate" and e["version"] == 2]


def test_gate_results_are_append_only(registry_url):
    reg = _registry(registry_url)
    _record(reg, 1)
    with reg.engine.connect() as conn, pytest.raises(sa.exc.DatabaseError):
        conn.execute(sa.text("UPDATE gate_results SET passed = NOT passed"))
        conn.commit()
    with reg.engine.connect() as conn, pytest.raises(sa.exc.DatabaseError):
        conn.execute(sa.text("DELETE FROM gate_results"))
        conn.commit()
    assert all(o.passed for o in reg.gate_outcomes("m", 1).values())
    reg.close()


def test_rollback_target_must_have_passing_evidence(tmp_path):
    reg = _registry(tmp_path)
    for v in (1, 2):
        reg.transition("m", v, "Staging", actor="t", reason="legacy", evidence={})
        reg.transition("m", v, "Production", actor="t", reason="legacy", evidence={})
    _record(reg, 1, passed=False)
    with pytest.raises(GateEvidenceMissing, match="v1"):
        reg.rollback("m", actor="t", reason="incident", required_gates=GATES)
    assert reg.production_version("m").version == 2


def _canary(reg: ModelRegistry, name: str = "m") -> rollout.RolloutState:
    """v1 in Production, v2 in Staging with evidence, rolled out in its first canary step."""
    _record(reg, 1, name=name)
    _record(reg, 2, name=name)
    _move(reg, 1, "Staging", name)
    _move(reg, 1, "Production", name)
    _move(reg, 2, "Staging", name)
    state = rollout.start(rollout.new_rollout(name, 1, 2), datetime.now(UTC), shadow=False)
    return reg.start_rollout(state, actor="t", reason="test")


def test_rollout_final_switch_refuses_a_challenger_without_evidence(tmp_path):
    reg = _registry(tmp_path)
    state = _canary(reg)
    _record(reg, 2, passed=False)  # re-evaluated during the rollout, and failed
    done = rollout.conclude(state, datetime.now(UTC), reason="all steps passed")
    with pytest.raises(GateEvidenceMissing, match="metric_above_floor is failed"):
        reg.update_rollout(state, done, actor="t", required_gates=GATES)
    assert reg.production_version("m").version == 1
    assert reg.active_rollout("m") == state


def test_archiving_the_challenger_ends_its_rollout(registry_url):
    reg = _registry(registry_url)
    state = _canary(reg)
    reg.transition("m", 2, "Archived", actor="ops", reason="withdrawn", evidence={})
    assert reg.active_rollout("m") is None
    ended = reg.get_rollout("m")
    assert ended.phase is Phase.ROLLED_BACK and "withdrawn" in ended.history[-1].reason
    assert CHALLENGER not in reg.aliases("m")
    assert reg.rollout_log("m")[-1]["to_phase"] == "rolled_back"
    # The rollout cannot be moved on any more: no step promotes an archived challenger.
    forward = rollout.conclude(state, datetime.now(UTC), reason="all steps passed")
    with pytest.raises(RegistryConflict):
        reg.update_rollout(state, forward, actor="t", required_gates=GATES)
    assert reg.production_version("m").version == 1


def test_marking_the_challenger_bad_ends_its_rollout(registry_url):
    reg = _registry(registry_url)
    _canary(reg)
    reg.mark_bad("m", 2, actor="ops", reason="serves garbage")
    assert reg.active_rollout("m") is None
    assert reg.get_rollout("m").phase is Phase.ROLLED_BACK
    assert CHALLENGER not in reg.aliases("m")
    assert reg.get_version("m", 2).stage == "Archived"
    assert reg.production_version("m").version == 1


def test_rollout_refuses_a_challenger_marked_bad(tmp_path):
    reg = _registry(tmp_path, n=3)
    _canary(reg)
    _record(reg, 3)
    _move(reg, 3, "Staging")
    reg.mark_bad("m", 3, actor="ops", reason="known bad")
    state = rollout.start(rollout.new_rollout("m", 1, 3), datetime.now(UTC))
    with pytest.raises(VersionMarkedBad):
        reg.start_rollout(state, actor="t", reason="test", supersede=True)
    assert reg.active_rollout("m").challenger_version == 2  # the running rollout was not superseded


def test_rollout_step_moves_nothing_after_the_challenger_was_withdrawn(tmp_path):
    env = local_environment(tmp_path / "data")
    (tmp_path / "data").mkdir()
    reg = _registry(tmp_path / "data", name="synthetic")
    _canary(reg, "synthetic")
    reg.transition("synthetic", 2, "Archived", actor="ops", reason="withdrawn", evidence={})
    key = "synthetic_v001__" + "a" * 12
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(G.partitions_name, [key])
        result = dg.materialize(
            G.assets_and_checks,
            selection=G.keys("rollout_step"),
            partition_key=key,
            instance=instance,
            resources=env.resources,
        )
    (mat,) = [m for m in result.asset_materializations_for_node("synthetic__rollout_step")]
    assert mat.metadata["action"].value == "none"
    assert reg.production_version("synthetic").version == 1


# -- end to end on the synthetic spec ---------------------------------------------------------------


@pytest.fixture
def world(promoted_world: tuple[World, str]):
    """A copy of the session's promoted world: synthetic v1 (seed 1) went through every gate into Production
    (nothing served when it was evaluated); ``land(i, seed)`` lands and runs version i."""
    w, _first = promoted_world
    graph = w.graph
    defs = build_defs(w.env, [graph.model])

    def run(key: str, *assets: str) -> dg.ExecuteInProcessResult:
        return w.run(key, dg.AssetSelection.assets(*graph.keys(*assets)) if assets else None)

    def land(i: int, seed: int, **defects: object) -> str:
        key = w.land(f"synthetic_v00{i}.csv", seed=seed, start_id=(i - 1) * ROWS, **defects)
        run(key)
        return key

    def launch(job: str, op: str, config: dict) -> dg.ExecuteInProcessResult:
        # Job and op names of the model: synthetic__promote_job, synthetic__promote_model, ...
        return defs.resolve_job_def(graph.name(job)).execute_in_process(
            run_config={"ops": {graph.name(op): {"config": config}}}, instance=w.instance, raise_on_error=False
        )

    registry = w.registry()
    yield SimpleNamespace(
        graph=graph,
        land=land,
        run=run,
        launch=launch,
        registry=registry,
        stored=w.env.resources["io_manager"],
        artifacts=w.data / "artifacts",
    )
    registry.engine.dispose()


def _prior_rate_dummy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next candidate_model trains a prior-rate dummy (constant scores: fails metric_above_floor)."""

    def dummy(features_df, spec, training_spec=None, **_ignored):
        return training.train_candidate(features_df, spec, "dummy", {"strategy": "prior"}), None

    monkeypatch.setattr(training, "tune_and_train", dummy)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message


MODEL_CHAIN = ("candidate_model", "model_evaluation", "deployment_decision")


@pytest.mark.e2e
def test_deployment_decision_refuses_evaluation_of_another_version(world, monkeypatch):
    """Fault 1a: v2 of D evaluated (passed), v3 re-trained alone for D, then the decision alone: v3 refused."""
    key = world.land(2, seed=4)  # v2 passed its gates: staged and rolled out against v1
    assert world.registry.active_rollout("synthetic").challenger_version == 2
    _prior_rate_dummy(monkeypatch)
    assert world.run(key, "candidate_model").success
    monkeypatch.undo()
    v3 = world.registry.versions_for_data_version("synthetic", key)[-1]
    assert v3.version == 3 and v3.params["estimator"] == "dummy"
    world.run(key, "deployment_decision")
    decision = world.stored.load_value(world.graph.key("deployment_decision"), key)
    print(f"1a: v{decision['version']} {decision['outcome']}: {decision['reasons'][:2]}")
    assert decision["version"] == 3 and not decision["promote"]
    assert decision["reasons"][0] == "evaluation is of v2, not v3"
    assert any("model_evaluation:metric_above_floor is missing" in r for r in decision["reasons"])
    assert world.registry.production_version("synthetic").version == 1
    assert world.registry.get_version("synthetic", 3).stage == "Archived"
    assert world.registry.active_rollout("synthetic").challenger_version == 2  # v2's rollout goes on


@pytest.mark.e2e
def test_promote_job_refuses_a_version_whose_own_evaluation_failed(world, monkeypatch):
    """Fault 1b: v2 of D failed, D re-trained as v3 which passed: promote_job v2 is refused, v3 untouched."""
    _prior_rate_dummy(monkeypatch)
    key = world.land(2, seed=4)
    monkeypatch.undo()
    v2 = world.registry.versions_for_data_version("synthetic", key)[-1]
    assert v2.version == 2 and world.registry.gate_outcomes("synthetic", 2)[GATES[1]].passed is False
    failed_run = world.registry.gate_outcomes("synthetic", 2)[GATES[1]].run_id
    world.run(key, *MODEL_CHAIN)  # the retrain after the code change: v3 passes and is rolled out
    assert world.registry.active_rollout("synthetic").challenger_version == 3
    result = world.launch("promote_job", "promote_model", {"version": 2, "actor": "bob", "reason": "ship"})
    assert not result.success
    message = _failure_message(result)
    print(f"1b: {message}")
    assert "evaluation is of v3, not v2" in message
    assert "metric_above_floor is failed" in message and failed_run in message
    assert world.registry.production_version("synthetic").version == 1
    assert world.registry.get_version("synthetic", 3).stage == "Staging"
    assert world.registry.active_rollout("synthetic").challenger_version == 3
    assert [t.to_stage for t in world.registry.transitions("synthetic", 2)] == ["None"]


def _flip_one_byte(path: Path) -> str:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return hashlib.sha256(bytes(data)).hexdigest()


@pytest.mark.e2e
def test_promote_job_refuses_an_artifact_that_does_not_verify(world):
    """Fault 2: one byte of the Staging version's stored model flipped: promotion refused with both digests."""
    world.land(2, seed=4)
    v2 = world.registry.get_version("synthetic", 2)
    assert v2.stage == "Staging"
    actual = _flip_one_byte(Path(unquote(urlparse(v2.artifact_uri).path)))
    result = world.launch("promote_job", "promote_model", {"version": 2, "actor": "bob", "reason": "ship"})
    assert not result.success
    message = _failure_message(result)
    print(f"2: {message}")
    assert v2.artifact_sha256 in message and actual in message
    assert world.registry.production_version("synthetic").version == 1


def test_artifact_verification_names_both_digests(tmp_path):
    from sklearn.dummy import DummyClassifier

    from mlops_assets.gate_records import ArtifactRefused, verify_artifact

    store = LocalArtifactStore(tmp_path / "artifacts")
    ref = store_model(store, DummyClassifier().fit([[0], [1]], [0, 1]))
    verify_artifact(store, ref, what="m v1")
    actual = _flip_one_byte(Path(unquote(urlparse(ref.uri).path)))
    with pytest.raises(ArtifactRefused) as info:
        verify_artifact(store, ref, what="m v1")
    assert ref.sha256 in str(info.value) and actual in str(info.value)


def test_a_comparison_with_production_holds_only_while_that_production_serves():
    from mlops_assets.ml.promotion import production_changed

    assert production_changed(1, 1, 2) is None  # still the production it was compared with
    assert production_changed(1, 2, 2) is None  # the candidate itself serves now
    assert production_changed(None, None, 1) is None  # nothing served then, nothing now
    assert production_changed(1, 3, 2) == (
        "production changed since evaluation (compared with v1, now v3): re-evaluate before promoting"
    )
    assert "compared with none, now v1" in str(production_changed(None, 1, 2))


@pytest.mark.e2e
def test_promote_job_refuses_when_production_changed_since_the_versions_evaluation(world):
    """v1 was evaluated when nothing served; once v2 serves, promoting v1 by hand needs a new evaluation
    (rollback_job is the way back to a version that served)."""
    # v1 (the promoted world's): nothing in production when it was evaluated, promoted
    world.land(2, seed=4)  # v2 compared with v1, rolled out
    promoted = world.launch("promote_job", "promote_model", {"version": 2, "actor": "bob", "reason": "ship v2"})
    assert promoted.success and world.registry.production_version("synthetic").version == 2
    result = world.launch("promote_job", "promote_model", {"version": 1, "actor": "bob", "reason": "back to v1"})
    assert not result.success
    message = _failure_message(result)
    assert "production changed since evaluation (compared with none, now v2)" in message
    assert world.registry.production_version("synthetic").version == 2
    rolled_back = world.launch("rollback_job", "rollback_model", {"actor": "bob", "reason": "back to v1"})
    assert rolled_back.success and world.registry.production_version("synthetic").version == 1
