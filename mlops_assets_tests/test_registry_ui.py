"""Issue 16, item 2: the registry and the deployments in the UI.

* a failed evaluation leaves an explicit, append-only "rejected" record (once per evaluation, every failed gate
  and its message; the stage does not move);
* ``<model>/model_registry`` shows the audit trail (newest first, bounded, with the total) and one row per version;
  every job that can change the registry refreshes it, and a run whose gate failed refreshes it too (the hook);
* ``production_deployment`` / ``staging_deployment`` say why their version is there; guard tables say which
  direction passes and round their numbers.

The registry tests drive :class:`ModelRegistry` directly (SQLite and PostgreSQL); the end-to-end ones run the
real jobs on the small synthetic world.
"""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import sqlalchemy as sa

from mlops_assets.definitions import build_defs
from mlops_assets.gates import MODEL_GATE_NAMES
from mlops_assets.jobs import POINTERS
from mlops_assets.ml import rollout, training
from mlops_assets.registry_view import audit_rows, placement, registry_metadata, version_rows
from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import Lineage, ModelRegistry, Stage
from mlops_assets_tests.worlds import World

pytestmark = pytest.mark.wiring

EVALUATION_GATES = [g for g in MODEL_GATE_NAMES if g.startswith("model_evaluation:")]


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_registry_url")


def _registry(url: str, n: int = 2) -> ModelRegistry:
    reg = ModelRegistry(url)
    for i in range(1, n + 1):
        sha = hashlib.sha256(f"model {i}".encode()).hexdigest()
        ref = ArtifactRef(uri=f"file:///artifacts/{sha}.skops", sha256=sha, size=10)
        lineage = Lineage(data_versions=(f"d{i}",), run_id=f"train-{i}", package_version="c", git_sha="g",
                          spec_fingerprint="s")  # fmt: skip
        reg.register_version("m", ref, lineage, {}, {})
    return reg


def _evaluate(reg: ModelRegistry, version: int, run_id: str, failing: dict[str, str], gates=MODEL_GATE_NAMES) -> None:
    """Record one evaluation of ``version`` in ``run_id``: the gates in ``failing`` fail with their message."""
    mv = reg.get_version("m", version)
    for gate in gates:
        reg.record_gate_result(
            "m",
            version,
            artifact_sha256=mv.artifact_sha256,
            gate=gate,
            passed=gate not in failing,
            data_version=mv.data_versions[-1],
            run_id=run_id,
            summary=failing.get(gate, "ok"),
        )


# -- the rejected record --------------------------------------------------------------------------------------------


def test_a_failed_evaluation_is_one_rejection_naming_every_failed_gate(registry_url):
    reg = _registry(registry_url)
    a, b = EVALUATION_GATES[0], EVALUATION_GATES[2]
    _evaluate(reg, 1, "run-1", {a: "auc 0.5 < 0.6", b: "ece 0.2 > 0.05"})
    (rejection,) = reg.rejections("m")
    assert rejection.version == 1 and rejection.run_id == "run-1" and rejection.data_version == "d1"
    assert rejection.artifact_sha256 == reg.get_version("m", 1).artifact_sha256
    assert rejection.failed_gates == ((a, "auc 0.5 < 0.6"), (b, "ece 0.2 > 0.05"))
    assert reg.get_version("m", 1).stage == Stage.NONE  # a record, not a stage
    (entry,) = [e for e in reg.audit_log("m") if e["kind"] == "gate"]
    assert entry["change"] == f"rejected by {a.split(':')[1]}, {b.split(':')[1]}"
    assert entry["reason"] == "auc 0.5 < 0.6; ece 0.2 > 0.05" and entry["actor"] == "run run-1"
    reg.close()


def test_gates_recorded_separately_share_their_evaluations_rejection_and_a_new_evaluation_gets_its_own(registry_url):
    reg = _registry(registry_url)
    a, b = EVALUATION_GATES[0], EVALUATION_GATES[1]
    # The candidate gate in its own step, then the evaluation gates in another step of the same run.
    _evaluate(reg, 2, "run-2", {MODEL_GATE_NAMES[0]: "scores differ"}, gates=MODEL_GATE_NAMES[:1])
    _evaluate(reg, 2, "run-2", {a: "too low"}, gates=MODEL_GATE_NAMES[1:])
    first = ((MODEL_GATE_NAMES[0], "scores differ"), (a, "too low"))
    assert [r.failed_gates for r in reg.rejections("m", 2)] == [first]
    _evaluate(reg, 2, "run-3", {b: "unfair"})  # re-evaluated in another run: another failed evaluation
    _evaluate(reg, 1, "run-4", {})  # a passing evaluation leaves no rejection
    assert [(r.run_id, r.failed_gates) for r in reg.rejections("m")] == [
        ("run-2", first),
        ("run-3", ((b, "unfair"),)),
    ]
    assert reg.rejections("m", 1) == []
    reg.close()


def test_rejections_are_append_only(registry_url):
    reg = _registry(registry_url)
    _evaluate(reg, 1, "run-1", {EVALUATION_GATES[0]: "no"})
    for statement in ("UPDATE version_rejections SET summary = 'fine'", "DELETE FROM version_rejections"):
        with pytest.raises(sa.exc.DatabaseError), reg.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert len(reg.rejections("m")) == 1
    reg.close()


def test_one_rejection_per_evaluation_is_a_database_rule(tmp_path):
    reg = _registry(f"sqlite:///{tmp_path / 'registry.db'}")
    _evaluate(reg, 1, "run-1", {EVALUATION_GATES[0]: "no"})
    row = {"model_name": "m", "version": 1, "artifact_sha256": reg.get_version("m", 1).artifact_sha256,
           "data_version": "d1", "run_id": "run-1", "gate": "x", "summary": "", "at": "2026-01-01"}  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), reg.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO version_rejections (model_name, version, artifact_sha256, data_version, run_id, gate, "
                "summary, at) VALUES (:model_name, :version, :artifact_sha256, :data_version, :run_id, :gate, "
                ":summary, :at)"
            ),
            row,
        )
    reg.close()


# -- the registry asset's metadata ----------------------------------------------------------------------------------


def test_the_audit_table_is_newest_first_bounded_and_counts_every_event(tmp_path):
    reg = _registry(f"sqlite:///{tmp_path / 'registry.db'}", n=3)
    _evaluate(reg, 1, "run-1", {})
    reg.transition("m", 1, "Staging", actor="alice", reason="ship", evidence={"run_id": "r9", "data_version": "d1"})
    _evaluate(reg, 3, "run-3", {EVALUATION_GATES[0]: "too low"})
    rows, total = audit_rows(reg, "m", limit=2)
    assert total == len(reg.audit_log("m")) == 5  # three registrations, a stage move, a rejection
    assert [r["event"] for r in rows] == ["rejected", "stage"]
    assert rows[0]["version"] == 3 and rows[0]["reason"] == "too low" and rows[0]["data_version"] == "d3"
    assert rows[1]["from → to"] == "None -> Staging" and rows[1]["actor"] == "alice" and rows[1]["run"] == "r9"
    metadata = registry_metadata(reg, "m", limit=2)
    assert metadata["audit_events"] == 5 and metadata["audit_shown"] == 2 and metadata["rejections"] == 1
    schema = metadata["audit_trail"].schema
    assert [c.name for c in schema.columns][:6] == ["time", "actor", "event", "version", "from → to", "reason"]
    assert all(c.description for c in schema.columns)
    reg.close()


def test_version_rows_show_stage_aliases_digest_data_gates_rejections_and_rollout(tmp_path):
    reg = _registry(f"sqlite:///{tmp_path / 'registry.db'}")
    _evaluate(reg, 1, "run-1", {})
    reg.transition("m", 1, "Staging", actor="a", reason="r", evidence={}, required_gates=MODEL_GATE_NAMES)
    reg.transition("m", 1, "Production", actor="a", reason="r", evidence={}, required_gates=MODEL_GATE_NAMES)
    _evaluate(reg, 2, "run-2", {EVALUATION_GATES[1]: "unfair"})
    v2, v1 = version_rows(reg, "m")
    assert v1["version"] == 1 and v1["stage"] == "Production" and v1["aliases"] == "champion"
    assert v1["gates"] == f"all {len(MODEL_GATE_NAMES)} passed" and v1["rejected"] == ""
    assert v1["artifact"] == reg.get_version("m", 1).artifact_sha256[:12] and v1["trained_on"] == "d1"
    assert v2["stage"] == "None" and v2["gates"] == f"failed: {EVALUATION_GATES[1].split(':')[1]}"
    assert v2["rejected"] == f"d2: {EVALUATION_GATES[1].split(':')[1]}"
    reg.close()


def test_placement_says_which_decision_put_the_version_there(tmp_path):
    reg = _registry(f"sqlite:///{tmp_path / 'registry.db'}")
    _evaluate(reg, 1, "run-1", {})
    evidence = {"run_id": "run-7", "data_version": "d1", "gates": [{"check": g, "status": "passed"} for g in "ab"]}
    actor = "mlops_assets/deployment_decision"
    reg.transition("m", 1, "Staging", actor=actor, reason="passed every gate", evidence=evidence)
    reg.approve("m", 1, approver="carol", stage="Production", comment="looks right")
    reg.transition("m", 1, "Production", actor=actor, reason="passed every gate", evidence=evidence)
    why = placement(reg, "m", 1, Stage.PRODUCTION)
    assert why["placed_by"] == "deployment decision" and why["placed_actor"] == actor
    assert why["placed_data_version"] == "d1" and why["placed_gates"] == "2/2 passed"
    assert isinstance(why["placed_run"], dg.DagsterRunMetadataValue) and why["placed_run"].run_id == "run-7"
    assert why["approval"].startswith("carol at ") and why["approval"].endswith("looks right")
    assert placement(reg, "m", 2, Stage.PRODUCTION) == {}
    reg.close()


# -- guard tables ---------------------------------------------------------------------------------------------------


def test_every_guard_row_says_which_direction_passes_and_the_table_rounds():
    import numpy as np

    rng = np.random.default_rng(0)
    champion = rng.random(2000)
    y = (rng.random(2000) < champion).astype(float)
    shadow = rollout.shadow_guards(champion, champion + 0.01, min_rows=10)
    canary = rollout.canary_guards(y, champion, champion, min_rows=10)
    ab = rollout.ABVerdict(challenger_version=2, decision="winner", winner="champion", p_value=0.01)
    checks = [c.to_dict() for c in (*shadow.checks, *canary.checks, ab.guard_check())]
    rows = rollout.guard_table_rows(checks)
    assert {r["name"] for r in rows} == set(rollout.GUARD_PASSES_WHEN)
    assert all(r["passes_when"] for r in rows)
    assert next(r for r in rows if r["name"] == "auc_drop")["passes_when"].startswith("value ≤ limit")
    assert next(r for r in rows if r["name"] == "agreement")["passes_when"].startswith("value ≥ limit")

    from mlops_assets.assets.gating import table

    rows[0]["value"] = 0.30000000000000004
    shown = table(rows, columns=list(rollout.GUARD_COLUMNS), descriptions=rollout.GUARD_COLUMNS)
    assert shown.records[0].data["value"] == 0.3
    assert [c.name for c in shown.schema.columns] == list(rollout.GUARD_COLUMNS)
    assert "passing direction" in shown.schema.columns[3].description


# -- wiring: every job that can change the registry refreshes it ----------------------------------------------------


def test_every_model_job_refreshes_the_registry_asset_and_carries_the_failure_hook(tmp_path):
    from mlops_assets.environments import local_environment

    defs = build_defs(local_environment(tmp_path))
    assert "model_registry" in POINTERS
    for model in ("flights", "synthetic"):
        key = dg.AssetKey([model, "model_registry"])
        spec = defs.resolve_assets_def(key).specs_by_key[key]
        assert spec.group_name == model and spec.partitions_def is None and "sqlalchemy" in spec.kinds
        for job_name in ("lifecycle_job", "ingest_job", "labels_job", "retrain_job"):
            job = defs.resolve_job_def(f"{model}__{job_name}")
            assert key in job.asset_layer.selected_asset_keys, job_name
            assert f"{model}__refresh_model_registry" in {h.name for h in job.hook_defs}, job_name


# -- end to end on the synthetic world ------------------------------------------------------------------------------


@pytest.fixture
def world(promoted_world: tuple[World, str]):
    """The session's promoted world (synthetic v1 in Production), its definitions and registry."""
    w, first = promoted_world
    defs = build_defs(w.env, [w.graph.model])
    registry = w.registry()
    yield SimpleNamespace(w=w, first=first, graph=w.graph, defs=defs, registry=registry)
    registry.close()


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dg.EventLogRecord:
    (record,) = instance.fetch_materializations(key, limit=1).records
    return record


@pytest.mark.e2e
def test_a_run_whose_gate_failed_still_refreshes_the_registry_asset_with_the_rejection(world, monkeypatch):
    w, graph = world.w, world.graph
    # Production's pointer says why v1 serves: the decision of the promoted world's first run.
    production = _latest(w.instance, graph.key("production_deployment")).asset_materialization
    assert production is not None and production.metadata["placed_by"].value == "deployment decision"
    key = w.land("synthetic_v002.csv", seed=4, start_id=2500)
    assert w.run(key, dg.AssetSelection.assets(*graph.keys("raw_data", "features", "labels"))).success

    def dummy(features_df, spec, training_spec=None, **_ignored):  # constant scores: fails metric_above_floor
        return training.train_candidate(features_df, spec, "dummy", {"strategy": "prior"}), None

    monkeypatch.setattr(training, "tune_and_train", dummy)
    before = _latest(w.instance, graph.key("model_registry")).storage_id
    result = world.defs.resolve_job_def(graph.name("retrain_job")).execute_in_process(
        partition_key=key, instance=w.instance, raise_on_error=False
    )
    assert not result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert graph.key("deployment_decision") not in materialized and graph.key("model_registry") not in materialized

    (rejection,) = world.registry.rejections("synthetic")
    assert rejection.version == 2 and rejection.run_id == result.run_id and rejection.data_version == key
    assert "model_evaluation:metric_above_floor" in dict(rejection.failed_gates)
    assert world.registry.get_version("synthetic", 2).stage == Stage.NONE

    refreshed = _latest(w.instance, graph.key("model_registry"))
    assert refreshed.storage_id > before  # reported by the failure hook after the gate step failed
    metadata = refreshed.asset_materialization.metadata  # type: ignore[union-attr]
    assert metadata["changed_by_run"].value == result.run_id and metadata["rejections"].value == 1
    trail = metadata["audit_trail"].value
    assert trail.records[0].data["event"] == "rejected" and trail.records[0].data["version"] == 2
    versions = {r.data["version"]: r.data for r in metadata["versions"].value.records}
    assert "metric_above_floor" in versions[2]["rejected"] and versions[1]["stage"] == "Production"


@pytest.mark.e2e
def test_the_approve_job_refreshes_the_registry_asset(world):
    w, graph = world.w, world.graph
    result = world.defs.resolve_job_def(graph.name("approve_job")).execute_in_process(
        run_config={
            "ops": {graph.name("approve_model"): {"config": {"version": 1, "approver": "dana", "comment": "ok"}}}
        },
        instance=w.instance,
    )
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == graph.key("model_registry")]
    trail = event.materialization.metadata["audit_trail"].value
    assert trail.records[0].data["event"] == "approval" and trail.records[0].data["actor"] == "dana"
