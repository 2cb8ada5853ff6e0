"""Stage 5, deployments: the promotion decision per version and the current stage pointers, per model.

:func:`build` creates the stage's assets for one :class:`~mlops_assets.model.MLModel` (keys ``<model>/...``).
"""

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

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
from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, SPLIT_COLUMN
from mlops_assets.ml.labels import ROW_ID, labelled_features
from mlops_assets.ml.policy import RolloutPolicy
from mlops_assets.ml.promotion import (
    KEPT_CHALLENGER,
    PROMOTED,
    QUEUED,
    QUEUED_ALIAS,
    REJECTED,
    ROLLOUT_STARTED,
    UNCHANGED,
    HoldoutComparison,
    Move,
    MoveDecision,
    compare_on_holdout,
    comparison_refusal,
    decide_move,
)
from mlops_assets.ml.rollout import GUARD_COLUMNS, Phase, RolloutState, guard_table_rows
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import predict_scores
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.registry_view import placement
from mlops_assets.resources import FrameIOManager
from mlops_assets.storage.artifacts.skops_codec import load_model
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


def _plan(policy: RolloutPolicy, name: str, champion: int, challenger: int) -> RolloutState:
    """A new, idle rollout with the spec's plan (steps, shadow phase, new-candidate policy) recorded in it."""
    return rollout.new_rollout(
        name,
        champion,
        challenger,
        canary_steps=policy.canary_steps,
        shadow_phase=policy.shadow_phase,
        on_new_candidate=policy.on_new_candidate,
    )


def _apply_decision(
    reg: ModelRegistry,
    decision: MoveDecision,
    current: ModelVersion,
    production: ModelVersion | None,
    evidence: dict[str, Any],
    partition: str,
    policy: RolloutPolicy,
    *,
    why: str = "",
    actor: str = ACTOR,
) -> str:
    """Make the registry moves of an automatic decision; returns the outcome to record.

    ``staged_awaiting_approval`` instead of ``promoted`` when the model's policy wants a person's approval for
    Production (the registry enforces it in the move's transaction). A started rollout follows ``policy``'s plan
    and supersedes a rollout in progress (the caller decided that it may: ``on_new_candidate``); ``why`` is
    appended to the reason of the moves (e.g. the comparison that let the candidate replace the challenger).

    Raises:
        dg.Failure: The registry refused the move (newer failed gate evidence) or lost a concurrent promotion.
    """
    name, version = current.model_name, current.version
    try:
        if not decision.allowed:
            # Rejected: archived with the reasons when never staged; only a new passing evaluation stages it again.
            reason = "rejected: " + "; ".join(decision.reasons) + (f" ({why})" if why else "")
            for stage in decision.stages:
                reg.transition(name, version, stage, actor=actor, reason=reason, evidence=evidence)
            return decision.outcome
        reason = f"{decision.reasons[0]} for data version {partition}" + (f"; {why}" if why else "")
        moves: dict[str, Any] = {"actor": actor, "evidence": evidence, "required_gates": MODEL_GATE_NAMES}
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
            state = rollout.start(_plan(policy, name, production.version, version), datetime.now(UTC), reason=reason)
            reg.start_rollout(state, actor=actor, reason=reason, supersede=True, required_gates=MODEL_GATE_NAMES)
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


# -- a new candidate while a rollout is in progress ---------------------------------------------------------------


def _drop_queued(reg: ModelRegistry, name: str, newer: int, reason: str) -> int | None:
    """Archive the queued candidate older than ``newer`` (a newer candidate replaces it); returns its version."""
    queued = reg.get_alias(name, QUEUED_ALIAS)
    if queued is None or queued.version >= newer:
        return None
    reg.delete_alias(name, QUEUED_ALIAS, actor=ACTOR, reason=reason)
    if queued.stage in (Stage.NONE, Stage.STAGING):
        reg.transition(
            name, queued.version, Stage.ARCHIVED, actor=ACTOR, reason=reason, evidence={"replaced_by": newer}
        )
    return queued.version


def _queue(reg: ModelRegistry, current: ModelVersion, active: RolloutState, partition: str) -> dict[str, Any]:
    """``on_new_candidate: queue``: the candidate stays in stage None under the alias ``queued``, with the reason.

    A candidate queued before it is archived (the newer one replaces it). The queued candidate's rollout starts when
    the rollout in progress ends (:func:`_start_queued`, called by ``rollout_step``).
    """
    name, version = current.model_name, current.version
    reason = (
        f"queued behind the rollout of v{active.challenger_version} ({active.phase.value} "
        f"{active.challenger_share:g}; on_new_candidate: queue): gates passed for data version {partition}; "
        "its rollout starts when that one ends"
    )
    previous = reg.get_alias(name, QUEUED_ALIAS)
    reg.set_alias(name, QUEUED_ALIAS, version, actor=ACTOR, reason=reason)
    replaced = None
    if previous is not None and previous.version != version and previous.stage in (Stage.NONE, Stage.STAGING):
        replaced = previous.version
        why = f"replaced in the queue by v{version} (data version {partition})"
        reg.transition(name, replaced, Stage.ARCHIVED, actor=ACTOR, reason=why, evidence={"replaced_by": version})
    return {"policy": "queue", "behind": active.challenger_version, "replaced": replaced, "reason": reason}


def _holdout_comparison(
    model: MLModel,
    spec: DatasetSpec,
    stored: FrameIOManager,
    artifacts: ArtifactStore,
    current: ModelVersion,
    challenger: ModelVersion,
    partition: str,
) -> HoldoutComparison:
    """``on_new_candidate: compare``: both models scored on the holdout of ``partition`` (the newer candidate's).

    The holdout's labels come from the labels stream joined by row id, as in ``model_evaluation``
    (:func:`labelled_features`: unlabelled rows are left out); artifacts are verified before they are loaded
    (:func:`load_model`). No stored labels: no labelled row, so the comparison is undefined and the challenger in
    flight continues.
    """
    features = stored.load_value(model.key("features"), partition)
    labels_key = model.key("labels")
    labels = (
        stored.load_value(labels_key, partition)
        if stored.has_value(labels_key, partition)
        else pd.DataFrame({ROW_ID: pd.Series(dtype=str), performance.LABEL: pd.Series(dtype=float)})
    )
    labelled = labelled_features(features, labels, spec)
    holdout = labelled[labelled[SPLIT_COLUMN] == HOLDOUT]
    y = holdout[LABEL_COLUMN].astype(float).to_numpy()
    settings = spec.policy.evaluation
    return compare_on_holdout(
        y,
        predict_scores(load_model(artifacts, current.artifact), holdout, spec),
        predict_scores(load_model(artifacts, challenger.artifact), holdout, spec),
        metric=settings.headline_metric,
        data_version=partition,
        candidate_version=current.version,
        challenger_version=challenger.version,
        samples=settings.bootstrap_samples,
        confidence_level=settings.confidence_level,
        seed=settings.random_seed,
    )


def _decide_during_rollout(
    model: MLModel,
    spec: DatasetSpec,
    reg: ModelRegistry,
    stored: FrameIOManager,
    artifacts: ArtifactStore,
    decision: MoveDecision,
    current: ModelVersion,
    production: ModelVersion | None,
    evidence: dict[str, Any],
    partition: str,
) -> tuple[str, dict[str, Any] | None]:
    """Apply an automatic decision, following the rollout in progress' ``on_new_candidate`` when there is one.

    Without a rollout in progress (or for a rejected candidate) the decision is applied as it is. A candidate allowed
    to start a rollout while another version's rollout runs goes by the policy recorded in that rollout at its
    start: ``queue`` (:func:`_queue`: outcome ``queued``), ``supersede`` (its rollout replaces the running one,
    which is rolled back and its challenger archived) or ``compare`` (:func:`_holdout_comparison`: significantly
    better, it replaces the running one; else it is archived with the comparison as the reason, outcome
    ``kept_challenger``). The challenger being rolled out itself is ``unchanged``. A candidate that starts a
    rollout or is promoted replaces an older queued one.

    Returns:
        The outcome and what the rollout in progress made of the candidate (``None``: there was none), with
        ``policy`` and ``reason``.
    """
    name, version, policy = current.model_name, current.version, spec.policy.rollout
    active = reg.active_rollout(name)
    during: dict[str, Any] | None = None
    if decision.outcome != ROLLOUT_STARTED or active is None:
        outcome = _apply_decision(reg, decision, current, production, evidence, partition, policy)
    elif active.challenger_version == version:
        return UNCHANGED, {"policy": active.on_new_candidate, "reason": f"v{version} is being rolled out already"}
    elif active.on_new_candidate == "queue":
        return QUEUED, _queue(reg, current, active, partition)
    elif active.on_new_candidate == "compare":
        challenger = reg.get_version(name, active.challenger_version)
        comparison = _holdout_comparison(model, spec, stored, artifacts, current, challenger, partition)
        during = {"policy": "compare", **comparison.to_dict()}
        evidence["comparison"] = comparison.to_dict()
        if not comparison.candidate_wins:
            reg.transition(name, version, Stage.ARCHIVED, actor=ACTOR, reason=comparison.reason, evidence=evidence)
            return KEPT_CHALLENGER, during
        outcome = _apply_decision(
            reg, decision, current, production, evidence, partition, policy, why=comparison.reason
        )
    else:
        why = (
            f"on_new_candidate: supersede — the rollout of v{active.challenger_version} "
            f"({active.phase.value} {active.challenger_share:g}) is rolled back"
        )
        during = {"policy": "supersede", "superseded": active.challenger_version, "reason": why}
        outcome = _apply_decision(reg, decision, current, production, evidence, partition, policy, why=why)
    if outcome in (ROLLOUT_STARTED, PROMOTED, "staged_awaiting_approval"):
        _drop_queued(reg, name, version, f"replaced by the newer candidate v{version} (data version {partition})")
    return outcome, during


# -- the rollout step's evidence and the queued candidate -----------------------------------------------------------


def _breach(stored: FrameIOManager, key: dg.AssetKey, partition: str, state: RolloutState) -> str | None:
    """The production model's SLA breach on data version ``partition``, in words, or ``None``.

    Read from the stored ``performance_report`` (its ``sla``): breached, and measured on this rollout's champion.
    """
    if not stored.has_value(key, partition):
        return None
    record = stored.load_value(key, partition)
    sla = record.get("sla") if isinstance(record, dict) else None
    if not isinstance(sla, dict) or not sla.get("breached") or sla.get("model_version") != state.champion_version:
        return None
    return (
        f"v{state.champion_version} realised {sla['metric']} {float(sla['realised']):.4f} < floor "
        f"{float(sla['floor']):.4f} on data version {partition}, {sla.get('labelled_rows')} labelled rows"
    )


def _start_queued(
    model: MLModel,
    spec: DatasetSpec,
    instance: dg.DagsterInstance,
    reg: ModelRegistry,
    artifacts: ArtifactStore,
    partition: str,
) -> dict[str, Any] | None:
    """Start the queued candidate's rollout now that none is in progress; ``None`` when nothing is queued.

    The same decision as ``deployment_decision`` (:func:`decide_move`, automatic) on the candidate's re-read gate
    evidence: its gates must still pass for this version and artifact, and production must still be the version
    its evaluation compared with. After a roll-back that holds and its rollout starts (against the spec's plan of
    now); after a promotion production changed, so the candidate is archived with the reason (re-evaluate: the
    next retrain is judged against the new production). Either way the alias ``queued`` is removed, with the
    outcome as its reason.
    """
    name = spec.name
    queued = reg.get_alias(name, QUEUED_ALIAS)
    if queued is None or reg.active_rollout(name) is not None:
        return None
    recorded = promotion_evidence(instance, reg, queued, data_gates=model.data_gates, model_gates=model.model_gates)
    production = reg.production_version(name)
    production_now = production.version if production else None
    decision = decide_move(
        Move.AUTOMATIC,
        version=queued.version,
        stage=queued.stage,
        gates=recorded.statuses,
        evaluated_version=recorded.evaluated_version,
        production_now=production_now,
        compared_with_production=recorded.compared_with_production,
        artifact_refusal=ArtifactCheck(artifacts, queued.artifact, f"{name} v{queued.version}"),
    )
    unknown = comparison_refusal(
        queued.version, recorded.evaluated_version, recorded.comparison_known, None, production_now
    )
    if decision.allowed and not recorded.comparison_known and unknown:
        # What its evaluation compared against is unknown (a later evaluation of its data version): fail closed.
        never_staged = (Stage.ARCHIVED,) if queued.stage == Stage.NONE else ()
        decision = MoveDecision(Move.AUTOMATIC, False, REJECTED, (unknown,), never_staged)
    why = "the rollout it was queued behind ended"
    reg.delete_alias(name, QUEUED_ALIAS, actor=ACTOR_ROLLOUT, reason=f"{why}: {decision.outcome}")
    evidence = {"queued_version": queued.version, "data_version": partition, "gates": recorded.to_list()}
    own = queued.data_versions[-1] if queued.data_versions else partition  # the data version it was trained for
    outcome = _apply_decision(
        reg, decision, queued, production, evidence, own, spec.policy.rollout, why=why, actor=ACTOR_ROLLOUT
    )
    return {"version": queued.version, "outcome": outcome, "reasons": list(decision.reasons)}


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
            "production (shadow, then canary steps as the spec plans them; rollout_step moves it on the evidence of "
            "later versions) — or promoted at once when nothing is in production. While another rollout is in "
            "progress, its on_new_candidate policy decides: queued (stage None, alias queued), supersede, or "
            "compare on this version's holdout (the significantly better one continues, the other is archived). "
            "Re-reads the gate evidence of this very model version and artifact (model gates from the registry, "
            "data gates of its data versions), refuses an evaluation of another version, verifies the stored "
            "artifact, and fails closed."
        ),
    )
    @measured_step
    def deployment_decision(
        context: dg.AssetExecutionContext,
        candidate_model: dict[str, Any],
        model_evaluation: dict[str, Any],
        io_manager: dg.ResourceParam[FrameIOManager],
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
        outcome, during = _decide_during_rollout(
            model, spec, reg, io_manager, artifacts, decision, current, production, evidence, context.partition_key
        )
        after = reg.production_version(name)
        record = _decision_record(decision, outcome, current, production, after, evidence)
        record["during_rollout"] = during
        extra = f"; {during['reason']}" if during and during.get("reason") else ""
        context.log.info(f"{name} v{version}: {outcome} ({'; '.join(decision.reasons)}{extra})")
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
        # One step of a model's rollout at a time (the instance's pool limit, 1 in dagster.yaml): a labels run and a
        # new version's run that both step the rollout would otherwise read the same state, and the registry would
        # refuse the second move ("changed concurrently"), failing its run; in turn, the second reads the first's move.
        pool=model.job_name("rollout"),
        description=(
            "The active rollout's step on the evidence of this data version: guards of the current phase on the rows "
            "pooled since the phase began, counted in rows, not versions (shadow: agreement and rank correlation "
            "with the champion on every scored row, no labels needed, so it is decided in the run that scores the "
            "version; canary: failure rate, error-rate increase and AUC drop on the labelled rows the challenger "
            "served at this step's share, paired with the champion's scores, and the A/B verdict). Pass: one step "
            "forward (the last one is the atomic blue/green switch, re-verified); fail: automatic rollback; too "
            "little data: no move. When this version's performance_report says production breaches its SLA, the "
            "same guards decide at once on every labelled row since the rollout began: promote, roll back, or hold "
            "with the reason. A rollout that ends starts the candidate queued behind it (or archives it, with the "
            "reason, when production changed)."
        ),
    )
    @measured_step
    def rollout_step(
        context: dg.AssetExecutionContext,
        io_manager: dg.ResourceParam[FrameIOManager],
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec, reg, now, partition = model.spec(), registry, datetime.now(UTC), context.partition_key
        state = reg.active_rollout(spec.name)
        if state is None:
            # A rollout ended outside a step (a promotion or rollback by hand): a queued candidate starts now.
            queued = _start_queued(model, spec, context.instance, reg, artifacts, partition)
            metadata: dict[str, Any] = {"action": "none"}
            if queued is not None:
                metadata["queued_candidate"] = f"v{queued['version']}: {queued['outcome']}"
                context.log.info(f"{spec.name} queued candidate v{queued['version']}: {queued['outcome']}")
            return dg.MaterializeResult(
                value={"action": "none", "reason": "no rollout in progress", "queued_candidate": queued},
                metadata=metadata,
            )
        version = state.challenger_version
        policy, threshold = spec.policy.rollout, spec.policy.evaluation.decision_threshold
        refusals = partial(_switch_refusals, model, context.instance, reg, artifacts, spec.name, version)
        breach = _breach(io_manager, model.key("performance_report"), partition, state)
        if breach is not None:
            # The champion fails its SLA: the same guards decide now, on every labelled row since the rollout began.
            since = state.history[0].at if state.history else now
            joined, used = rollout_evidence(model, context.instance, io_manager, state, since, labels_needed=True)
            guards = (
                performance.rollout_guards(state, joined, policy, decision_threshold=threshold, breach=True)
                if len(joined)
                else None
            )
            ab = _stored_ab_verdict(model, io_manager, partition) if guards is not None else None
            decision = rollout.decide_on_breach(state, guards, ab, now, breach=breach, switch_refusals=refusals)
        else:
            # Shadow: scores alone decide (no labels needed); a canary step: labelled rows the challenger served.
            since = state.phase_started_at or now
            labels_needed = state.phase is not Phase.SHADOW
            joined, used = rollout_evidence(
                model, context.instance, io_manager, state, since, labels_needed=labels_needed
            )
            guards = (
                performance.rollout_guards(state, joined, policy, decision_threshold=threshold) if len(joined) else None
            )
            ab = _stored_ab_verdict(model, io_manager, partition) if guards is not None else None
            decision = rollout.next_rollout_step(state, guards, ab, now, switch_refusals=refusals)
        if decision.after != decision.before:
            try:
                reg.update_rollout(state, decision.after, actor=ACTOR_ROLLOUT, required_gates=MODEL_GATE_NAMES)
            except ApprovalRequired as exc:
                # Every guard passed but the policy wants a person: stay at full canary until <model>__approve_job.
                decision = decision.held_for_approval(str(exc))
            except GateEvidenceMissing as exc:
                raise dg.Failure(description=f"rollout of v{version} refused: {exc}") from exc
            except RegistryConflict as exc:
                raise dg.Failure(description=f"rollout of v{version} changed concurrently: {exc}") from exc
        # The rollout ended: the candidate queued behind it starts (or is archived, with the reason).
        queued = (
            _start_queued(model, spec, context.instance, reg, artifacts, partition)
            if decision.after.is_terminal and decision.after != decision.before
            else None
        )
        record = {**decision.to_record(used), "breach": breach, "queued_candidate": queued}
        metadata = decision.to_metadata(used)
        if breach is not None:
            metadata["breach"] = breach
            metadata["reason"] = decision.reason
        if queued is not None:
            metadata["queued_candidate"] = f"v{queued['version']}: {queued['outcome']}"
        if decision.guards is None:  # no evidence yet: nothing was persisted
            return dg.MaterializeResult(value=record, metadata=metadata)
        context.log.info(decision.log_line(used) + (f" [{breach}]" if breach else ""))
        return dg.MaterializeResult(
            value=record,
            metadata={
                **metadata,
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
