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
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.message,
        metadata=metadata,
    )
