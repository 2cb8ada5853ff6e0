"""Stage 4, evaluations: candidate, baseline and the production model scored on the same holdout rows."""

import math
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.gating import check_result
from mlops_assets.ml import model_gates
from mlops_assets.ml.artifacts import ArtifactRef, load_model
from mlops_assets.ml.evaluation import Evaluation, evaluate
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.policy import Policy
from mlops_assets.partitions import data_versions
from mlops_assets.resources import ArtifactStoreResource, DatasetSpecResource, ModelRegistryResource


def _numeric(prefix: str, metrics: dict[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {}
    return {
        f"{prefix}_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v is not None and math.isfinite(v)
    }


@dg.asset(
    partitions_def=data_versions,
    group_name="evaluations",
    kinds={"scikitlearn"},
    description=(
        "Holdout metrics of the candidate, the baseline and the model in production, all scored on the same "
        "holdout rows of this data version, with per-slice metrics. The gates below decide on it."
    ),
)
def model_evaluation(
    features: pd.DataFrame,
    candidate_model: dict[str, Any],
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    spec = dataset.load()
    store = artifacts.store()
    candidate = load_model(store, ArtifactRef.from_dict(candidate_model["artifact"]))
    baseline = load_model(store, ArtifactRef.from_dict(candidate_model["baseline_artifact"]))
    production = registry.registry().production_version(spec.name)
    production_pipeline = None
    if production is not None:
        production_pipeline = (
            candidate if production.version == candidate_model["version"] else load_model(store, production.artifact)
        )
    result = evaluate(features, spec, candidate, baseline, production_pipeline)
    record = result.to_dict()
    record["model_name"] = spec.name
    record["model_version"] = candidate_model["version"]
    # The promotion checks that production is still this version; if it changed, the comparison is void.
    record["production_version"] = production.version if production is not None else None
    metadata: dict[str, Any] = {
        "model": f"{spec.name} v{candidate_model['version']}",
        "production_model": f"{spec.name} v{production.version}" if production is not None else "none",
        "headline_metric": result.headline_metric,
        "holdout_rows": result.n_holdout,
        **_numeric("candidate", record.get("candidate")),
        **_numeric("baseline", record.get("baseline")),
        **_numeric("production", record.get("production")),
    }
    if result.slices:
        metadata["slices"] = dg.MetadataValue.json(list(result.slices))
    return dg.MaterializeResult(value=record, metadata=metadata)


def _evaluation_check(name: str, condition: str, gate: Callable[[Evaluation, Policy], GateResult]):
    @dg.asset_check(
        asset=model_evaluation,
        name=name,
        blocking=True,
        partitions_def=data_versions,
        description=f"Passes when {condition}.",
    )
    def _check(model_evaluation: dict[str, Any], dataset: DatasetSpecResource) -> dg.AssetCheckResult:
        return check_result(gate(Evaluation.from_dict(model_evaluation), dataset.load().policy))

    return _check


evaluations_checks = [
    _evaluation_check(
        "metric_above_floor",
        "the candidate's headline metric on the holdout is at least policy.metric_floor",
        model_gates.gate_metric_above_floor,
    ),
    _evaluation_check(
        "beats_baseline",
        "the candidate's headline metric exceeds the baseline's by more than policy.min_lift_over_baseline",
        model_gates.gate_beats_baseline,
    ),
    _evaluation_check(
        "non_inferior_to_production",
        "the candidate's headline metric is at least production's minus policy.non_inferiority_margin "
        "(skipped, and recorded, when nothing is in production)",
        model_gates.gate_non_inferior_to_production,
    ),
]
