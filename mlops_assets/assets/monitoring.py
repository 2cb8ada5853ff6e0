"""Stage 6, monitoring: drift, batch scoring, labels, realised performance and the A/B test, per data version.

:func:`build` creates the stage's assets and checks for one :class:`~mlops_assets.model.MLModel`
(keys ``<model>/...``, partitioned by the model's data versions).
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.metadata import readable, table
from mlops_assets.ml import abtest, drift, performance, scoring
from mlops_assets.ml.features import LABEL_COLUMN
from mlops_assets.ml.policy import MonitoringPolicy, RolloutPolicy
from mlops_assets.ml.rollout import RolloutState
from mlops_assets.ml.routing import CHAMPION_ARM
from mlops_assets.ml.summaries import PerformanceSummary
from mlops_assets.ml.versions import safe_stem, stem_of_key
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.resources import FrameIOManager, LandingZone
from mlops_assets.storage.artifacts.skops_codec import load_model
from mlops_assets.storage.artifacts.store import ArtifactRef, ArtifactStore
from mlops_assets.storage.registry import CHALLENGER, CHAMPION, ModelRegistry, ModelVersion
from mlops_assets.stored_evidence import rollout_evidence


def _readable_floats(metadata: dict[str, Any]) -> dict[str, Any]:
    """Top-level float values rounded for people (:func:`~mlops_assets.assets.gating.readable`); still floats, so the
    UI plots them across partitions. Stored values keep full precision."""
    return {k: readable(v) if isinstance(v, float) else v for k, v in metadata.items()}


def _without_empty_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows without the keys that are None in every row (a column of empty cells says nothing)."""
    empty = {k for k in (rows[0] if rows else {}) if all(row.get(k) is None for row in rows)}
    return [{k: v for k, v in row.items() if k not in empty} for row in rows]


def drift_table(report: drift.DriftReport) -> dg.TableMetadataValue:
    """The per-column verdicts of a drift report as a Dagster table: one row per feature column.

    Column name and decision first (``drifted``, ``decided_by``), then the test's numbers, the missing shares and
    PSI (information); each column's schema description says what it is and which way passes
    (:func:`~mlops_assets.ml.drift.column_table_rows`). Columns empty in every row are left out.
    """
    return table(
        _without_empty_columns(drift.column_table_rows(report)),
        columns=drift.COLUMN_TABLE_ORDER,
        descriptions=drift.column_table_descriptions(report.options),
    )


def data_quality_table(report: drift.DriftReport, max_new_category_share: float) -> dg.TableMetadataValue:
    """The data-quality findings as a Dagster table: one row per monitored column, the check's verdict first.
    Columns empty in every row (no value out of range, no dtype change) are left out."""
    return table(
        _without_empty_columns(drift.data_quality_rows(report, max_new_category_share)),
        columns=drift.DATA_QUALITY_TABLE_ORDER,
        descriptions=drift.data_quality_descriptions(report.options, max_new_category_share),
    )


def histogram_key(column: str) -> str:
    """The metadata key of a column's histogram in ``drift_report``."""
    return f"histogram_{column}"


def _drift_reference(artifacts: ArtifactStore, production: ModelVersion | None) -> drift.DriftReference | None:
    """The drift reference stored with the production version, None when nothing is in production or it has none."""
    reference_ref = production.params.get("drift_reference") if production is not None else None
    if not reference_ref:
        return None
    data = artifacts.get_bytes(ArtifactRef.from_dict(reference_ref))  # digest verified before parsing
    return drift.DriftReference.from_json(data.decode())


def _drift_result(comparison: drift.DriftComparison, monitoring: MonitoringPolicy) -> dg.MaterializeResult:
    """The ``drift_report`` materialization: the summary's metadata, the per-column and data-quality tables, then a
    small text histogram (reference vs current) per column worth a look (each under the UI's inline limit)."""
    metadata: dict[str, Any] = _readable_floats(comparison.summary.to_metadata())
    report = comparison.report
    if report is not None:
        findings = drift.data_quality_findings(report, monitoring.max_new_category_share)
        metadata["data_quality_flagged"] = ", ".join(dict.fromkeys(f.column for f in findings)) or "none"
        metadata["columns"] = drift_table(report)
        metadata["data_quality"] = data_quality_table(report, monitoring.max_new_category_share)
        limit = report.options.max_null_share_increase
        for histogram in comparison.histograms:
            column = report.column(histogram.column)
            text = drift.histogram_markdown(histogram, column, drift.decided_by(column, limit))
            metadata[histogram_key(histogram.column)] = dg.MetadataValue.md(text)
    return dg.MaterializeResult(value=comparison.record, metadata=metadata)


class RoutingConfig(dg.Config):
    """Launchpad override of the traffic split. Unset: the active rollout's share (0 in shadow)."""

    challenger_share: float | None = None


def _scored_result(scored: scoring.ScoredVersion) -> dg.MaterializeResult:
    """The ``predictions`` materialization of the core's scored version (``served_by_arm`` as JSON)."""
    metadata = dict(scored.metadata)
    if "served_by_arm" in metadata:
        metadata["served_by_arm"] = dg.MetadataValue.json(metadata["served_by_arm"])
    return dg.MaterializeResult(value=scored.log, metadata=metadata)


def _labels_file(landing: LandingZone, version: str) -> str | None:
    """The newest landed labels file for ``version``: named after the data file (same stem) or the version key."""
    names = {stem_of_key(version), version}
    matches = [f for f in landing.scan() if safe_stem(f.name) in names]
    return max(matches, key=lambda f: (f.mtime_ns, f.name)).name if matches else None


def _holdout_metric(model: MLModel, stored: FrameIOManager, version: ModelVersion, metric: str) -> float | None:
    """The model's headline metric on its own holdout, from the evaluation of the version it was trained on."""
    trained_on = version.data_versions[-1] if version.data_versions else None
    evaluation = model.key("model_evaluation")
    if trained_on is None or not stored.has_value(evaluation, trained_on):
        return None
    record = stored.load_value(evaluation, trained_on)
    if int(record.get("model_version", -1)) != version.version:
        return None
    value = (record.get("candidate") or {}).get(metric)
    return float(value) if value is not None else None


def ab_plan(
    model: MLModel,
    stored: FrameIOManager,
    registry: ModelRegistry,
    spec_name: str,
    state: RolloutState,
    rollout: RolloutPolicy,
) -> abtest.ABPlan:
    """The A/B test's fixed horizon, from what was known before the test: the champion's holdout accuracy."""
    accuracy = None
    if state.champion_version is not None:
        accuracy = _holdout_metric(model, stored, registry.get_version(spec_name, state.champion_version), "accuracy")
    return abtest.plan_for_champion(accuracy, rollout.ab_min_detectable_effect)


def _sla_summary(model_name: str, sla: dict[str, Any]) -> PerformanceSummary:
    """The ``performance_report`` metadata of a measured SLA (:func:`mlops_assets.ml.performance.performance_sla`)."""
    realised, holdout = sla["realised"], sla["holdout"]
    return PerformanceSummary(
        model=model_name,
        production_version=sla["model_version"],
        metric=sla["metric"],
        realised_metric=None if realised is None else float(realised),
        sla_floor=float(sla["floor"]),
        sla_breached=bool(sla["breached"]),
        labelled_rows=int(sla["labelled_rows"]),
        holdout_metric=None if holdout is None else float(holdout),
    )


def sla_reading(sla: dict[str, Any], metric_floor: float, max_drop: float) -> str:
    """The SLA verdict as short markdown lines: the verdict with its direction, then where the floor comes from.

    ``"realised roc_auc 0.6680 ≥ floor 0.6330: within the SLA"``, ``"on 27973 labelled rows; passes when realised ≥
    floor"``, ``"floor = max(metric_floor 0.6, holdout 0.6830 − 0.05)"``, ``"(0.05: policy max_realised_metric_drop)"``.
    Short lines because the UI clips, not wraps, a value wider than its column.
    """
    metric, realised, floor, holdout = sla["metric"], sla["realised"], float(sla["floor"]), sla["holdout"]
    if realised is None:
        first = f"realised {metric} undefined (one class only): no verdict"
    else:
        sign, verdict = ("<", "**BREACHED**") if sla["breached"] else ("≥", "within the SLA")
        first = f"realised {metric} {float(realised):.4f} {sign} floor {floor:.4f}: {verdict}"
    lines = [first, f"on {sla['labelled_rows']} labelled rows; passes when realised ≥ floor"]
    if holdout is None:
        lines.append(f"floor = metric_floor {metric_floor:g} (holdout unknown)")
    else:
        lines += [
            f"floor = max(metric_floor {metric_floor:g}, holdout {float(holdout):.4f} − {max_drop:g})",
            f"({max_drop:g}: policy max_realised_metric_drop)",
        ]
    return "  \n".join(lines)


def _performance_descriptions(metric: str) -> dict[str, str]:
    """The ``by_model`` table's column descriptions (direction included)."""
    return {
        "model_version": "Registry version of the model (empty: the served mix of both arms).",
        "arm": "champion (production), challenger (rollout) or the served mix.",
        "rows": "scored: every row the model scored (shadow included); served: the rows whose decision it served.",
        "n": "Labelled rows the figures rest on.",
        "positives": "Positive labels among them.",
        "roc_auc": "Higher is better"
        + (" (the headline metric held against the SLA floor)." if metric == "roc_auc" else "."),
        "pr_auc": "Higher is better"
        + (" (the headline metric held against the SLA floor)." if metric == "pr_auc" else "."),
        "brier": "Brier score of the scores: lower is better.",
        "error_rate": "Share of wrong decisions at the decision threshold: lower is better.",
        "mean_score": "Mean score (compare with positive_rate: calibration at a glance).",
        "positive_rate": "Share of positive labels.",
    }


def _nothing_to_compare(drift_report: dict[str, Any]) -> dg.AssetCheckResult:
    """A drift-report check's pass when there is no reference to compare with (nothing in production yet)."""
    return dg.AssetCheckResult(
        passed=True,
        description=f"nothing to compare with: {drift_report.get('reason')}",
        metadata={"compared_with": "none"},
    )


def build(model: MLModel) -> dg.Definitions:
    """The monitoring stage of ``model``: drift, predictions, labels, realised performance and the A/B test.

    Every asset and check is partitioned by the model's data versions and reads the model's spec per run.
    """

    @dg.asset(
        **model.asset_defaults("drift_report", stage="monitoring"),
        kinds={"numpy"},
        ins={"features": dg.AssetIn(key=model.key("features"))},
        description=(
            "Drift and data quality of this data version's model inputs against the stored reference profile of the "
            "production model's training data (per-column test chosen by type and reference size; distances and PSI "
            "calibrated against their null distribution at the batch's size, so false alarms stay at 5 % at every "
            "size; a significant rise in missing values beyond the policy's max_null_share_increase; "
            "Benjamini–Hochberg; dataset drift when the drifted share ≥ 0.5)."
        ),
    )
    @measured_step
    def drift_report(
        features: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        production = registry.production_version(spec.name)
        comparison = drift.compare_with_production(
            features,
            _drift_reference(artifacts, production),
            spec.policy.monitoring,
            model_name=spec.name,
            production_version=production.version if production is not None else None,
            reference_data_versions=production.data_versions if production is not None else (),
        )
        return _drift_result(comparison, spec.policy.monitoring)

    @dg.asset_check(
        asset=drift_report,
        blocking=False,
        partitions_def=model.partitions,
        description=(
            "Passes when the data version does not drift as a whole (drifted share of columns < 0.5), no column "
            "failed closed (empty, or all missing where the reference had values) and no column's share of missing "
            "values rose beyond the policy's max_null_share_increase (a data-quality failure). Not blocking: drift is "
            "a signal for retraining, not a reason to stop validating and training on the new data."
        ),
    )
    @measured_step
    def no_drift(drift_report: dict[str, Any]) -> dg.AssetCheckResult:
        report = drift_report.get("report")
        if report is None:
            return _nothing_to_compare(drift_report)
        drifted = [c["column"] for c in report["columns"] if c["drifted"]]
        # Failed closed: drifted with a reason. A column missing on both sides has a reason but is unchanged.
        no_values = [c["column"] for c in report["columns"] if c.get("reason") and c["drifted"]]
        null_rises = [
            f"{s['column']} {s['reference']:.1%} -> {s['current']:.1%}"
            for s in report["data_quality"]["null_shares"]
            if s.get("rose")
        ]
        passed = not report["dataset_drift"] and not no_values and not null_rises
        message = (
            f"{len(drifted)} of {len(report['columns'])} columns drifted (share {report['drifted_share']:.2f}, "
            f"dataset drift at >= 0.5): {', '.join(drifted) or 'none'}"
            + (f"; failed closed: {', '.join(no_values)}" if no_values else "")
            + (f"; missing values rose: {', '.join(null_rises)}" if null_rises else "")
        )
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=message,
            metadata={
                "observed": readable(float(report["drifted_share"])),
                "threshold": 0.5,
                "passes_when": "observed < threshold",
                "drifted_columns": ", ".join(drifted) or "none",
                "null_share_increases": ", ".join(report["data_quality"].get("null_share_increases", [])) or "none",
                "compared_with": f"v{drift_report['compared_with']}",
            },
        )

    @dg.asset_check(
        asset=drift_report,
        blocking=False,
        partitions_def=model.partitions,
        description=(
            "Data quality of the model inputs against the production model's training data, apart from drift: "
            "warns when a column has categories the training data never had in more than the policy's "
            "max_new_category_share of the rows (0: any), a share of missing values that rose beyond "
            "max_null_share_increase (significantly), or values outside the spec's range; the message names the "
            "columns. Not blocking, and independent of no_drift: a new category in a few rows is no drift, but "
            "worth knowing."
        ),
    )
    @measured_step
    def data_quality(drift_report: dict[str, Any]) -> dg.AssetCheckResult:
        record = drift_report.get("report")
        if record is None:
            return _nothing_to_compare(drift_report)
        report = drift.DriftReport.from_dict(record)
        limit = model.spec().policy.monitoring.max_new_category_share
        findings = drift.data_quality_findings(report, limit)
        flagged = list(dict.fromkeys(f.column for f in findings))  # in reference order, as the findings
        new_shares = [u.n_rows / report.n_rows for u in report.data_quality.unseen_categories if report.n_rows]
        if findings:
            message = f"{len(flagged)} of {len(report.data_quality.null_shares)} columns: " + "; ".join(
                f"{f.column}: {f.detail}" for f in findings
            )
        else:
            message = (
                f"no new categories in more than {limit:.2%} of rows, no rise in missing values beyond "
                f"{report.options.max_null_share_increase:.0%} and no value out of range, in "
                f"{len(report.data_quality.null_shares)} columns"
            )
        metadata: dict[str, Any] = {
            "flagged_columns": ", ".join(flagged) or "none",
            "n_flagged": float(len(flagged)),
            "new_category_share_max": readable(float(max(new_shares, default=0.0))),
            "max_new_category_share": float(limit),
            "max_null_share_increase": float(report.options.max_null_share_increase),
            "compared_with": f"v{drift_report['compared_with']}",
        }
        if findings:
            metadata["findings"] = table(
                [{"column": f.column, "finding": f.finding, "detail": f.detail} for f in findings],
                descriptions={"detail": "The numbers behind the finding (shares are of this data version's rows)."},
            )
        return dg.AssetCheckResult(
            passed=not findings, severity=dg.AssetCheckSeverity.WARN, description=message, metadata=metadata
        )

    @dg.asset(
        **model.asset_defaults("predictions", stage="monitoring"),
        kinds={"parquet"},
        ins={"features": dg.AssetIn(key=model.key("features"))},
        description=(
            "The prediction log of this data version: every row scored by the production model (champion) and, while "
            "a rollout is active, by its challenger — routed by a stable hash of the row id with the rollout's "
            "current share (shadow: the challenger scores every row and serves none). One row per (row, model): "
            "prediction id, data version, row id, model version, arm, served, score, feature hash, time."
        ),
    )
    @measured_step
    def predictions(
        context: dg.AssetExecutionContext,
        config: RoutingConfig,
        features: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        reg = registry
        champion = reg.get_alias(spec.name, CHAMPION)
        if champion is None:
            return _scored_result(scoring.unscored())
        challenger = reg.get_alias(spec.name, CHALLENGER)
        rollout = reg.active_rollout(spec.name)
        scored_at = datetime.now(UTC)
        scored = scoring.score_data_version(
            features,
            spec,
            context.partition_key,
            scoring.ScoringModel(champion.version, load_model(artifacts, champion.artifact)),
            scoring.ScoringModel(challenger.version, load_model(artifacts, challenger.artifact))
            if challenger
            else None,
            rollout=rollout,
            share_override=config.challenger_share,
            scored_at=scored_at,
        )
        return _scored_result(scored)

    @dg.asset(
        **model.asset_defaults("labels", stage="monitoring"),
        kinds={"parquet"},
        ins={"features": dg.AssetIn(key=model.key("features"))},
        description=(
            "The labels of this data version, row id → 0/1: from a labels file landed later in the model's labels zone "
            "(named like the data file, or after the version key; it wins when present) or else from the data "
            "file's own label column. A labels file's id and label columns are typed by the data files' own schema "
            "(a bool label written yes/no reads as in a data file). Bad labels files fail with the file, column and "
            "rule; nothing is stored."
        ),
    )
    @measured_step
    def labels(
        context: dg.AssetExecutionContext, features: pd.DataFrame, labels_landing: LandingZone
    ) -> dg.MaterializeResult:
        spec = model.spec()
        zone = model.labels_zone(labels_landing)
        name = _labels_file(zone, context.partition_key)
        if name is not None:
            try:
                with zone.fetch(name) as path:
                    frame = performance.labels_from_file(path, spec, known_ids=features[spec.id_column])
            except performance.LabelsError as exc:
                raise dg.Failure(description=str(exc)) from exc
            source = f"labels file {name}"
        else:
            frame = performance.labels_from_features(features, spec, LABEL_COLUMN)
            source = "the data file's label column"
        known = frame[performance.LABEL].notna()
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "source": source,
                "labelled_rows": int(known.sum()),
                "rows": len(features),
                "coverage": float(known.sum() / len(features)) if len(features) else 0.0,
                "positive_rate": float(frame[performance.LABEL][known].mean()) if known.any() else 0.0,
            },
        )

    @dg.asset(
        **model.asset_defaults("performance_report", stage="monitoring"),
        kinds={"scikitlearn"},
        ins={
            "predictions": dg.AssetIn(key=model.key("predictions")),
            "labels": dg.AssetIn(key=model.key("labels")),
        },
        description=(
            "Realised performance on this data version: the prediction log joined with the labels by row id; "
            "metrics per model version and arm (all scored rows, served rows) and of the served mix. The "
            "production model's realised headline metric is held against its performance SLA."
        ),
    )
    @measured_step
    def performance_report(
        predictions: pd.DataFrame,
        labels: pd.DataFrame,
        io_manager: dg.ResourceParam[FrameIOManager],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        policy = spec.policy
        metric = policy.evaluation.headline_metric
        if predictions.empty:
            why = "nothing was scored (no model in production when the data arrived)"
            return dg.MaterializeResult(
                value={"reason": why, "rows": [], "sla": None},
                metadata=PerformanceSummary(metric=metric, sla_breached=False, reason=why).to_metadata(),
            )
        joined = performance.join_labels(predictions, labels)
        rows = performance.realised_performance(joined, threshold=policy.evaluation.decision_threshold)
        champion_version = int(joined.loc[joined["arm"] == CHAMPION_ARM, "model_version"].iloc[0])
        holdout = _holdout_metric(model, io_manager, registry.get_version(spec.name, champion_version), metric)
        sla = performance.performance_sla(
            rows,
            champion_version,
            holdout,
            policy.monitoring,
            headline_metric=metric,
            metric_floor=policy.gates.metric_floor,
        )
        summary = _sla_summary(spec.name, sla)
        metadata: dict[str, Any] = {
            "sla": dg.MetadataValue.md(
                sla_reading(sla, policy.gates.metric_floor, policy.monitoring.max_realised_metric_drop)
            ),
            **_readable_floats(summary.to_metadata()),
        }
        if sla["realised"] is not None:
            metadata["margin_over_floor"] = readable(float(sla["realised"]) - float(sla["floor"]))
        metadata["by_model"] = table(
            rows, columns=("model_version", "arm", "rows", "n", metric), descriptions=_performance_descriptions(metric)
        )
        return dg.MaterializeResult(value={"rows": rows, "sla": sla}, metadata=metadata)

    @dg.asset_check(
        asset=performance_report,
        blocking=False,
        partitions_def=model.partitions,
        description=(
            "Performance SLA: the production model's realised headline metric on this version's labels is at least "
            "max(metric_floor, its holdout value − max_realised_metric_drop). Not blocking: a breach is a retraining "
            "signal (the model's <model>__performance_sensor), not a reason to stop monitoring."
        ),
    )
    @measured_step
    def performance_within_sla(performance_report: dict[str, Any]) -> dg.AssetCheckResult:
        sla = performance_report.get("sla")
        if sla is None:
            return dg.AssetCheckResult(passed=True, description=str(performance_report.get("reason")))
        if sla["realised"] is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{sla['metric']} undefined on {sla['labelled_rows']} labelled rows (one class only)",
            )
        return dg.AssetCheckResult(
            passed=not sla["breached"],
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"v{sla['model_version']} realised {sla['metric']} {sla['realised']:.4f} "
                f"{'<' if sla['breached'] else '>='} floor {sla['floor']:.4f} on {sla['labelled_rows']} labelled rows "
                f"(holdout {sla['holdout'] if sla['holdout'] is None else round(sla['holdout'], 4)})"
            ),
            metadata={
                "observed": readable(float(sla["realised"])),
                "threshold": readable(float(sla["floor"])),
                "passes_when": "observed >= threshold",
            },
        )

    @dg.asset(
        **model.asset_defaults("ab_test", stage="monitoring"),
        kinds={"scipy"},
        deps=[model.key("performance_report")],
        description=(
            "A/B test of the active rollout (champion vs challenger on the rows each served) over every labelled "
            "version scored since the rollout began: served decision accuracy per arm, a two-proportion z-test "
            "within each data version combined with Mantel-Haenszel weights (the split changes between canary steps), "
            "a fixed horizon sized up front from the champion's holdout accuracy, and the winner once the horizon is "
            "reached (p < 0.05). A champion win stops the rollout."
        ),
    )
    @measured_step
    def ab_test(
        context: dg.AssetExecutionContext,
        io_manager: dg.ResourceParam[FrameIOManager],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        state = registry.active_rollout(spec.name)
        if state is None or not state.history:
            return dg.MaterializeResult(value={"reason": "no rollout in progress"}, metadata={"decision": "none"})
        joined, used = rollout_evidence(model, context.instance, io_manager, state, state.history[0].at)
        # One stratum per data version: the split changes between canary steps and accuracy between versions.
        threshold = spec.policy.evaluation.decision_threshold
        per_version = {
            key: performance.ab_counts(joined[joined["data_version"] == key], threshold=threshold) for key in used
        }
        plan = ab_plan(model, io_manager, registry, spec.name, state, spec.policy.rollout)
        pooled = abtest.ab_test_by_stratum(plan, per_version)
        record = {
            "model_name": spec.name,
            "champion_version": state.champion_version,
            "challenger_version": state.challenger_version,
            "rollout_salt": state.salt,
            "data_versions": used,
            **pooled.to_record(),
        }
        # The test in words first (every number labelled), then the numbers, rounded, as floats to plot.
        metadata = {"reading": dg.MetadataValue.md(pooled.reading()), **_readable_floats(pooled.to_metadata())}
        return dg.MaterializeResult(value=record, metadata=metadata)

    return dg.Definitions(
        assets=[drift_report, predictions, labels, performance_report, ab_test],
        asset_checks=[no_drift, data_quality, performance_within_sla],
    )
