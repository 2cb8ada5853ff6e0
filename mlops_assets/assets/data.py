"""Stage 1, data: one landed file per data version, read, typed and gated."""

from collections.abc import Callable

import dagster as dg
import pandas as pd

from mlops_assets.assets.gating import check_result
from mlops_assets.ml import validation
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.versions import file_digest
from mlops_assets.partitions import data_versions
from mlops_assets.resources import DatasetSpecResource, LandingZone

SOURCE_FILE_ATTR = "source_file"


def _column_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])


@dg.asset(
    partitions_def=data_versions,
    group_name="data",
    kinds={"pandas", "parquet"},
    description=(
        "One landed data version: the file's rows, typed by the schema derived from the dataset spec. "
        "When the schema gate fails the rows are stored as read (text), as evidence, and nothing downstream runs."
    ),
)
def raw_data(
    context: dg.AssetExecutionContext, landing: LandingZone, dataset: DatasetSpecResource
) -> dg.MaterializeResult:
    spec = dataset.load()
    version = context.partition_key
    path = landing.locate(version)
    try:
        frame = validation.read_data_file(path, spec)
    except validation.DataFileError as exc:
        # Unreadable input fails the run here, naming file and rule; no partial value is stored.
        raise dg.Failure(
            description=str(exc),
            metadata={"file": landing.uri(path.name), "rule": exc.rule, "column": exc.column or "-"},
        ) from exc
    typed = validation.coerce_to_schema(frame, spec)
    stored = typed if typed is not None else frame.astype("string")
    stored.attrs[SOURCE_FILE_ATTR] = path.name
    return dg.MaterializeResult(
        value=stored,
        metadata={
            "file": landing.uri(path.name),  # s3://… on S3, where `path` is a verified local download
            "sha256": file_digest(path),
            "typed": typed is not None,
            "dagster/row_count": len(stored),
            "dagster/column_schema": _column_schema(stored),
            "spec": spec.name,
            "spec_fingerprint": spec.fingerprint(),
        },
    )


def _raw_check(name: str, condition: str, gate: Callable[[pd.DataFrame, DatasetSpec, str], GateResult]):
    @dg.asset_check(
        asset=raw_data,
        name=name,
        blocking=True,
        partitions_def=data_versions,
        description=f"Passes when {condition}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, raw_data: pd.DataFrame, dataset: DatasetSpecResource):
        source = str(raw_data.attrs.get(SOURCE_FILE_ATTR, context.partition_key))
        return check_result(gate(raw_data, dataset.load(), source))

    return _check


raw_data_checks = [
    _raw_check(
        "schema_valid",
        "every column of the spec is present with its type, range, categories, nullability and uniqueness "
        "(pandera, lazy: every failure case is listed)",
        validation.gate_schema_valid,
    ),
    _raw_check("row_count_above_floor", "the version has at least policy.min_rows rows", validation.gate_row_count),
    _raw_check("label_in_domain", "every label is one of the spec's label values", validation.gate_label_in_domain),
    _raw_check("ids_unique", "the id column is present, never null and unique", validation.gate_ids_unique),
]
