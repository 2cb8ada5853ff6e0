"""Stage 1, data: one landed file per data version of a model, read, typed and gated."""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.gating import check_result, gate_specs, gate_step, selected
from mlops_assets.assets.metadata import column_schema
from mlops_assets.gate_records import data_gate_verdicts, latest_materialization_metadata
from mlops_assets.ml import served, validation
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.versions import file_digest
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.progress import backfill_progress
from mlops_assets.resources import FrameIOManager, LandingZone

SOURCE_FILE_ATTR = validation.SOURCE_FILE_ATTR


# --- Gates that compare a version with the earlier accepted ones -----------------------------------------------


def accepted_earlier_versions(
    model: MLModel,
    instance: dg.DagsterInstance,
    current: str,
    limit: int | None = None,
    *,
    same_source: bool = False,
) -> tuple[list[str], list[dict[str, str]]]:
    """Earlier data versions of ``model`` whose data gates all passed, newest first, and the ones passed over.

    The data gates are ``model.data_gates`` (every blocking raw_data and features check of the model).

    "Earlier" is the order of the model's dynamic partitions (``<model>__data_versions``, landing order). Reads
    only the instance's latest check results per version (:func:`~mlops_assets.gate_records.latest_gate_results`):
    a gate failed, missing or stale (evaluated against an older materialization) means not accepted.

    Args:
        model: The model whose data versions are walked.
        instance: The Dagster instance.
        current: The data version being checked; only versions landed before it are considered.
        limit: Stop after this many accepted versions (``None``: all of them).
        same_source: Only versions of the same source as ``current``: served traffic (landed from ``mlops-serve``
            prediction-log segments, :func:`mlops_assets.ml.served.segment_id_of_version`) or batch files. A
            segment's size follows the server's segment limits, not the data, so the volume gate compares like with
            like.

    Returns:
        ``(accepted, skipped)``: accepted keys newest first; skipped ones as ``{"data_version", "reason"}``.
    """
    keys = instance.get_dynamic_partitions(model.partitions_name)
    earlier = keys[: keys.index(current)] if current in keys else list(keys)
    if same_source:
        served_current = served.segment_id_of_version(current) is not None
        earlier = [k for k in earlier if (served.segment_id_of_version(k) is not None) == served_current]
    accepted: list[str] = []
    skipped: list[dict[str, str]] = []
    if limit is not None and limit <= 0:
        return accepted, skipped
    for key, failing in data_gate_verdicts(instance, earlier, model.data_gates):
        if failing:
            reason = ", ".join(f"{g.check.split(':')[-1]} {g.status}" for g in failing)
            skipped.append({"data_version": key, "reason": reason})
            continue
        accepted.append(key)
        if limit is not None and len(accepted) >= limit:
            break  # before the next version's gate histories are read
    return accepted, skipped


def _stored_ids(model: MLModel, stored: FrameIOManager, version: str, column: str) -> pd.Series:
    """Only the id column of a stored raw_data partition of ``model`` (only that column is parsed)."""
    return stored.load_value(model.key("raw_data"), version, columns=[column])[column]


# --- The model's data stage --------------------------------------------------------------------------------------


def build(model: MLModel) -> dg.Definitions:
    """The data stage of ``model``: its ``raw_data`` asset (``<model>/raw_data``) and the asset's blocking checks."""

    @dg.asset(
        **model.asset_defaults("raw_data", stage="data"),
        kinds={"pandas", "parquet"},
        # The spec's columns, descriptions and rules, shown before the first materialization too.
        metadata={"dagster/column_schema": column_schema(model.spec())},
        description=(
            f"One landed data version of {model.name}: the file's rows (from the model's landing zone), typed by "
            "the schema derived from its dataset spec. When the schema gate fails the rows are stored as read "
            "(the reader's types), as evidence, and nothing downstream runs; the checks then re-validate exactly "
            "what the asset validated."
        ),
    )
    @measured_step
    def raw_data(context: dg.AssetExecutionContext, landing: LandingZone) -> dg.MaterializeResult:
        spec = model.spec()
        zone = model.landing_zone(landing)
        version = context.partition_key
        if (where := backfill_progress(context.instance, context.run, version)) is not None:
            context.log.info(where)
        path = zone.locate(version)
        try:
            frame = validation.read_data_file(path, spec)
        except validation.DataFileError as exc:
            # Unreadable input fails the run here, naming file and rule; no partial value is stored.
            raise dg.Failure(
                description=str(exc),
                metadata={"file": zone.uri(path.name), "rule": exc.rule, "column": exc.column or "-"},
            ) from exc
        typed = validation.coerce_to_schema(frame, spec)
        # Failed: the frame exactly as read (CSV: text and inferred numbers; Parquet: its stored types), which
        # Parquet stores without loss, so the checks see the values the asset saw and report the same failure cases.
        stored = typed if typed is not None else frame
        stored.attrs[SOURCE_FILE_ATTR] = path.name
        return dg.MaterializeResult(
            value=stored,
            metadata={
                "file": zone.uri(path.name),  # s3://… on S3, where `path` is a verified local download
                "sha256": file_digest(path),
                "typed": typed is not None,
                "dagster/row_count": len(stored),
                "dagster/column_schema": column_schema(spec, stored),
                "spec": spec.name,
                "spec_fingerprint": spec.fingerprint(),
            },
        )

    # The gates on the file itself judge one loaded frame: one step evaluates them all (gating.gate_step).
    file_gates: dict[str, tuple[str, Callable[[pd.DataFrame, DatasetSpec, str], GateResult]]] = {
        "schema_valid": (
            "every column of the spec is present with its type, range, categories, nullability and uniqueness "
            "(pandera, lazy: every failure case is listed)",
            validation.gate_schema_valid,
        ),
        "row_count_above_floor": (
            "the version has at least policy.min_rows rows",
            lambda df, spec, source: validation.gate_row_count(df, spec.policy.data, source),
        ),
        "label_in_domain": (
            "every label is one of the spec's label values (label.required: false: the column may be absent and "
            "cells empty; the evidence counts the labelled rows)",
            validation.gate_label_in_domain,
        ),
        "ids_unique": ("the id column is present, never null and unique", validation.gate_ids_unique),
    }
    file_specs = gate_specs(model, "raw_data", {name: condition for name, (condition, _) in file_gates.items()})

    @gate_step(
        model, "raw_data", "file_gates", file_specs, "The data gates on the landed file itself (see each check)."
    )
    @measured_step
    def file_gate_checks(
        context: dg.AssetCheckExecutionContext, raw_data: pd.DataFrame
    ) -> Iterator[dg.AssetCheckResult]:
        spec = model.spec()
        source = str(raw_data.attrs.get(SOURCE_FILE_ATTR, context.partition_key))
        for check in selected(context, file_specs):
            yield check_result(file_gates[check.name][1](raw_data, spec, source), check.key)

    @dg.asset_check(
        asset=raw_data,
        name="volume_within_bounds",
        blocking=True,
        partitions_def=model.partitions,
        description=(
            "Passes when the version's row count divided by that of the previous accepted version (the latest "
            "earlier data version of this model from the same source — batch files, or served traffic landed from "
            "mlops-serve's segments — whose data gates passed) is within policy.volume_ratio_bounds "
            "(default [0.5, 2]); the first version has nothing to compare with and passes, recorded. Reads only "
            "the row_count metadata of the raw_data materializations."
        ),
    )
    @measured_step
    def volume_within_bounds(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        spec = model.spec()
        version = context.partition_key

        def recorded(key: str) -> dict[str, Any]:
            return latest_materialization_metadata(context.instance, model.key("raw_data"), key)

        gate = validation.gate_volume_within_bounds_recorded(
            version,
            recorded(version),
            # Walks back from the version just before this one and stops at the first accepted one.
            earlier=lambda: accepted_earlier_versions(model, context.instance, version, limit=1, same_source=True),
            recorded_of=recorded,
            data=spec.policy.data,
        )
        return check_result(gate)

    @dg.asset_check(
        asset=raw_data,
        name="ids_unique_across_versions",
        blocking=True,
        partitions_def=model.partitions,
        description=(
            "When the spec sets id_unique_across_versions: passes when no id of this version appears in an earlier "
            "accepted data version of this model (only their id columns are read). Otherwise passes and records "
            "that ids may repeat across versions."
        ),
    )
    @measured_step
    def ids_unique_across_versions(
        context: dg.AssetCheckExecutionContext, raw_data: pd.DataFrame, io_manager: dg.ResourceParam[FrameIOManager]
    ) -> dg.AssetCheckResult:
        spec = model.spec()
        source = str(raw_data.attrs.get(SOURCE_FILE_ATTR, context.partition_key))
        earlier: dict[str, pd.Series] = {}
        unreadable: list[str] = []
        if spec.id_unique_across_versions:
            accepted, _ = accepted_earlier_versions(model, context.instance, context.partition_key)
            for key in reversed(accepted):  # landing order: an id is reported with the first version that used it
                try:
                    earlier[key] = _stored_ids(model, io_manager, key, spec.id_column)
                except (FileNotFoundError, KeyError, ValueError) as exc:
                    context.log.warning(f"ids of accepted data version {key} unreadable: {exc}")
                    unreadable.append(key)
        return check_result(validation.gate_ids_unique_across_versions(raw_data, spec, source, earlier, unreadable))

    checks = [file_gate_checks, volume_within_bounds, ids_unique_across_versions]
    return dg.Definitions(assets=[raw_data], asset_checks=checks)
