"""Stage 5, deployments: the promotion decision per version and the current stage pointers, per model.

:func:`build` creates the stage's assets for one :class:`~mlops_assets.model.MLModel` (keys ``<model>/...``).
"""

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dagster as dg

from mlops_assets.assets.gating import table
from mlops_assets.gate_records import (
    ArtifactCheck,
    ArtifactRefused,
    PromotionEvidence,
    promotion_evidence,
    verify_artifact,
)
from mlops_assets.gates import MODEL_GATE_NAMES
from mlops_assets.ml import performance, rollout
from mlops_assets.ml.promotion import ROLLOUT_STARTED, Move, MoveDecision, decide_move
from mlops_assets.ml.rollout import GUARD_COLUMNS, Phase, guard_table_rows
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.registry_view import placement
from mlops_assets.resources import FrameIOManager
from mlops_assets.storage.artifacts.store import ArtifactStore
from mlops_assets.storage.registry import (
    ApprovalRequired,
    GateEvidenceMissing,
    ModelRegistry,
    ModelVersion,
    RegistryConflict,
    Stage,
)
from mlops_assets.stored_evidence import rollout_evidence

ACTOR = "mlops_assets/deployment_decision"
ACTOR_ROLLOUT = "mlops_assets/rollout_step"


def _version_summary(v: ModelVersion | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "model_name": v.model_name,
        "version": v.version,
        "stage": v.stage,
        "artifact_sha256": v.artifact_sha256,
        "data_versions": list(v.data_versions),
        "run_id": v.run_id,
        "git_sha": v.git_sha,
    }


def _switch_refusals(
    model: MLModel,
    instance: dg.DagsterInstance,
    reg: ModelRegistry,
    artifacts: ArtifactStore,
    name: str,
    version: int,
) -> list[str]:
    """Why the challenger may not become Production now (empty: it may): its gate evidence, then its artifact."""
    challenger = reg.get_version(name, version)
    refused = promotion_evidence(
        instance, reg, challenger, data_gates=model.data_gates, model_gates=model.model_gates
    ).refusals()
    try:
        verify_artifact(artifacts, challenger.artifact, what=f"{name} v{version}")
    except ArtifactRefused as exc:
        refused.append(str(exc))
    return refused


def _decision_evidence(
    context: dg.AssetExecutionContext,
    current: ModelVersion,
    evaluated: int,
    recorded: PromotionEvidence,
    model_evaluation: dict[str, Any],
) -> dict[str, Any]:
    """The evidence ``deployment_decision`` records with its moves and in its value."""
    return {
        "run_id": context.run.run_id,
        "data_version": context.partition_key,
        "model_version": current.version,
        "artifact_sha256": current.artifact_sha256,
        "evaluated_version": evaluated,
        "gates": recorded.to_list(),
        "headline_metric": model_evaluation.get("headline_metric"),
        "candidate": model_evaluation.get("candidate"),
        "production": model_evaluation.get("production"),
    }


def _apply_decision(
    reg: ModelRegistry,
    decision: MoveDecision,
    current: ModelVersion,
    production: ModelVersion | None,
    evidence: dict[str, Any],
    partition: str,
) -> str:
    """Make the registry moves of an automatic decision; returns the outcome to record.

    ``staged_awaiting_approval`` instead of ``promoted`` when the model's policy wants a person's approval for
    Production (the registry enforces it in the move's transaction).

    Raises:
        dg.Failure: The registry refused the move (newer failed gate evidence) or lost a concurrent promotion.
    """
    name, version = current.model_name, current.version
    try:
        if not decision.allowed:
            # Rejected: archived with the reasons when never staged; only a new passing evaluation stages it again.
            reason = "rejected: " + "; ".join(decision.reasons)
            for stage in decision.stages:
                reg.transition(name, version, stage, actor=ACTOR, reason=reason, evidence=evidence)
            return decision.outcome
        reason = f"{decision.reasons[0]} for data version {partition}"
        moves: dict[str, Any] = {"actor": ACTOR, "evidence": evidence, "required_gates": MODEL_GATE_NAMES}
        for stage in decision.stages:
            try:
                reg.transition(name, version, stage, reason=reason, **moves)
            except ApprovalRequired:
                if stage != Stage.PRODUCTION:
                    raise
                # Staged, waiting for <model>__approve_job + <model>__promote_job.
                return "staged_awaiting_approval"
        if decision.outcome == ROLLOUT_STARTED and production is not None:
            # A champion serves: shadow, then canary steps against it (rollout_step moves it on).
            state = rollout.start(
                rollout.new_rollout(name, production.version, version), datetime.now(UTC), reason=reason
            )
            reg.start_rollout(state, actor=ACTOR, reason=reason, supersede=True, required_gates=MODEL_GATE_NAMES)
        return decision.outcome
    except GateEvidenceMissing as exc:
        # A newer outcome (e.g. a re-evaluation that failed) was recorded after the evidence was read.
        raise dg.Failure(description=f"refusing to move {name} v{version}: {exc}") from exc
    except RegistryConflict as exc:
        raise dg.Failure(description=f"promotion of {name} v{version} lost a concurrent promotion: {exc}") from exc


def _decision_record(
    decision: MoveDecision,
    outcome: str,
    current: ModelVersion,
    production: ModelVersion | None,
    after: ModelVersion | None,
    evidence: dict[str, Any],
) -> dict[str, Any]:
    """``deployment_decision``'s value: the decision, the stage and production pointer before and after."""
    return {
        "model_name": current.model_name,
        "version": current.version,
        "outcome": outcome,
        "promote": decision.promote,
        "reasons": list(decision.reasons),
        "stage_before": current.stage,
        "production_before": production.version if production else None,
        "production_after": after.version if after else None,
        "evidence": evidence,
    }


def _decision_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """``deployment_decision``'s materialization metadata, from its value."""
    after = record["production_after"]
    return {
        "outcome": record["outcome"],
        "model": f"{record['model_name']} v{record['version']}",
        "reasons": "\n".join(record["reasons"]),
        "production_after": "none" if after is None else f"v{after}",
        "gates": dg.MetadataValue.json(record["evidence"]["gates"]),
    }


def _stored_ab_verdict(model: MLModel, stored: FrameIOManager, partition: str) -> rollout.ABVerdict | None:
    """The ``ab_test`` verdict stored for data version ``partition`` (``None``: no test stored for it)."""
    key = model.key("ab_test")
    return rollout.ABVerdict.from_record(
        stored.load_value(key, partition) if stored.has_value(key, partition) else None
    )


def build(model: MLModel) -> dg.Definitions:
    """The deployments stage of ``model``: its promotion decision, rollout step and stage pointers.

    ``deployment_decision`` and ``rollout_step`` are partitioned by the model's data versions;
    ``staging_deployment``, ``production_deployment`` and ``rollout_state`` mirror the registry (unpartitioned).
    """

    @dg.asset(
        **model.asset_defaults("deployment_decision", stage="deployments"),
        kinds={"sqlalchemy"},  # it reads and moves the registry (SQLAlchemy: SQLite locally, PostgreSQL in prod)
        ins={
            "candidate_model": dg.AssetIn(key=model.key("candidate_model")),
            "model_evaluation": dg.AssetIn(key=model.key("model_evaluation")),
        },
        # Monitoring of the new data runs first, against the production model in effect when it arrived.
        deps=[model.key("drift_report"), model.key("predictions"), model.key("rollout_step")],
        description=(
            "What happened to this version's candidate: rejected and archived, or staged and rolled out against "
            "production (shadow, then canary steps; rollout_step moves it on the evidence of later versions) — or "
            "promoted at once when nothing is in production. Re-reads the gate evidence of this very model version "
            "and artifact (model gates from the registry, data gates of its data versions), refuses an evaluation "
            "of another version, verifies the stored artifact, and fails closed."
        ),
    )
    @measured_step
    def deployment_decision(
        context: dg.AssetExecutionContext,
        candidate_model: dict[str, Any],
        model_evaluation: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec, reg = model.spec(), registry
        name, version = spec.name, int(candidate_model["version"])
        current = reg.get_version(name, version)
        # The evaluation at hand must be of this very version (not of an earlier one of the same data version).
        evaluated = int(model_evaluation["model_version"])
        recorded = promotion_evidence(
            context.instance,
            reg,
            current,
            data_gates=model.data_gates,
            model_gates=model.model_gates,
            evaluated_version=evaluated,
        )
        production = reg.production_version(name)
        decision = decide_move(
            Move.AUTOMATIC,
            version=version,
            stage=current.stage,
            gates=recorded.statuses,
            evaluated_version=evaluated,
            production_now=production.version if production else None,
            compared_with_production=model_evaluation.get("production_version"),
            artifact_refusal=ArtifactCheck(artifacts, current.artifact, f"{name} v{version}"),
        )
        evidence = _decision_evidence(context, current, evaluated, recorded, model_evaluation)
        outcome = _apply_decision(reg, decision, current, production, evidence, context.partition_key)
        after = reg.production_version(name)
        record = _decision_record(decision, outcome, current, production, after, evidence)
        context.log.info(f"{name} v{version}: {outcome} ({'; '.join(decision.reasons)})")
        return dg.MaterializeResult(value=record, metadata=_decision_metadata(record))

    @dg.asset(
        **model.asset_defaults("staging_deployment", stage="deployments", partitioned=False),
        kinds={"sqlalchemy"},
        deps=[model.key("deployment_decision"), model.key("rollout_step")],
        description=(
            "The registry's Staging versions of the model, as of the last deployment decision, and why the newest "
            "is there (the registry's audit event that staged it: decision or promotion job, actor, time, run, data "
            "version)."
        ),
    )
    @measured_step
    def staging_deployment(registry: dg.ResourceParam[ModelRegistry]) -> dg.MaterializeResult:
        name = model.name
        staged = [v for v in registry.list_versions(name) if v.stage == Stage.STAGING]
        metadata: dict[str, Any] = {"staging_versions": ", ".join(f"v{v.version}" for v in staged) or "none"}
        if staged:
            metadata.update(placement(registry, name, staged[-1].version, Stage.STAGING))
        return dg.MaterializeResult(
            value={"model_name": name, "staging": [_version_summary(v) for v in staged]}, metadata=metadata
        )

    @dg.asset(
        **model.asset_defaults("production_deployment", stage="deployments", partitioned=False),
        kinds={"sqlalchemy"},
        deps=[model.key("deployment_decision"), model.key("rollout_step")],
        description=(
            "The model version in Production (the registry is the single source of truth; this mirrors it), and "
            "why: the registry's audit event that put it there (deployment decision, promotion job, rollout finish "
            "or rollback; actor, time, run, data version, gates, approval). "
            "Freshness: it should be refreshed by new data at least weekly (warn after 3 days)."
        ),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=7), warn_window=timedelta(days=3)),
    )
    @measured_step
    def production_deployment(registry: dg.ResourceParam[ModelRegistry]) -> dg.MaterializeResult:
        name = model.name
        reg = registry
        production = reg.production_version(name)
        metadata: dict[str, Any] = {"model": f"{name} v{production.version}" if production else f"{name}: none"}
        if production is not None:
            metadata["version"] = production.version
            metadata["trained_on"] = ", ".join(production.data_versions)
            metadata["artifact_sha256"] = production.artifact_sha256
            promoted = [t for t in reg.transitions(name, production.version) if t.to_stage == Stage.PRODUCTION]
            if promoted:
                metadata["promoted_at"] = promoted[-1].at.isoformat()
            metadata.update(placement(reg, name, production.version, Stage.PRODUCTION))
        return dg.MaterializeResult(
            value={"model_name": name, "production": _version_summary(production)}, metadata=metadata
        )

    @dg.asset(
        **model.asset_defaults("rollout_step", stage="deployments"),
        kinds={"sqlalchemy"},  # it reads and moves the registry (SQLAlchemy: SQLite locally, PostgreSQL in prod)
        deps=[model.key("performance_report"), model.key("ab_test")],
        description=(
            "The active rollout's step on the evidence of this data version: guards of the current phase on every "
            "labelled version scored since the phase began (shadow: agreement and rank correlation with the "
            "champion; canary: failure rate, error-rate increase and AUC drop on the challenger's rows, paired "
            "with the champion's scores, and the A/B verdict). Pass: one step forward (the last one is the atomic "
            "blue/green switch in the registry); fail: automatic rollback; too little data: no move."
        ),
    )
    @measured_step
    def rollout_step(
        context: dg.AssetExecutionContext,
        io_manager: dg.ResourceParam[FrameIOManager],
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec, reg, now = model.spec(), registry, datetime.now(UTC)
        state = reg.active_rollout(spec.name)
        if state is None:
            return dg.MaterializeResult(
                value={"action": "none", "reason": "no rollout in progress"}, metadata={"action": "none"}
            )
        version = state.challenger_version
        joined, used = rollout_evidence(model, context.instance, io_manager, state, state.phase_started_at or now)
        guards = (
            performance.rollout_guards(
                state, joined, spec.policy.rollout, decision_threshold=spec.policy.evaluation.decision_threshold
            )
            if len(joined)
            else None
        )
        ab = _stored_ab_verdict(model, io_manager, context.partition_key) if guards is not None else None
        refusals = partial(_switch_refusals, model, context.instance, reg, artifacts, spec.name, version)
        decision = rollout.next_rollout_step(state, guards, ab, now, switch_refusals=refusals)
        if decision.guards is None:  # no evidence yet: nothing to persist
            return dg.MaterializeResult(value=decision.to_record(used), metadata=decision.to_metadata(used))
        try:
            reg.update_rollout(state, decision.after, actor=ACTOR_ROLLOUT, required_gates=MODEL_GATE_NAMES)
        except ApprovalRequired as exc:
            # Every guard passed but the policy wants a person: stay at full canary until <model>__approve_job runs.
            decision = decision.held_for_approval(str(exc))
        except GateEvidenceMissing as exc:
            raise dg.Failure(description=f"rollout of v{version} refused: {exc}") from exc
        except RegistryConflict as exc:
            raise dg.Failure(description=f"rollout of v{version} changed concurrently: {exc}") from exc
        context.log.info(decision.log_line(used))
        return dg.MaterializeResult(
            value=decision.to_record(used),
            metadata={
                **decision.to_metadata(used),
                "guards": table(decision.guard_rows, columns=list(GUARD_COLUMNS), descriptions=GUARD_COLUMNS),
            },
        )

    @dg.asset(
        **model.asset_defaults("rollout_state", stage="deployments", partitioned=False),
        kinds={"sqlalchemy"},
        deps=[model.key("deployment_decision"), model.key("rollout_step")],
        description="The model's latest rollout as the registry records it: phase, traffic share and every move.",
    )
    @measured_step
    def rollout_state(registry: dg.ResourceParam[ModelRegistry]) -> dg.MaterializeResult:
        name = model.name
        state = registry.get_rollout(name)
        if state is None:
            return dg.MaterializeResult(value={"model_name": name, "rollout": None}, metadata={"phase": "none"})
        moves = [
            {
                "at": e.at.isoformat(),
                "from": f"{e.from_phase.value} {e.from_share:g}",
                "to": f"{e.to_phase.value} {e.to_share:g}",
                "guards": (e.evidence.get("guards") or {}).get("status", ""),
                "reason": e.reason,
            }
            for e in state.history
        ]
        metadata: dict[str, Any] = {
            "phase": state.phase.value,
            "challenger_share": state.challenger_share,
            "active": state.phase in (Phase.SHADOW, Phase.CANARY),
            "champion": f"v{state.champion_version}",
            "challenger": f"v{state.challenger_version}",
            "moves": table(moves, columns=("at", "from", "to", "guards", "reason")),
        }
        # The guards that decided the latest move (each with the direction that passes).
        decided = [e for e in state.history if (e.evidence.get("guards") or {}).get("checks")]
        if decided:
            rows = guard_table_rows(decided[-1].evidence["guards"]["checks"])
            metadata["last_guards"] = table(rows, columns=list(GUARD_COLUMNS), descriptions=GUARD_COLUMNS)
        return dg.MaterializeResult(value={"model_name": name, "rollout": state.to_dict()}, metadata=metadata)

    return dg.Definitions(
        assets=[deployment_decision, staging_deployment, production_deployment, rollout_step, rollout_state]
    )
