"""Monitoring: drift and data quality of each new data version against the production model's training data."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.gating import table
from mlops_assets.ml import drift, scoring
from mlops_assets.ml.artifacts import ArtifactRef, load_model
from mlops_assets.ml.registry import CHALLENGER, CHAMPION
from mlops_assets.partitions import data_versions
from mlops_assets.resources import ArtifactStoreResource, DatasetSpecResource, ModelRegistryResource


@dg.asset(
    partitions_def=data_versions,
    group_name="monitoring",
    kinds={"numpy"},
    description=(
        "Drift and data quality of this data version's model inputs against the stored reference profile of the "
        "production model's training data (per-column test chosen by type and reference size, PSI with a "
        "sample-size-aware critical value, Benjamini–Hochberg, dataset drift when the drifted share ≥ 0.5)."
    ),
)
def drift_report(
    features: pd.DataFrame,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    spec = dataset.load()
    production = registry.registry().production_version(spec.name)
    reference_ref = production.params.get("drift_reference") if production is not None else None
    if production is None or not reference_ref:
        why = "no model in production" if production is None else f"{spec.name} v{production.version} has no reference"
        return dg.MaterializeResult(
            value={"compared_with": None, "reason": why, "report": None},
            metadata={"compared_with": "none", "reason": why},
        )
    data = artifacts.store().get_bytes(ArtifactRef.from_dict(reference_ref))  # digest verified before parsing
    reference = drift.DriftReference.from_json(data.decode())
    report = drift.drift_report(reference, features[list(reference.column_names)])
    record: dict[str, Any] = {
        "compared_with": production.version,
        "reference_data_versions": list(production.data_versions),
        "reason": report.reason,
        "report": report.to_dict(),
    }
    rows = [
        {
            k: c.to_dict().get(k)
            for k in (
                "name",
                "kind",
                "test",
                "statistic",
                "p_value",
                "p_value_adjusted",
                "threshold",
                "drifted",
                "psi",
                "psi_band",
                "psi_critical",
                "psi_drifted",
                "reason",
            )
        }
        for c in report.columns
    ]
    return dg.MaterializeResult(
        value=record,
        metadata={
            "compared_with": f"{spec.name} v{production.version}",
            "dataset_drift": report.dataset_drift,
            "drifted_share": float(report.drifted_share),
            "n_drifted": int(report.n_drifted),
            "drifted_columns": ", ".join(c.column for c in report.columns if c.drifted) or "none",
            "columns": table(rows),
            "data_quality": dg.MetadataValue.json(report.data_quality.to_dict()),
        },
    )


@dg.asset_check(
    asset=drift_report,
    blocking=False,
    partitions_def=data_versions,
    description=(
        "Passes when the data version does not drift as a whole (drifted share of columns < 0.5) and no column "
        "failed closed (empty or all-missing). Not blocking: drift is a signal for retraining, not a reason to "
        "stop validating and training on the new data."
    ),
)
def no_drift(drift_report: dict[str, Any]) -> dg.AssetCheckResult:
    report = drift_report.get("report")
    if report is None:
        return dg.AssetCheckResult(
            passed=True,
            description=f"nothing to compare with: {drift_report.get('reason')}",
            metadata={"compared_with": "none"},
        )
    drifted = [c["column"] for c in report["columns"] if c["drifted"]]
    no_values = [c["column"] for c in report["columns"] if c.get("reason")]
    passed = not report["dataset_drift"] and not no_values
    message = (
        f"{len(drifted)} of {len(report['columns'])} columns drifted (share {report['drifted_share']:.2f}, "
        f"dataset drift at >= 0.5): {', '.join(drifted) or 'none'}"
        + (f"; failed closed: {', '.join(no_values)}" if no_values else "")
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=message,
        metadata={
            "observed": float(report["drifted_share"]),
            "threshold": 0.5,
            "drifted_columns": ", ".join(drifted) or "none",
            "compared_with": f"v{drift_report['compared_with']}",
        },
    )


monitoring_checks = [no_drift]


class RoutingConfig(dg.Config):
    """Traffic split for this data version (launchpad). 0 keeps the challenger in shadow (scores, serves none)."""

    challenger_share: float = 0.0


@dg.asset(
    partitions_def=data_versions,
    group_name="monitoring",
    kinds={"parquet"},
    description=(
        "The prediction log of this data version: every row scored by the production model (champion) and, if a "
        "challenger alias is set, by the challenger — routed by a stable hash of the row id (share from the "
        "launchpad; 0 = shadow). One row per (row, model): prediction id, data version, row id, model version, "
        "arm, served, score, feature hash, time. Scored with the models in effect when the data arrived."
    ),
)
def predictions(
    context: dg.AssetExecutionContext,
    config: RoutingConfig,
    features: pd.DataFrame,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    spec = dataset.load()
    reg = registry.registry()
    store = artifacts.store()
    champion = reg.get_alias(spec.name, CHAMPION)
    if champion is None:
        return dg.MaterializeResult(
            value=pd.DataFrame(columns=list(scoring.LOG_COLUMNS)),
            metadata={"scored_rows": 0, "reason": "no model in production: nothing to score with"},
        )
    challenger = reg.get_alias(spec.name, CHALLENGER)
    log = scoring.prediction_log(
        features,
        spec,
        context.partition_key,
        scoring.ScoringModel(champion.version, load_model(store, champion.artifact)),
        scoring.ScoringModel(challenger.version, load_model(store, challenger.artifact)) if challenger else None,
        challenger_share=config.challenger_share,
        salt=f"{spec.name}:v{challenger.version}" if challenger else spec.name,
        scored_at=datetime.now(UTC),
    )
    served = log[log["served"]]
    by_arm = served.groupby("arm")["score"].agg(["size", "mean"])
    return dg.MaterializeResult(
        value=log,
        metadata={
            "champion": f"v{champion.version}",
            "challenger": f"v{challenger.version}" if challenger else "none",
            "challenger_share": config.challenger_share,
            "scored_rows": len(features),
            "dagster/row_count": len(log),
            "served_by_arm": dg.MetadataValue.json({str(a): int(r["size"]) for a, r in by_arm.iterrows()}),
            "mean_served_score": float(served["score"].mean()) if len(served) else 0.0,
        },
    )
