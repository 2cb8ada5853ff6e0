"""Turning the core's GateResult into a Dagster asset check result, with its evidence as metadata."""

import math
from typing import Any

import dagster as dg

from mlops_assets.ml.gate_result import GateResult


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def check_result(gate: GateResult) -> dg.AssetCheckResult:
    """An AssetCheckResult carrying the gate's condition, observation, threshold and evidence."""
    metadata: dict[str, Any] = {
        "condition": gate.condition,
        "message": gate.message,
    }
    if gate.observed is not None:
        metadata["observed"] = _scalar(gate.observed)
    if gate.threshold is not None:
        metadata["threshold"] = _scalar(gate.threshold)
    if gate.evidence:
        metadata["evidence"] = dg.MetadataValue.json(dict(gate.evidence))
        # Lists of records (failure cases, slices, groups) also as tables, which the UI can sort and read.
        for key, value in gate.evidence.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                metadata[f"{key}_table"] = table(value)
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.message,
        metadata=metadata,
    )


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def table(rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """A list of row dicts as a Dagster table (the UI renders it as a sortable table)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    types = {
        c: "number" if all(isinstance(r.get(c), int | float) for r in rows if r.get(c) is not None) else "string"
        for c in columns
    }
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type=types[c]) for c in columns])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(row.get(c)) for c in columns}) for row in rows], schema=schema
    )
