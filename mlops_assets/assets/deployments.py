"""Stage 5, deployments: the promotion decision per version and the current stage pointers."""

from typing import Any

import dagster as dg

from mlops_assets.assets.data import raw_data_checks
from mlops_assets.assets.evaluations import evaluations_checks
from mlops_assets.assets.features import features_checks
from mlops_assets.assets.models import models_checks
from mlops_assets.gate_records import latest_gate_results
from mlops_assets.ml.promotion import GateStatus, decide
from mlops_assets.ml.registry import ApprovalRequired, ModelVersion, RegistryConflict
from mlops_assets.partitions import data_versions
from mlops_assets.resources import DatasetSpecResource, ModelRegistryResource

ACTOR = "mlops_assets/deployment_decision"

#: Every gate a version must pass, upstream to downstream. Derived from the check definitions, so a new
#: gate added to a stage is required for promotion without touching this module.
REQUIRED_GATES: list[dg.AssetCheckKey] = [
    key
    for checks in (raw_data_checks, features_checks, models_checks, evaluations_checks)
    for c in checks
    for key in c.check_keys
]


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


@dg.asset(
    partitions_def=data_versions,
    group_name="deployments",
    # Monitoring of the new data runs first, against the production model in effect when it arrived.
    deps=["drift_report", "predictions"],
    description=(
        "What happened to this version's candidate: promoted to Production through Staging, or rejected and "
        "archived, with the evidence. Re-reads every gate's latest result from the instance and fails closed."
    ),
)
def deployment_decision(
    context: dg.AssetExecutionContext,
    candidate_model: dict[str, Any],
    model_evaluation: dict[str, Any],
    dataset: DatasetSpecResource,
    registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    spec = dataset.load()
    reg = registry.registry()
    name, version = spec.name, int(candidate_model["version"])
    recorded = latest_gate_results(context.instance, REQUIRED_GATES, context.partition_key)
    production = reg.production_version(name)
    decision = decide(
        [GateStatus(g.check, g.status) for g in recorded],
        compared_with_production=model_evaluation.get("production_version"),
        production_now=production.version if production else None,
        candidate_version=version,
    )
    evidence = {
        "run_id": context.run.run_id,
        "data_version": context.partition_key,
        "gates": [g.to_dict() for g in recorded],
        "headline_metric": model_evaluation.get("headline_metric"),
        "candidate": model_evaluation.get("candidate"),
        "production": model_evaluation.get("production"),
    }
    current = reg.get_version(name, version)
    outcome = "unchanged"
    try:
        if decision.promote and current.stage in ("None", "Staging"):
            reason = f"{decision.reasons[0]} for data version {context.partition_key}"
            if current.stage == "None":
                reg.transition(name, version, "Staging", actor=ACTOR, reason=reason, evidence=evidence)
            try:
                reg.transition(name, version, "Production", actor=ACTOR, reason=reason, evidence=evidence)
                outcome = "promoted"
            except ApprovalRequired:
                # The model's policy wants a person's approval: stage it and wait for approve_job + promote_job.
                outcome = "staged_awaiting_approval"
        elif not decision.promote and current.stage == "None":
            reason = "rejected: " + "; ".join(decision.reasons)
            reg.transition(name, version, "Archived", actor=ACTOR, reason=reason, evidence=evidence)
            outcome = "rejected"
        elif not decision.promote:
            outcome = "rejected"
    except RegistryConflict as exc:
        raise dg.Failure(description=f"promotion of {name} v{version} lost a concurrent promotion: {exc}") from exc
    after = reg.production_version(name)
    record = {
        "model_name": name,
        "version": version,
        "outcome": outcome,
        "promote": decision.promote,
        "reasons": list(decision.reasons),
        "stage_before": current.stage,
        "production_before": production.version if production else None,
        "production_after": after.version if after else None,
        "evidence": evidence,
    }
    context.log.info(f"{name} v{version}: {outcome} ({'; '.join(decision.reasons)})")
    return dg.MaterializeResult(
        value=record,
        metadata={
            "outcome": outcome,
            "model": f"{name} v{version}",
            "reasons": "\n".join(decision.reasons),
            "production_after": f"v{after.version}" if after else "none",
            "gates": dg.MetadataValue.json(evidence["gates"]),
        },
    )


@dg.asset(
    group_name="deployments",
    deps=[deployment_decision],
    description="The registry's Staging versions of the model, as of the last deployment decision.",
)
def staging_deployment(dataset: DatasetSpecResource, registry: ModelRegistryResource) -> dg.MaterializeResult:
    name = dataset.load().name
    staged = [v for v in registry.registry().list_versions(name) if v.stage == "Staging"]
    return dg.MaterializeResult(
        value={"model_name": name, "staging": [_version_summary(v) for v in staged]},
        metadata={"staging_versions": ", ".join(f"v{v.version}" for v in staged) or "none"},
    )


@dg.asset(
    group_name="deployments",
    deps=[deployment_decision],
    description="The model version in Production (the registry is the single source of truth; this mirrors it).",
)
def production_deployment(dataset: DatasetSpecResource, registry: ModelRegistryResource) -> dg.MaterializeResult:
    name = dataset.load().name
    production = registry.registry().production_version(name)
    metadata: dict[str, Any] = {"model": f"{name} v{production.version}" if production else f"{name}: none"}
    if production is not None:
        metadata["version"] = production.version
        metadata["trained_on"] = ", ".join(production.data_versions)
        metadata["artifact_sha256"] = production.artifact_sha256
    return dg.MaterializeResult(
        value={"model_name": name, "production": _version_summary(production)}, metadata=metadata
    )
