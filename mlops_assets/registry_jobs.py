"""Jobs that change the registry by hand, with config: promote, approve, roll back.

Launchable from the UI's launchpad and from the CLI, e.g.::

    dg launch --job rollback_job --config-json '{"ops": {"rollback_model": {"config":
        {"actor": "alice", "reason": "p99 latency regression in serving"}}}}'

Every action is one registry transaction, logged with actor, reason and evidence. A move to Staging or
Production by hand, and a rollback, first re-read the evidence of that very version: its model gates'
outcomes recorded in the registry for its version and artifact digest, and the data gates of its data
versions; any failed, missing, stale or of another artifact refuses the move (naming the gate and the run;
"evaluation is of vN, not vM" when the latest evaluation of its data version judged another version) — a
person cannot promote what the gates rejected, nor borrow another version's evaluation. The stored
artifact is then read and verified (sha256, and HMAC with a keyed store); a mismatch refuses with both
digests. The registry re-checks the gate outcomes inside the move's transaction. Each job then records
the new deployment pointers as materializations of ``staging_deployment`` and ``production_deployment``.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_assets.gate_records import ArtifactRefused, promotion_evidence, verify_artifact
from mlops_assets.gates import DATA_GATES, MODEL_GATE_NAMES, MODEL_GATES
from mlops_assets.resources import ArtifactStoreResource, DatasetSpecResource, ModelRegistryResource
from mlops_assets.storage.registry import ModelRegistry, ModelVersion, RegistryError

STAGES_BY_HAND = ("Staging", "Production", "Archived")


class PromoteConfig(dg.Config):
    """Move one model version to a stage."""

    version: int
    stage: str = "Production"
    actor: str
    reason: str


class ApproveConfig(dg.Config):
    """Approve one model version for a stage (required for Production when the model's policy says so)."""

    version: int
    approver: str
    comment: str
    stage: str = "Production"


class RollbackConfig(dg.Config):
    """Roll Production back one step, to the last known-good version."""

    actor: str
    reason: str


def _pointer_events(registry: ModelRegistry, name: str) -> Iterator[dg.AssetMaterialization]:
    """The new state of the deployment pointers, as materializations the UI shows on those assets."""
    production = registry.production_version(name)
    staged = [v.version for v in registry.list_versions(name) if v.stage == "Staging"]
    yield dg.AssetMaterialization(
        asset_key="production_deployment",
        metadata={
            "model": f"{name} v{production.version}" if production else f"{name}: none",
            "aliases": dg.MetadataValue.json(registry.aliases(name)),
        },
    )
    yield dg.AssetMaterialization(
        asset_key="staging_deployment",
        metadata={"staging_versions": ", ".join(f"v{v}" for v in staged) or "none"},
    )


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc))


def _verify_movable(
    context: dg.OpExecutionContext,
    registry: ModelRegistry,
    artifacts: ArtifactStoreResource,
    version: ModelVersion,
    to: str,
) -> list[dict[str, Any]]:
    """Refuse (dg.Failure) unless this very version's gate evidence all passed and its artifact verifies.

    Returns:
        The gate statuses, for the move's evidence.
    """
    label = f"{version.model_name} v{version.version}"
    recorded = promotion_evidence(context.instance, registry, version, data_gates=DATA_GATES, model_gates=MODEL_GATES)
    problems = recorded.refusals()
    if to == "Production":
        # Non-inferiority was judged against the production of that time (a rollback restores a version that
        # served, and is not asked this).
        production = registry.production_version(version.model_name)
        stale = recorded.production_refusal(production.version if production else None)
        if stale:
            problems.append(stale)
    if problems:
        raise dg.Failure(
            description=f"refusing to move {label} to {to}: {'; '.join(problems)}",
            metadata={"gates": dg.MetadataValue.json(recorded.to_list())},
        )
    try:
        verify_artifact(artifacts.store(), version.artifact, what=label)
    except ArtifactRefused as exc:
        raise dg.Failure(
            description=f"refusing to move {label} to {to}: {exc}",
            metadata={"expected_sha256": str(exc.expected), "actual_sha256": str(exc.actual)},
        ) from exc
    return recorded.to_list()


@dg.op(description="Move a model version to Staging, Production or Archived (one transaction, logged).")
def promote_model(
    context: dg.OpExecutionContext,
    config: PromoteConfig,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> Iterator[Any]:
    name = dataset.load().name
    reg = registry.registry()
    if config.stage not in STAGES_BY_HAND:
        raise dg.Failure(description=f"stage must be one of {list(STAGES_BY_HAND)}, got {config.stage!r}")
    try:
        version = reg.get_version(name, config.version)
    except RegistryError as exc:
        raise _fail(exc) from exc
    evidence: dict[str, Any] = {"run_id": context.run.run_id, "by_hand": True}
    if config.stage in ("Staging", "Production"):
        evidence["gates"] = _verify_movable(context, reg, artifacts, version, config.stage)
        evidence["artifact_sha256"] = version.artifact_sha256
    move: dict[str, Any] = {
        "actor": config.actor,
        "reason": config.reason,
        "evidence": evidence,
        "required_gates": MODEL_GATE_NAMES,
    }
    try:
        if config.stage == "Production" and version.stage == "None":
            reg.transition(name, config.version, "Staging", **move)
        moved = reg.transition(name, config.version, config.stage, **move)
    except RegistryError as exc:
        raise _fail(exc) from exc
    context.log.info(f"{name} v{moved.version} is now {moved.stage} (by {config.actor}: {config.reason})")
    yield from _pointer_events(reg, name)
    yield dg.Output(None)


@dg.op(description="Record an approval of a model version (append-only; four-eyes rule when the policy says so).")
def approve_model(
    context: dg.OpExecutionContext,
    config: ApproveConfig,
    dataset: DatasetSpecResource,
    registry: ModelRegistryResource,
) -> None:
    name = dataset.load().name
    try:
        approval = registry.registry().approve(
            name, config.version, approver=config.approver, stage=config.stage, comment=config.comment
        )
    except RegistryError as exc:
        raise _fail(exc) from exc
    context.log.info(f"{name} v{approval.version} approved for {approval.stage} by {approval.approver}")


@dg.op(description="Roll Production back one step to the last known-good version (one transaction, logged).")
def rollback_model(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> Iterator[Any]:
    name = dataset.load().name
    reg = registry.registry()
    evidence: dict[str, Any] = {"run_id": context.run.run_id, "by_hand": True}
    target = reg.rollback_target(name)
    if target is not None:
        # The known-good version must still have passing evidence of its own, and an intact artifact.
        evidence["gates"] = _verify_movable(context, reg, artifacts, target, "Production (rollback)")
    try:
        restored = reg.rollback(
            name, actor=config.actor, reason=config.reason, evidence=evidence, required_gates=MODEL_GATE_NAMES
        )
    except RegistryError as exc:
        raise _fail(exc) from exc
    context.log.info(f"{name}: rolled back to v{restored.version} (by {config.actor}: {config.reason})")
    yield from _pointer_events(reg, name)
    yield dg.Output(None)


@dg.job(
    description=(
        "Move a model version to Staging, Production or Archived (Staging and Production require its own gate "
        "evidence passed and its artifact verified; Production an approval if required)."
    )
)
def promote_job() -> None:
    promote_model()


@dg.job(description="Approve a model version for a stage.")
def approve_job() -> None:
    approve_model()


@dg.job(description="One-step rollback of Production to the last known-good version.")
def rollback_job() -> None:
    rollback_model()


registry_jobs = [promote_job, approve_job, rollback_job]
