"""Jobs that change the registry by hand, with config: promote, approve, roll back.

Launchable from the UI's launchpad and from the CLI, e.g.::

    dg launch --job flights__rollback_job --config-json '{"ops": {"flights__rollback_model": {"config":
        {"actor": "alice", "reason": "p99 latency regression in serving"}}}}'

Each model of the code location has its own three jobs, built by :func:`build`: ``<model>__promote_job``,
``<model>__approve_job`` and ``<model>__rollback_job`` (ops ``<model>__promote_model`` and so on).

Every action is one registry transaction, logged with actor, reason and evidence. A move to Staging or
Production by hand, and a rollback, first re-read the evidence of that very version: its model gates'
outcomes recorded in the registry for its version and artifact digest, and the data gates of its data
versions; any failed, missing, stale or of another artifact refuses the move (naming the gate and the run;
"evaluation is of vN, not vM" when the latest evaluation of its data version judged another version) — a
person cannot promote what the gates rejected, nor borrow another version's evaluation. The stored
artifact is then read and verified (sha256, and HMAC with a keyed store); a mismatch refuses with both
digests. The registry re-checks the gate outcomes inside the move's transaction. Each job then records
the new deployment pointers as materializations of the model's ``<model>/staging_deployment`` and
``<model>/production_deployment``, and every job (approvals included) the registry's new state as a
materialization of ``<model>/model_registry`` (:mod:`mlops_assets.registry_view`).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_assets.gate_records import ArtifactCheck, promotion_evidence
from mlops_assets.gates import MODEL_GATE_NAMES
from mlops_assets.ml.promotion import Move, MoveDecision, decide_move
from mlops_assets.model import MLModel
from mlops_assets.registry_view import placement, registry_materialization
from mlops_assets.storage.artifacts.store import ArtifactStore
from mlops_assets.storage.registry import ModelRegistry, ModelVersion, RegistryError, Stage

STAGES_BY_HAND = (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED)


class PromoteConfig(dg.Config):
    """Move one model version to a stage."""

    version: int
    stage: str = Stage.PRODUCTION.value
    actor: str
    reason: str


class ApproveConfig(dg.Config):
    """Approve one model version for a stage (required for Production when the model's policy says so)."""

    version: int
    approver: str
    comment: str
    stage: str = Stage.PRODUCTION.value


class RollbackConfig(dg.Config):
    """Roll Production back one step, to the last known-good version."""

    actor: str
    reason: str


class ClearBadConfig(dg.Config):
    """Clear a version's bad mark (a rollback marks the version it left bad), so it may be promoted again."""

    version: int
    actor: str
    reason: str


def _pointer_events(
    model: MLModel, registry: ModelRegistry, run_id: str | None = None
) -> Iterator[dg.AssetMaterialization]:
    """The new state of the model's deployment pointers and registry, as materializations the UI shows on them."""
    name = model.name
    production = registry.production_version(name)
    staged = [v.version for v in registry.list_versions(name) if v.stage == Stage.STAGING]
    why = placement(registry, name, production.version, Stage.PRODUCTION) if production else {}
    yield dg.AssetMaterialization(
        asset_key=model.key("production_deployment"),
        metadata={
            "model": f"{name} v{production.version}" if production else f"{name}: none",
            "aliases": dg.MetadataValue.json(registry.aliases(name)),
            **why,
        },
    )
    yield dg.AssetMaterialization(
        asset_key=model.key("staging_deployment"),
        metadata={"staging_versions": ", ".join(f"v{v}" for v in staged) or "none"},
    )
    yield registry_materialization(model, registry, run_id=run_id)


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc))


def _verify_movable(
    model: MLModel,
    context: dg.OpExecutionContext,
    registry: ModelRegistry,
    artifacts: ArtifactStore,
    version: ModelVersion,
    to: str,
) -> list[dict[str, Any]]:
    """Refuse (dg.Failure) unless this very version's gate evidence all passed and its artifact verifies.

    Returns:
        The gate statuses, for the move's evidence (see :func:`_decide_by_hand`).
    """
    return _decide_by_hand(model, context, registry, artifacts, version, to)[1]


def _decide_by_hand(
    model: MLModel,
    context: dg.OpExecutionContext,
    registry: ModelRegistry,
    artifacts: ArtifactStore,
    version: ModelVersion,
    to: str,
) -> tuple[MoveDecision, list[dict[str, Any]]]:
    """Refuse (dg.Failure) unless this very version's gate evidence all passed and its artifact verifies.

    The decision is :func:`mlops_assets.ml.promotion.decide_move` (the one ``deployment_decision`` takes), with
    the move by hand ``Move(to)``: ``"Staging"``, ``"Production"`` or ``"Production (rollback)"``.

    Returns:
        The decision (its ``stages`` are the moves to make) and the gate statuses, for the move's evidence.
    """
    move, label = Move(to), f"{version.model_name} v{version.version}"
    recorded = promotion_evidence(
        context.instance, registry, version, data_gates=model.data_gates, model_gates=model.model_gates
    )
    # Non-inferiority was judged against the production of that time (a rollback restores a version that served,
    # and is not asked this).
    production = registry.production_version(version.model_name) if move is Move.PRODUCTION else None
    artifact = ArtifactCheck(artifacts, version.artifact, label)
    decision = decide_move(
        move,
        version=version.version,
        stage=version.stage,
        gates=recorded.statuses,
        evaluated_version=recorded.evaluated_version,
        production_now=production.version if production else None,
        compared_with_production=recorded.compared_with_production,
        comparison_known=recorded.comparison_known,
        artifact_refusal=artifact,
    )
    if artifact.refused is not None:
        exc = artifact.refused
        raise dg.Failure(
            description=f"refusing to move {label} to {to}: {exc}",
            metadata={"expected_sha256": str(exc.expected), "actual_sha256": str(exc.actual)},
        ) from exc
    if not decision.allowed:
        raise dg.Failure(
            description=f"refusing to move {label} to {to}: {'; '.join(decision.reasons)}",
            metadata={"gates": dg.MetadataValue.json(recorded.to_list())},
        )
    return decision, recorded.to_list()


def build(model: MLModel) -> dg.Definitions:
    """The model's promote, approve and rollback jobs (``<model>__promote_job`` …), one op each.

    Args:
        model: The model whose registry entries the jobs change (its name is the registry key).

    Returns:
        Definitions holding the three jobs.
    """
    tags = model.asset_tags()

    @dg.op(
        name=model.job_name("promote_model"),
        description=f"Move a {model.name} version to Staging, Production or Archived (one transaction, logged).",
        tags=tags,
    )
    def promote_model(
        context: dg.OpExecutionContext,
        config: PromoteConfig,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> Iterator[Any]:
        name = model.name
        reg = registry
        if config.stage not in STAGES_BY_HAND:
            raise dg.Failure(
                description=f"stage must be one of {[str(s) for s in STAGES_BY_HAND]}, got {config.stage!r}"
            )
        try:
            version = reg.get_version(name, config.version)
        except RegistryError as exc:
            raise _fail(exc) from exc
        evidence: dict[str, Any] = {"run_id": context.run.run_id, "by_hand": True}
        stages: tuple[str, ...] = (config.stage,)  # archiving needs no evidence
        if config.stage in (Move.STAGING, Move.PRODUCTION):
            decision, evidence["gates"] = _decide_by_hand(model, context, reg, artifacts, version, config.stage)
            evidence["artifact_sha256"] = version.artifact_sha256
            stages = decision.stages
        move: dict[str, Any] = {
            "actor": config.actor,
            "reason": config.reason,
            "evidence": evidence,
            "required_gates": MODEL_GATE_NAMES,
        }
        try:
            for stage in stages:
                moved = reg.transition(name, config.version, stage, **move)
        except RegistryError as exc:
            raise _fail(exc) from exc
        context.log.info(f"{name} v{moved.version} is now {moved.stage} (by {config.actor}: {config.reason})")
        yield from _pointer_events(model, reg, context.run.run_id)
        yield dg.Output(None)

    @dg.op(
        name=model.job_name("approve_model"),
        description=(
            f"Record an approval of a {model.name} version (append-only; four-eyes rule when the policy says so)."
        ),
        tags=tags,
    )
    def approve_model(
        context: dg.OpExecutionContext,
        config: ApproveConfig,
        registry: dg.ResourceParam[ModelRegistry],
    ) -> Iterator[Any]:
        name = model.name
        try:
            approval = registry.approve(
                name, config.version, approver=config.approver, stage=config.stage, comment=config.comment
            )
        except RegistryError as exc:
            raise _fail(exc) from exc
        context.log.info(f"{name} v{approval.version} approved for {approval.stage} by {approval.approver}")
        yield registry_materialization(model, registry, run_id=context.run.run_id)
        yield dg.Output(None)

    @dg.op(
        name=model.job_name("rollback_model"),
        description=(
            f"Roll {model.name} Production back one step to the last known-good version (one transaction, logged)."
        ),
        tags=tags,
    )
    def rollback_model(
        context: dg.OpExecutionContext,
        config: RollbackConfig,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> Iterator[Any]:
        name = model.name
        reg = registry
        evidence: dict[str, Any] = {"run_id": context.run.run_id, "by_hand": True}
        target = reg.rollback_target(name)
        if target is not None:
            # The known-good version must still have passing evidence of its own, and an intact artifact.
            evidence["gates"] = _verify_movable(model, context, reg, artifacts, target, "Production (rollback)")
        try:
            restored = reg.rollback(
                name, actor=config.actor, reason=config.reason, evidence=evidence, required_gates=MODEL_GATE_NAMES
            )
        except RegistryError as exc:
            raise _fail(exc) from exc
        context.log.info(f"{name}: rolled back to v{restored.version} (by {config.actor}: {config.reason})")
        yield from _pointer_events(model, reg, context.run.run_id)
        yield dg.Output(None)

    @dg.op(
        name=model.job_name("clear_bad_model"),
        description=(
            f"Clear the bad mark of a {model.name} version (logged with actor and reason; the history is kept): a "
            "version rolled back from may then be promoted again, through the same gate evidence checks."
        ),
        tags=tags,
    )
    def clear_bad_model(
        context: dg.OpExecutionContext, config: ClearBadConfig, registry: dg.ResourceParam[ModelRegistry]
    ) -> Iterator[Any]:
        name = model.name
        try:
            registry.clear_bad(name, config.version, actor=config.actor, reason=config.reason)
        except RegistryError as exc:
            raise _fail(exc) from exc
        context.log.info(f"{name} v{config.version}: bad mark cleared (by {config.actor}: {config.reason})")
        yield registry_materialization(model, registry, run_id=context.run.run_id)
        yield dg.Output(None)

    @dg.job(
        name=model.job_name("promote_job"),
        description=(
            f"Move a {model.name} version to Staging, Production or Archived (Staging and Production require its "
            "own gate evidence passed and its artifact verified; Production an approval if required)."
        ),
        tags=tags,
    )
    def promote_job() -> None:
        promote_model()

    @dg.job(name=model.job_name("approve_job"), description=f"Approve a {model.name} version for a stage.", tags=tags)
    def approve_job() -> None:
        approve_model()

    @dg.job(
        name=model.job_name("rollback_job"),
        description=f"One-step rollback of {model.name} Production to the last known-good version.",
        tags=tags,
    )
    def rollback_job() -> None:
        rollback_model()

    @dg.job(
        name=model.job_name("clear_bad_job"),
        description=f"Clear a {model.name} version's bad mark (after a rollback drill) so it may be promoted again.",
        tags=tags,
    )
    def clear_bad_job() -> None:
        clear_bad_model()

    return dg.Definitions(jobs=[promote_job, approve_job, rollback_job, clear_bad_job])
