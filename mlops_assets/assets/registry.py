"""The registry stage: ``<model>/model_registry``, the registry's state and audit trail of one model.

:func:`build` creates the asset (unpartitioned, group = the model, ``mlops/stage`` tag ``deployments``, kind
``sqlalchemy``: the registry is SQLAlchemy Core on SQLite or PostgreSQL). What it shows, and how it is refreshed
when a step fails, is :mod:`mlops_assets.registry_view`.
"""

import dagster as dg

from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.registry_view import registry_metadata, version_rows
from mlops_assets.storage.registry import ModelRegistry


def build(model: MLModel) -> dg.Definitions:
    """``<model>/model_registry``: the model's registry state and audit trail (see the module docstring)."""

    @dg.asset(
        **model.asset_defaults("model_registry", stage="deployments", partitioned=False),
        deps=[model.key("deployment_decision"), model.key("rollout_step")],
        kinds={"sqlalchemy"},
        description=(
            "The model registry of this model, for auditors: the audit trail (stage changes, alias moves, rollout "
            "moves, approvals and rejections — an evaluation that failed its gates —, newest first) and one row "
            "per version (stage, aliases, artifact digest, training data, gate evidence for that very artifact, "
            "rejections, rollout). Refreshed by every job that can change the registry, failed runs included."
        ),
    )
    @measured_step
    def model_registry(registry: dg.ResourceParam[ModelRegistry]) -> dg.MaterializeResult:
        name = model.name
        metadata = registry_metadata(registry, name)
        production = registry.production_version(name)
        value = {
            "model_name": name,
            "production": production.version if production else None,
            "versions": version_rows(registry, name),
            "audit_events": metadata["audit_events"],
        }
        return dg.MaterializeResult(value=value, metadata=metadata)

    return dg.Definitions(assets=[model_registry])
