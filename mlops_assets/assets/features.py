"""Stage 2, features: model inputs with a deterministic train/holdout split."""

from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import pandas as pd

from mlops_assets.assets.gating import check_result, gate_specs, gate_step, selected
from mlops_assets.assets.metadata import column_schema
from mlops_assets.ml import features as core
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.validation import SOURCE_FILE_ATTR
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.provenance import asset_code_version


def _protected_inputs_rule(gate: GateResult, features: pd.DataFrame, spec: DatasetSpec) -> GateResult:
    """Protected attributes are never model inputs unless ``policy.allow_protected_as_features``; the evidence says.

    The spec loader already refuses such a spec; this catches a spec object built without it.
    """
    protected = [c for c in core.input_columns_of(features, spec) if c in set(spec.protected)]
    allowed = spec.policy.data.allow_protected_as_features
    evidence = {**gate.evidence, "protected_inputs": protected, "allow_protected_as_features": allowed}
    if not protected:
        return replace(gate, evidence=evidence)
    if allowed:
        note = f"; protected attribute(s) {protected} are model inputs, allowed by policy.allow_protected_as_features"
        return replace(gate, message=gate.message + note, evidence=evidence)
    problem = (
        f"spec {spec.name!r} ({spec.source}): model inputs include protected attribute(s) {protected}, and "
        "policy.allow_protected_as_features is not set (rule: features_allowlisted)"
    )
    message = problem if gate.passed else f"{gate.message}; {problem}"
    return replace(gate, passed=False, message=message, evidence=evidence)


def _source_file(frame: pd.DataFrame, context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str | None:
    """The landed file a version's frame came from (its ``attrs``), else the data version key, else ``None``."""
    source = frame.attrs.get(SOURCE_FILE_ATTR)
    if source is None and context.has_partition_key:
        source = context.partition_key
    return None if source is None else str(source)


#: Descriptions of the columns the features stage adds to the spec's.
DERIVED_COLUMNS = {
    core.LABEL_COLUMN: (
        "The data file's label as 0/1 (1 = the spec's positive class); <NA> for a row it did not label "
        "(label.required: false). Training and evaluation take labels from the labels asset, joined by id."
    ),
    core.SPLIT_COLUMN: "train or holdout: the latest rows by the order column are the holdout (ties by id hash).",
}


def build(model: MLModel) -> dg.Definitions:
    """The features stage of ``model``: ``<model>/features`` and the features gates.

    The drift reference is not an asset of this stage: ``candidate_model`` builds it from the training window's
    train rows and stores it beside the model version, and ``drift_report`` compares with the production model's.
    """

    @dg.asset(
        **model.asset_defaults("features", stage="features"),
        code_version=asset_code_version(model),
        ins={"raw_data": dg.AssetIn(key=model.key("raw_data"))},
        kinds={"pandas", "parquet"},
        description=(
            "Model inputs from the spec's feature allowlist, the label as 0/1, slice and protected columns for "
            "evaluation, and a deterministic split: the latest rows by the order column are the holdout, rows tied "
            "with the boundary value split by a seeded sha256 of the id (never by file row order)."
        ),
    )
    @measured_step
    def features(context: dg.AssetExecutionContext, raw_data: pd.DataFrame) -> dg.MaterializeResult:
        spec = model.spec()
        frame = core.build_features(raw_data, spec)
        # The landed file's name travels with the stored value, so the features gates name it as the raw gates do.
        source = _source_file(raw_data, context)
        if source is not None:
            frame.attrs[SOURCE_FILE_ATTR] = source
        split = frame[core.SPLIT_COLUMN].value_counts()
        labelled = frame[core.LABEL_COLUMN].dropna()
        holdout_split = core.describe_split(frame, spec)
        if holdout_split["warning"]:
            context.log.warning(f"holdout of {context.partition_key}: {holdout_split['warning']}")
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "dagster/column_schema": column_schema(spec, frame, DERIVED_COLUMNS),
                "train_rows": int(split.get("train", 0)),
                "holdout_rows": int(split.get("holdout", 0)),
                # Over the rows the data file labelled (label.required: false: unlabelled rows are <NA>).
                "positive_rate": float(labelled.mean()) if len(labelled) else 0.0,
                "labelled_rows": len(labelled),
                "model_inputs": ", ".join(core.feature_columns(spec)),
                "holdout_split": dg.MetadataValue.json(holdout_split),
                "holdout_split_warning": holdout_split["warning"] or "none",
            },
        )

    # Both gates judge one loaded frame: one step evaluates them (gating.gate_step).
    specs = gate_specs(
        model,
        "features",
        {
            "features_allowlisted": (
                "every model input is in the spec's feature allowlist and none is a forbidden (post-outcome, "
                "leakage) column, nor a protected attribute unless policy.allow_protected_as_features says so "
                "explicitly"
            ),
            "features_finite": "no numeric model input is ±inf and only nullable inputs have missing values",
        },
    )

    @gate_step(model, "features", "features_gates", specs, "The features gates (see each check).")
    @measured_step
    def features_gate_checks(
        context: dg.AssetCheckExecutionContext, features: pd.DataFrame
    ) -> Iterator[dg.AssetCheckResult]:
        spec = model.spec()
        source = _source_file(features, context)
        verdicts = {
            "features_allowlisted": lambda: _protected_inputs_rule(
                core.gate_features_allowlisted(features, spec), features, spec
            ),
            "features_finite": lambda: core.gate_features_finite(features, spec, source),
        }
        for check in selected(context, specs):
            yield check_result(verdicts[check.name](), check.key)

    return dg.Definitions(assets=[features], asset_checks=[features_gate_checks])
