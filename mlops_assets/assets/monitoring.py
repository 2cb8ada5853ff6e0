"""Stage 6, monitoring: drift, batch scoring, labels, realised performance and the A/B test, per data version.

:func:`build` creates the stage's assets and checks for one :class:`~mlops_assets.model.MLModel`
(keys ``<model>/...``, partitioned by the model's data versions).
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.metadata import readable, table
from mlops_assets.ml import abtest, drift, estimation, performance, scoring, served
from mlops_assets.ml import labels as labels_core
from mlops_assets.ml.features import LABEL_COLUMN
from mlops_assets.ml.policy import MonitoringPolicy, RolloutPolicy
from mlops_assets.ml.rollout import RolloutState
from mlops_assets.ml.routing import CHAMPION_ARM
from mlops_assets.ml.summaries import EstimateSummary, PerformanceSummary
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.resources import FrameIOManager, LandingZone
from mlops_assets.serving.segments import read_segment
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


class SegmentMissingError(Exception):
    """A served data version's segment is not in the serving log."""


def _served_segment(model: MLModel, serving_log: LandingZone, segment_id: str) -> tuple[pd.DataFrame, dict, str]:
    """The rows, metadata and URI of closed segment ``segment_id`` of ``model`` in the serving log.

    Raises:
        SegmentMissingError: no such segment (removed, or the serving log is another environment's); the message
            names where it was looked for.
    """
    zone = serving_log.at(model.name)
    name = f"{segment_id}.parquet"
    try:
        with zone.fetch(name) as path:
            rows, metadata = read_segment(path)
    except Exception as exc:  # local: FileNotFoundError; S3: the client's NoSuchKey. Missing only if not listed.
        if any(f.name == name for f in zone.scan()):
            raise
        raise SegmentMissingError(
            f"segment {segment_id} is not in the serving log ({zone.uri(name)}); what was served cannot be "
            "reconstructed without it (a re-scoring would not be what was served): restore the segment, or delete "
            f"this data version ({type(exc).__name__})"
        ) from exc
    return rows, dict(metadata), zone.uri(name)


def _served_result(
    model: MLModel, key: str, features: pd.DataFrame, segment: pd.DataFrame, metadata: dict, uri: str
) -> dg.MaterializeResult:
    """The ``predictions`` of a data version landed from a served segment: the served log, as served.

    Raises:
        dg.Failure: the segment's served rows are not this version's rows (the segment changed after landing).
    """
    spec = model.spec()
    log = served.served_log(segment, key)
    ids = features[spec.id_column].astype(str)
    logged_ids = log.loc[log["served"], "row_id"]
    if len(logged_ids) != len(ids) or set(logged_ids) != set(ids):
        raise dg.Failure(
            description=(
                f"{model.key('predictions').to_user_string()} [{key}]: the served rows of {uri} "
                f"({len(logged_ids)}) are not the rows of this data version ({len(ids)}): the segment changed after "
                "it was landed (rule: served_log_matches_version)"
            ),
            metadata={"segment": uri, "rule": "served_log_matches_version"},
        )
    meta = served.served_metadata(segment, metadata)
    meta["dagster/row_count"] = len(log)
    meta["served_by_arm"] = dg.MetadataValue.json(meta["served_by_arm"])
    return dg.MaterializeResult(value=log, metadata={**meta, "source": served.SERVED_SOURCE, "segment": uri})


def _labels_file(landing: LandingZone, version: str, version_keys: list[str]) -> list[str]:
    """The landed labels files of ``version`` in landing order (mtime, then name): named after the data file's stem
    or the version key, optionally with a ``.<part>`` suffix (:func:`mlops_assets.ml.labels.labels_target`)."""
    return labels_core.labels_files(landing.scan(), version_keys, version)


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
    """The ``fixed_horizon`` A/B test's horizon, from what was known before the test: the champion's holdout
    accuracy, ``rollout.ab_min_detectable_effect`` and ``rollout.ab_alpha`` (power 0.8). The ``msprt`` method has
    no horizon."""
    accuracy = None
    if state.champion_version is not None:
        accuracy = _holdout_metric(model, stored, registry.get_version(spec_name, state.champion_version), "accuracy")
    return abtest.plan_for_champion(accuracy, rollout.ab_min_detectable_effect, alpha=rollout.ab_alpha)


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


def _calibration_map(artifacts: ArtifactStore, version: ModelVersion) -> estimation.CalibrationMap | None:
    """The calibration map stored with ``version`` (digest verified before parsing); None when it has none."""
    ref = version.params.get("calibration_map")
    if not ref:
        return None
    return estimation.CalibrationMap.from_json(artifacts.get_bytes(ArtifactRef.from_dict(ref)).decode())


#: ``performance_estimate`` metadata: the metrics given as ``estimated_<m>`` (+ ``_lower`` / ``_upper``).
ESTIMATE_METADATA_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1")


def _estimate_unavailable(model_name: str, metric: str, why: str, version: int | None = None) -> dg.MaterializeResult:
    """A ``performance_estimate`` that could not be made: the reason, no figures (never an uncalibrated guess)."""
    summary = EstimateSummary(
        model=model_name if version is not None else None, model_version=version, metric=metric, reason=why
    )
    return dg.MaterializeResult(
        value={"reason": why, "model_name": model_name, "model_version": version, "metric": metric, "sla": None},
        metadata={"estimate": dg.MetadataValue.md(f"no estimate: {why}"), **summary.to_metadata()},
    )


def estimate_reading(record: dict[str, Any]) -> str:
    """The estimate in words, short markdown lines (the UI clips wide values): the headline against its floor, the
    band, what it rests on and the assumption it needs."""
    sla, metric = record["sla"], record["metric"]
    headline = record["estimate"]["metrics"][metric]
    level = record["estimate"]["confidence_level"]
    if sla["estimated"] is None:
        first = f"estimated {metric} undefined: no verdict"
    else:
        sign, verdict = ("<", "**BELOW THE SLA FLOOR**") if sla["breached"] else ("≥", "within the SLA")
        first = f"estimated {metric} {sla['estimated']:.4f} {sign} floor {sla['floor']:.4f}: {verdict}"
    lines = [first]
    if headline["lower"] is not None and headline["upper"] is not None:
        lines.append(f"{level:.0%} band [{headline['lower']:.4f}, {headline['upper']:.4f}] (label draws)")
    lines += [
        f"v{record['model_version']} on {record['estimate']['rows']} unlabelled rows (CBPE)",
        f"calibration: {record['calibration']}",
        "holds while P(label | features) is unchanged (no concept drift)",
    ]
    return "  \n".join(lines)


def _estimate_descriptions(metric: str) -> dict[str, str]:
    return {
        "metric": "Estimated from the calibrated scores (CBPE); "
        + f"{metric} is the headline metric held against the SLA floor.",
        "estimated": "CBPE point estimate (expected confusion matrix / expected curve). Higher is better.",
        "lower": "Lower end of the band: where the realised value should fall if the calibration holds.",
        "upper": "Upper end of the band.",
    }


def estimate_comparison(
    stored: FrameIOManager,
    estimate_key: dg.AssetKey,
    partition: str,
    joined: pd.DataFrame,
    champion_version: int,
    *,
    threshold: float,
    metric: str,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Realised vs estimated for ``performance_report``: ``(record, metadata)``; ``(None, {})`` without an estimate.

    The stored ``performance_estimate`` of ``partition`` is read when there is one (no dependency: versions scored
    before estimates existed have none) and counts only when it estimated ``champion_version``. The realised metrics
    are those of the champion's labelled rows (:func:`~mlops_assets.ml.estimation.realised_metrics`). Metadata:
    ``estimated_<metric>``, ``estimate_error`` (realised − estimated, headline), ``realised_in_band`` and a table
    per metric.
    """
    if not stored.has_value(estimate_key, partition):
        return None, {}
    estimate = stored.load_value(estimate_key, partition)
    if not isinstance(estimate, dict) or estimate.get("sla") is None:
        return None, {"estimate": f"none to compare: {estimate.get('reason') if isinstance(estimate, dict) else '?'}"}
    if int(estimate.get("model_version", -1)) != champion_version:
        return None, {"estimate": f"the estimate is of v{estimate.get('model_version')}, not v{champion_version}"}
    champion = joined[joined["arm"] == CHAMPION_ARM]
    realised = estimation.realised_metrics(
        champion[performance.LABEL].to_numpy(dtype=float, na_value=float("nan")),
        champion["score"].to_numpy(dtype=float),
        threshold,
    )
    rows = estimation.compare_with_realised(estimate["estimate"]["metrics"], realised)
    record = {"model_version": champion_version, "metric": metric, "by_metric": rows}
    metadata: dict[str, Any] = {}
    headline = next((r for r in rows if r["metric"] == metric), None)
    if headline is not None and headline["estimated"] is not None:
        metadata[f"estimated_{metric}"] = readable(float(headline["estimated"]))
        if headline["error"] is not None:
            metadata["estimate_error"] = readable(float(headline["error"]))
        if headline["in_band"] is not None:
            metadata["realised_in_band"] = bool(headline["in_band"])
        record.update(error=headline["error"], in_band=headline["in_band"])
    metadata["estimate_vs_realised"] = table(
        rows,
        columns=("metric", "estimated", "realised", "error", "in_band", "lower", "upper"),
        descriptions={
            "estimated": "CBPE estimate made before the labels (performance_estimate).",
            "realised": "The same metric on the labels that landed.",
            "error": "realised − estimated (0 is a perfect estimate).",
            "in_band": "Whether realised fell in the estimate's band (expected in ~confidence_level of versions).",
        },
    )
    return record, metadata


def sla_reading(sla: dict[str, Any], metric_floor: float, max_drop: float) -> str:
    """The SLA verdict as short markdown lines: the verdict with its direction, then where the floor comes from.

    ``"realised roc_auc 0.6680 ≥ floor 0.6330: within the SLA"``, ``"on 27973 labelled rows; passes when realised ≥
    floor"``, ``"floor = max(metric_floor 0.6, holdout 0.6830 − 0.05)"``, ``"(0.05: policy max_realised_metric_drop)"``.
    Short lines because the UI clips, not wraps, a value wider than its column.
    """
    metric, realised, floor, holdout = sla["metric"], sla["realised"], float(sla["floor"]), sla["holdout"]
    if realised is None and not sla["labelled_rows"]:
        first = f"no labels yet: realised {metric} waits for the labels stream"
    elif realised is None:
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
            "prediction id, data version, row id, model version, arm, served, score, feature hash, time. A data "
            "version landed from mlops-serve's traffic (<model>__served_traffic_sensor) is not re-scored: its log is "
            "the served log of its segment (source: served traffic), as served."
        ),
    )
    @measured_step
    def predictions(
        context: dg.AssetExecutionContext,
        config: RoutingConfig,
        features: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
        serving_log: LandingZone,
    ) -> dg.MaterializeResult:
        key = context.partition_key
        segment_id = served.segment_id_of_version(key)
        if segment_id is not None:
            try:
                segment, metadata, uri = _served_segment(model, serving_log, segment_id)
            except SegmentMissingError as exc:
                raise dg.Failure(
                    description=f"{model.key('predictions').to_user_string()} [{key}]: {exc}",
                    metadata={"rule": "served_segment_present"},
                ) from exc
            return _served_result(model, key, features, segment, metadata, uri)
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

    @dg.asset_check(
        asset=predictions,
        name="training_serving_skew",
        blocking=False,
        partitions_def=model.partitions,
        description=(
            "Training–serving skew of a data version landed from mlops-serve's traffic: on a seeded sample of "
            "policy.monitoring.skew_sample_rows rows (whole requests), the model inputs the server logged "
            "(feature.<column>) equal the batch path's — this version's features asset, the same rows by id, "
            "features.model_inputs — column by column, exactly (NaN equals NaN), and every logged score equals the "
            "score its logged model version (loaded from the registry's verified artifact) gives the batch path's "
            "inputs (one call per model; where that differs, request by request in the shape it was served). Fails "
            "naming each differing column (rows, an example row id, both values) and the largest score difference. "
            "An error, not blocking: the served traffic is what it was; a skew means the server and the batch path "
            "build inputs differently. A batch version passes, recorded as not applying."
        ),
    )
    @measured_step
    def training_serving_skew(
        context: dg.AssetCheckExecutionContext,
        io_manager: dg.ResourceParam[FrameIOManager],
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
        serving_log: LandingZone,
    ) -> dg.AssetCheckResult:
        key = context.partition_key
        segment_id = served.segment_id_of_version(key)
        if segment_id is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.ERROR,
                description="does not apply: a batch data version, scored by the batch path itself (no served traffic)",
                metadata={"applies": False},
            )
        spec = model.spec()
        try:
            segment, _, uri = _served_segment(model, serving_log, segment_id)
        except SegmentMissingError as exc:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{exc} (rule: served_segment_present)",
                metadata={"applies": True, "rule": "served_segment_present"},
            )
        monitoring = spec.policy.monitoring
        sample = served.sample_requests(segment, monitoring.skew_sample_rows, spec.policy.evaluation.random_seed)
        # Loaded here, not declared as an input: a batch version (most of them) never reads its features for this.
        features = io_manager.load_value(model.key("features"), key)
        versions = sorted({int(v) for v in sample["model_version"]})
        pipelines = {v: load_model(artifacts, registry.get_version(spec.name, v).artifact) for v in versions}
        result = served.skew(sample, features, spec, pipelines)
        metadata: dict[str, Any] = {
            "applies": True,
            "segment": uri,
            "sampled_rows": result.rows,
            "sampled_requests": result.requests,
            "skew_sample_rows": monitoring.skew_sample_rows,
            "model_versions": ", ".join(f"v{v}" for v in versions),
            "columns_compared": len(result.columns),
            "differing_columns": ", ".join(c.column for c in result.differing) or "none",
            "observed": float(len(result.differing)),
            "threshold": 0.0,
            "passes_when": "no model input differs (observed = differing columns) and max_abs_score_diff == 0",
            "max_abs_score_diff": result.max_abs_score_diff,
            "scores_compared": result.scores_compared,
            "missing_rows": result.missing_rows,
        }
        if result.differing:
            metadata["columns"] = table(
                [{**c.to_dict(), "served": str(c.served), "batch": str(c.batch)} for c in result.differing],
                columns=("column", "differing_rows", "example_row_id", "served", "batch"),
                descriptions={
                    "differing_rows": "Sampled rows whose served and batch values differ (0 passes).",
                    "served": "The example row's value as mlops-serve handed it to the model (feature.<column>).",
                    "batch": "The same row's value from the batch path (features asset → model_inputs).",
                },
            )
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.reading(),
            metadata=metadata,
        )

    @dg.asset(
        **model.asset_defaults("labels", stage="monitoring"),
        kinds={"parquet"},
        ins={"features": dg.AssetIn(key=model.key("features"))},
        description=(
            "The labels stream of this data version, row id → 0/1 (missing until a label arrives): the data file's own "
            "label column (if any) merged with every labels file landed for the version in the model's labels zone "
            "(named like the data file or after the version key, optionally with a .<part> suffix: several partial "
            "files), in landing order — a later file wins for an id, and changed labels are recorded. Ids and labels "
            "are typed by the data files' own schema. The version is labelled when its labelled share reaches "
            "policy.data.min_labelled_share; training, evaluation and the retrain sensors use only labelled versions. "
            "A bad labels file fails with the file, column and rule; nothing is stored."
        ),
    )
    @measured_step
    def labels(
        context: dg.AssetExecutionContext, features: pd.DataFrame, labels_landing: LandingZone
    ) -> dg.MaterializeResult:
        spec = model.spec()
        zone = model.labels_zone(labels_landing)
        keys = context.instance.get_dynamic_partitions(model.partitions_name)
        names = _labels_file(zone, context.partition_key, keys)
        files = []
        for name in names:
            try:
                with zone.fetch(name) as path:
                    files.append((name, labels_core.read_labels_file(path, spec, zone.uri(name))))
            except labels_core.LabelsError as exc:
                raise dg.Failure(
                    description=str(exc), metadata={"file": zone.uri(name), "rule": "labels_file_valid"}
                ) from exc
        frame, record = labels_core.merge_labels(
            features[spec.id_column],
            features[LABEL_COLUMN],
            files,
            min_labelled_share=spec.policy.data.min_labelled_share,
        )
        if record.unknown_ids:
            context.log.warning(
                f"{record.unknown_ids} label(s) for ids that are not rows of {context.partition_key} ignored, e.g. "
                + ", ".join(record.unknown_examples)
            )
        known = frame[labels_core.LABEL].notna()
        metadata: dict[str, Any] = {
            "labelled": record.labelled,
            "labelled_rows": record.labelled_rows,
            "rows": record.rows,
            "labelled_share": readable(record.labelled_share),
            "min_labelled_share": record.min_labelled_share,
            "sources": ", ".join(record.sources) or "none",
            "changed_labels": record.changed_labels,
            "unknown_ids": record.unknown_ids,
            "reading": record.reading(),
            "coverage": readable(record.labelled_share),
            "positive_rate": float(frame[labels_core.LABEL][known].mean()) if known.any() else 0.0,
        }
        if record.files:
            metadata["files"] = table(
                [{**f, "changed_sources": ", ".join(f["changed_sources"]) or "none"} for f in record.files],
                descriptions={
                    "applied": "Rows of this version the file labelled.",
                    "relabelled": "Ids an earlier source had labelled.",
                    "changed": "Of those, ids whose label this file changed.",
                },
            )
        return dg.MaterializeResult(value=frame, metadata=metadata)

    @dg.asset(
        **model.asset_defaults("performance_estimate", stage="monitoring"),
        kinds={"numpy"},
        ins={"predictions": dg.AssetIn(key=model.key("predictions"))},
        description=(
            "Performance of the production model on this data version before any label exists: confidence-based "
            "performance estimation (CBPE, NannyML) from its scores in the prediction log, made probabilities by the "
            "calibration map fitted on its holdout and stored with it. ROC AUC, PR AUC, accuracy, precision, recall "
            "and F1 at the decision threshold, each with a band from label draws y ~ Bernoulli(p) (where the realised "
            "value should fall), the headline estimate held against the performance SLA floor. Valid while "
            "P(label | features) is unchanged (no concept drift); performance_report checks it once labels land. A "
            "model registered without a calibration map gets no estimate, and says so."
        ),
    )
    @measured_step
    def performance_estimate(
        context: dg.AssetExecutionContext,
        predictions: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
        io_manager: dg.ResourceParam[FrameIOManager],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        policy = spec.policy
        metric = policy.evaluation.headline_metric
        champion = predictions[predictions["arm"] == CHAMPION_ARM] if not predictions.empty else predictions
        if champion.empty:
            return _estimate_unavailable(spec.name, metric, "nothing was scored (no model in production)")
        version_number = int(champion["model_version"].iloc[0])
        version = registry.get_version(spec.name, version_number)
        calibration = _calibration_map(artifacts, version)
        if calibration is None:
            why = (
                f"{spec.name} v{version_number} has no calibration map (registered before maps were stored, or its "
                "holdout had one class): no estimate from uncalibrated scores; a retrain stores one"
            )
            return _estimate_unavailable(spec.name, metric, why, version_number)
        scores = champion["score"].to_numpy(dtype=float)
        try:
            estimate = estimation.estimate_performance(
                scores,
                calibration.apply(scores),
                threshold=policy.evaluation.decision_threshold,
                confidence_level=policy.evaluation.confidence_level,
                samples=policy.monitoring.performance_estimate_samples,
                seed=policy.evaluation.random_seed,
            )
        except estimation.EstimationError as exc:
            raise dg.Failure(
                description=(
                    f"{model.key('predictions').to_user_string()} [{context.partition_key}], column score of "
                    f"v{version_number}: {exc}"
                )
            ) from exc
        headline = estimate.metric(metric)
        holdout = _holdout_metric(model, io_manager, version, metric)
        sla = performance.performance_sla(
            [{"model_version": version_number, "rows": "scored", metric: headline.estimate, "n": estimate.rows}],
            version_number,
            holdout,
            policy.monitoring,
            headline_metric=metric,
            metric_floor=policy.gates.metric_floor,
        )
        record = {
            "model_name": spec.name,
            "model_version": version_number,
            "data_version": context.partition_key,
            "metric": metric,
            "calibration": calibration.describe(),
            "estimate": estimate.to_record(),
            "sla": {
                "metric": metric,
                "estimated": headline.estimate,
                "lower": headline.lower,
                "upper": headline.upper,
                "holdout": holdout,
                "floor": sla["floor"],
                "breached": sla["breached"],
                "rule": sla["rule"].replace("realised", "estimated"),
            },
        }
        summary = EstimateSummary(
            model=spec.name,
            model_version=version_number,
            metric=metric,
            estimated_metric=headline.estimate,
            lower=headline.lower,
            upper=headline.upper,
            sla_floor=float(sla["floor"]),
            # Undefined estimate (every probability 0, or every one 1): no verdict, the sensor reads nothing.
            estimated_below_floor=None if headline.estimate is None else bool(sla["breached"]),
            rows=estimate.rows,
        )
        metadata: dict[str, Any] = {"estimate": dg.MetadataValue.md(estimate_reading(record))}
        metadata.update(_readable_floats(summary.to_metadata()))
        for name in ESTIMATE_METADATA_METRICS:
            m = estimate.metric(name)
            for key, value in ((f"estimated_{name}", m.estimate), (f"estimated_{name}_lower", m.lower)):
                if value is not None:
                    metadata[key] = readable(float(value))
            if m.upper is not None:
                metadata[f"estimated_{name}_upper"] = readable(float(m.upper))
        metadata["expected_positive_rate"] = readable(estimate.expected_positive_rate)
        metadata["predicted_positive_rate"] = readable(estimate.predicted_positive_rate)
        metadata["calibration"] = calibration.describe()
        metadata["estimates"] = table(
            [
                {"metric": m.metric, "estimated": m.estimate, "lower": m.lower, "upper": m.upper}
                for m in estimate.metrics
            ],
            columns=("metric", "estimated", "lower", "upper"),
            descriptions=_estimate_descriptions(metric),
        )
        return dg.MaterializeResult(value=record, metadata=metadata)

    @dg.asset_check(
        asset=performance_estimate,
        blocking=False,
        partitions_def=model.partitions,
        description=(
            "Estimated performance SLA: the production model's CBPE estimate of its headline metric on this version "
            "(before labels) is at least the SLA floor, max(metric_floor, holdout − max_realised_metric_drop). A "
            "warning, not blocking: an estimated breach is a retraining signal (<model>__estimated_performance_sensor) "
            "that the labels confirm or refute later."
        ),
    )
    @measured_step
    def estimated_performance_within_sla(performance_estimate: dict[str, Any]) -> dg.AssetCheckResult:
        sla = performance_estimate.get("sla")
        if sla is None:
            return dg.AssetCheckResult(
                passed=True,
                description=f"no estimate: {performance_estimate.get('reason')}",
                metadata={"estimated": False},
            )
        if sla["estimated"] is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"estimated {sla['metric']} undefined (every calibrated probability 0, or every one 1)",
                metadata={"estimated": False},
            )
        band = (
            f" (band [{sla['lower']:.4f}, {sla['upper']:.4f}])"
            if sla["lower"] is not None and sla["upper"] is not None
            else ""
        )
        return dg.AssetCheckResult(
            passed=not sla["breached"],
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"v{performance_estimate['model_version']} estimated {sla['metric']} {sla['estimated']:.4f}{band} "
                f"{'<' if sla['breached'] else '>='} floor {sla['floor']:.4f} on "
                f"{performance_estimate['estimate']['rows']} unlabelled rows (CBPE; holdout "
                f"{sla['holdout'] if sla['holdout'] is None else round(sla['holdout'], 4)})"
            ),
            metadata={
                "observed": readable(float(sla["estimated"])),
                "threshold": readable(float(sla["floor"])),
                "passes_when": "observed >= threshold",
                "estimated": True,
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
        context: dg.AssetExecutionContext,
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
        # Realised vs the estimate made before these labels landed (performance_estimate), when there is one.
        compared, estimate_metadata = estimate_comparison(
            io_manager,
            model.key("performance_estimate"),
            context.partition_key,
            joined,
            champion_version,
            threshold=policy.evaluation.decision_threshold,
            metric=metric,
        )
        metadata.update(estimate_metadata)
        value: dict[str, Any] = {"rows": rows, "sla": sla}
        if compared is not None:
            value["estimate"] = compared
        return dg.MaterializeResult(value=value, metadata=metadata)

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
                description=(
                    f"no labels yet: realised {sla['metric']} waits for the labels stream"
                    if not sla["labelled_rows"]
                    else f"{sla['metric']} undefined on {sla['labelled_rows']} labelled rows (one class only)"
                ),
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
            "A/B test of the active rollout over every labelled version scored since the rollout began, by the "
            "policy's ab_method. msprt (default): an always-valid mixture sequential probability ratio test of "
            "challenger − champion on the per-row ab_metric (log loss by default; Brier or decision accuracy), paired "
            "on every labelled row both models scored, stratified by data version; its p-value may be read after "
            "every version at level ab_alpha. fixed_horizon: served decision accuracy per arm, a two-proportion "
            "z-test within each data version (Mantel-Haenszel), decided only at a horizon sized up front from the "
            "champion's holdout accuracy. A significant champion win fails the canary."
        ),
    )
    @measured_step
    def ab_test(
        context: dg.AssetExecutionContext,
        io_manager: dg.ResourceParam[FrameIOManager],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        rollout_policy = spec.policy.rollout
        state = registry.active_rollout(spec.name)
        if state is None or not state.history:
            return dg.MaterializeResult(
                value={"reason": "no rollout in progress", "method": rollout_policy.ab_method},
                metadata={"decision": "none", "method": rollout_policy.ab_method},
            )
        joined, used = rollout_evidence(model, context.instance, io_manager, state, state.history[0].at)
        threshold = spec.policy.evaluation.decision_threshold
        identity = {
            "model_name": spec.name,
            "champion_version": state.champion_version,
            "challenger_version": state.challenger_version,
            "rollout_salt": state.salt,
            "data_versions": used,
        }
        if rollout_policy.ab_method == "msprt":
            # Read in arrival order (rollout_evidence walks newest first): the p-value is a running minimum.
            paired = (
                performance.paired_metric_values(
                    joined,
                    state.champion_version,
                    state.challenger_version,
                    list(reversed(used)),
                    metric=rollout_policy.ab_metric,
                    threshold=threshold,
                )
                if state.champion_version is not None
                else {}
            )
            sequential = abtest.msprt_test(
                paired,
                metric=rollout_policy.ab_metric,
                alpha=rollout_policy.ab_alpha,
                mixture_sd=rollout_policy.ab_mixture_sd,
            )
            metadata = {
                "reading": dg.MetadataValue.md(sequential.reading()),
                **_readable_floats(sequential.to_metadata()),
                "strata": table(sequential.strata_rows(), descriptions=abtest.STRATUM_COLUMNS),
            }
            return dg.MaterializeResult(value={**identity, **sequential.to_record()}, metadata=metadata)
        # fixed_horizon: one stratum per data version: the split changes between canary steps and accuracy between
        # versions.
        per_version = {
            key: performance.ab_counts(joined[joined["data_version"] == key], threshold=threshold) for key in used
        }
        plan = ab_plan(model, io_manager, registry, spec.name, state, rollout_policy)
        pooled = abtest.ab_test_by_stratum(plan, per_version)
        record = {**identity, "method": "fixed_horizon", "metric": "accuracy", **pooled.to_record()}
        # The test in words first (every number labelled), then the numbers, rounded, as floats to plot.
        metadata = {"reading": dg.MetadataValue.md(pooled.reading()), **_readable_floats(pooled.to_metadata())}
        return dg.MaterializeResult(value=record, metadata=metadata)

    return dg.Definitions(
        assets=[drift_report, predictions, labels, performance_estimate, performance_report, ab_test],
        asset_checks=[
            no_drift,
            data_quality,
            training_serving_skew,
            estimated_performance_within_sla,
            performance_within_sla,
        ],
    )
