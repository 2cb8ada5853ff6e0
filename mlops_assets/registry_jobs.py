"""Jobs that change the registry by hand, with config: promote, approve, roll back.

Launchable from the UI's launchpad and from the CLI, e.g.::

    dg launch --job rollback_job --config-json '{"ops": {"rollback_model": {"config":
        {"actor": "alice", "reason": "p99 latency regression in serving"}}}}'

Every action is one registry transaction, logged with actor, reason and evidence. A manual promotion to
Production re-reads the gate results of the version's data version from the instance and refuses when
any is failed, missing or stale — a person cannot promote what the gates rejected. Each job then records
the new deployment pointers as materializations of ``staging_deployment`` and ``production_deployment``.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_assets.assets.deployments import REQUIRED_GATES
from mlops_assets.gate_records import latest_gate_results
from mlops_assets.ml.registry import ModelRegistry, RegistryError
from mlops_assets.resources import DatasetSpecResource, ModelRegistryResource

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


@dg.op(description="Move a model version to Staging, Production or Archived (one transaction, logged).")
def promote_model(
    context: dg.OpExecutionContext,
    config: PromoteConfig,
    dataset: DatasetSpecResource,
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
    if config.stage == "Production":
        # The data version the candidate was evaluated on is the last one of its training window.
        data_version = version.data_versions[-1]
        gates = latest_gate_results(context.instance, REQUIRED_GATES, data_version)
        evidence["gates"] = [g.to_dict() for g in gates]
        not_passed = [f"{g.check} is {g.status}" for g in gates if not g.passed]
        if not_passed:
            raise dg.Failure(
                description=(
                    f"refusing to promote {name} v{config.version} to Production: gates of data version "
                    f"{data_version} not passed: {'; '.join(not_passed)}"
                ),
                metadata={"gates": dg.MetadataValue.json(evidence["gates"])},
            )
    try:
        if config.stage == "Production" and version.stage == "None":
            reg.transition(name, config.version, "Staging", actor=config.actor, reason=config.reason, evidence=evidence)
        moved = reg.transition(
            name, config.version, config.stage, actor=config.actor, reason=config.reason, evidence=evidence
        )
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
    registry: ModelRegistryResource,
) -> Iterator[Any]:
    name = dataset.load().name
    reg = registry.registry()
    try:
        restored = reg.rollback(
            name, actor=config.actor, reason=config.reason, evidence={"run_id": context.run.run_id, "by_hand": True}
        )
    except RegistryError as exc:
        raise _fail(exc) from exc
    context.log.info(f"{name}: rolled back to v{restored.version} (by {config.actor}: {config.reason})")
    yield from _pointer_events(reg, name)
    yield dg.Output(None)


@dg.job(description="Promote a model version (Production requires its gates passed, and an approval if required).")
def promote_job() -> None:
    promote_model()


@dg.job(description="Approve a model version for a stage.")
def approve_job() -> None:
    approve_model()


@dg.job(description="One-step rollback of Production to the last known-good version.")
def rollback_job() -> None:
    rollback_model()


registry_jobs = [promote_job, approve_job, rollback_job]
